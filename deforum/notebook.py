"""The helpers the cells of Deforum_Stable_Diffusion.ipynb call at run time.

``run_in_notebook`` (one clear message instead of a traceback for a ``DeforumError``), ``prepare_root``
(Drive and paths), ``settings_file_path`` (Load Settings), ``NotebookDisplay`` (the frame shown in place,
the schedule plot, the video) and ``create_video``. They need only IPython (and matplotlib for the plot).

The notebook itself is built by ``deforum.notebook_build`` from the field tables in ``deforum.settings``; this
module imports neither the builder nor nbformat on import. ``python -m deforum.notebook build|check`` is kept
as the builder's command: only its ``__main__`` block imports ``deforum.notebook_build`` and runs its ``main``
(the builder does not import this module, so there is no import cycle).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deforum import settings as A
from deforum.errors import DeforumError, SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_DIR = REPO_ROOT / "settings"


# ------------------------------------------------------------------------------------ run-time helpers


class NotebookStop(Exception):
    """Stops Run all at the current cell and shows only the message (IPython calls _render_traceback_)."""

    def __init__(self, error: DeforumError):
        super().__init__(str(error))
        self.error = error

    def _render_traceback_(self) -> list[str]:
        name = type(self.error).__name__
        lines = f"{name}: {self.error}".splitlines()
        return [f"\x1b[1;31m{lines[0]}\x1b[0m", *(f"\x1b[31m{ln}\x1b[0m" for ln in lines[1:])]


def run_in_notebook(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; a DeforumError becomes one red message that stops Run all (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except DeforumError as exc:
        raise NotebookStop(exc) from None


def _stops_cell(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the helpers the cells call directly report a DeforumError like ``run_in_notebook``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run_in_notebook(fn, *args, **kwargs)
    return wrapper


def in_colab() -> bool:
    return "google.colab" in sys.modules


@_stops_cell
def prepare_root(root: Any) -> Any:
    """v0.6's path step: in Colab with mount_google_drive, mount Drive and use the gdrive paths; create them.

    Outside Colab mount_google_drive is ignored (with a note), as v0.6 fell back to the local paths. From here
    on the cells show deforum's messages (the model loaded, downloads, notes) as v0.6 printed them.
    """
    from deforum.log import show_progress_messages

    show_progress_messages(sys.stdout)
    if root.mount_google_drive and in_colab():
        from google.colab import drive

        drive.mount("/content/drive")
        root.models_path, root.output_path = root.models_path_gdrive, root.output_path_gdrive
    elif root.mount_google_drive:
        print("mount_google_drive is on but this is not Colab: using models_path and output_path")
    for name in ("models_path", "output_path"):
        folder = os.path.expanduser(str(getattr(root, name)))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SettingsError(f"{name}={folder!r}: cannot create the folder ({exc.strerror or exc})") from exc
    print(f"models_path: {root.models_path}\noutput_path: {root.output_path}")
    return root


@_stops_cell
def load_model(root: Any) -> Any:
    """The Root cell's model: the root fields checked (``deforum.settings.resolve``), then the checkpoint
    loaded once per process (``deforum.models.load_root_model``)."""
    from deforum.models import load_root_model
    from deforum.settings import resolve

    return load_root_model(resolve(root=vars(root)).model)


@_stops_cell
def settings_file_path(override_settings_with_file: bool, settings_file: str,
                       custom_settings_file: str) -> str | None:
    """The Load Settings cell: the settings file to apply, or None when override_settings_with_file is off."""
    if not override_settings_with_file:
        return None
    from deforum.settings import resolve_settings_file

    return str(resolve_settings_file(settings_file, custom_settings_file, SETTINGS_DIR))


# --------------------------------------------------------------------------------- schedules plot

# Which schedules shape the picture in each mode (spec 1.6); Video Input and the others use none.
MODE_SCHEDULES = {
    "2D": ("angle", "zoom", "translation_x", "translation_y", "noise_schedule", "strength_schedule",
           "contrast_schedule"),
    "3D": ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
           "rotation_3d_z", "noise_schedule", "strength_schedule", "contrast_schedule"),
}
FLIP_SCHEDULES = ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma",
                  "perspective_flip_fv")


def active_schedules(plan: Any, settings: Any = None) -> dict[str, np.ndarray]:
    """The schedules of ``plan`` that move in this run: used by its mode (spec 1.6) and not constant.

    The perspective-flip schedules count in 2D when ``settings.motion.flip_2d_perspective`` is on (they are
    left out when no settings are given: the default phi sawtooth would otherwise show in every 2D run).
    """
    names = list(MODE_SCHEDULES.get(plan.animation_mode, ()))
    if plan.animation_mode == "2D" and settings is not None and settings.motion.flip_2d_perspective:
        names += list(FLIP_SCHEDULES)
    out = {}
    for name in names:
        series = np.asarray(plan.schedules.get(name, ()), dtype=float)
        if series.size and not np.all(series == series[0]):
            out[name] = series
    return out


def plot_schedules(plan: Any, settings: Any = None) -> Any:
    """A matplotlib Figure of the active schedules over the frames (one panel each), or None if none move."""
    series = active_schedules(plan, settings)
    if not series:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 1.6 * len(series)), layout="constrained")
    axes = fig.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, series.items(), strict=True):
        ax.plot(np.arange(len(values)), values, linewidth=1.2)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("frame")
    fig.suptitle(f"{plan.animation_mode} schedules")
    return fig


# --------------------------------------------------------------------------------- audio cell


def plot_audio_keyframes(x: np.ndarray, values: np.ndarray, *, field: str, feature: str, fps: float) -> Any:
    """A matplotlib Figure: the audio envelope ``x`` (0..1) and the schedule it gives, against the frames."""
    from matplotlib.figure import Figure

    frames = np.arange(len(x))
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.fill_between(frames, x, step="mid", alpha=0.35)
    top.plot(frames, x, drawstyle="steps-mid", linewidth=1)
    top.set_ylabel(f"x ({feature})", rotation=0, ha="right", va="center")
    top.set_ylim(-0.05, 1.05)
    bottom.plot(frames, values, linewidth=1.2, marker="." if len(frames) <= 200 else None)
    bottom.set_ylabel(field, rotation=0, ha="right", va="center")
    bottom.set_xlabel(f"frame ({fps:g} fps)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"audio keyframes: {field}")
    return fig


@_stops_cell
def audio_keyframes(anim_args: Callable[[], dict[str, Any]], *, skip_audio_keyframes: bool = True,
                    audio_path: str = "", audio_field: str = "zoom", audio_expr: str = "x",
                    audio_feature: str = "rms", audio_band: str = "", audio_smooth: int = 1,
                    audio_fps: float = 12, audio_sets_max_frames: bool = True,
                    show: bool = True) -> Callable[[], dict[str, Any]]:
    """The Audio Keyframes cell: ``anim_args`` (the cell's ``DeforumAnimArgs``) with ``audio_field`` set to the
    schedule computed from ``audio_path`` (deforum.sources.audio), and ``max_frames`` to its frame count when
    ``audio_sets_max_frames``; the envelope and the schedule are plotted against the frames. Skipped: ``anim_args``.
    """
    from deforum.sources import audio

    if skip_audio_keyframes:
        print("Skipping audio keyframes, uncheck skip_audio_keyframes if you want to use them")
        return anim_args
    audio.schedule_field(audio_field)
    audio.check_expression(audio_expr)
    if not str(audio_path).strip():
        raise SettingsError("audio_path is empty: give the sound file (wav, flac, ogg, mp3) the schedule follows")
    x = audio.audio_envelope(audio_path, audio_fps, feature=audio_feature, band=audio_band or None,
                             smooth=int(audio_smooth))
    values = audio.apply_expression(audio_expr, x)
    schedule = audio.format_schedule(values)
    print(f"{audio_field}: {len(values)} frames from {audio_path} ({audio_feature} at {float(audio_fps):g} fps"
          f"{', max_frames = ' + str(len(values)) if audio_sets_max_frames else ''}); the video's fps must be the same")
    if show:
        NotebookDisplay().plot(plot_audio_keyframes(x, values, field=audio_field, feature=audio_feature,
                                                    fps=float(audio_fps)))

    @functools.wraps(anim_args)
    def with_audio() -> dict[str, Any]:
        values_ = dict(anim_args())
        values_[audio_field] = schedule
        if audio_sets_max_frames:
            values_["max_frames"] = len(values)
        return values_

    with_audio.audio_schedule = schedule  # type: ignore[attr-defined]
    return with_audio


# --------------------------------------------------------------------------------- display hook


def _png_bytes(image: Any) -> bytes:
    """PNG bytes of a PNG path, any image path, a PIL image or an H x W (x C) uint8 array."""
    from PIL import Image as PILImage

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.suffix.lower() == ".png":
            return path.read_bytes()
        image = PILImage.open(path)
    if isinstance(image, np.ndarray):
        image = PILImage.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


class NotebookDisplay:
    """The Run cell's display hook: the newest frame shown in place, still images, the schedule plot, the video.

    ``frame(image, label=None)`` shows an animation frame (a PNG path, PIL image or uint8 array) in one
    output that each call replaces, with its file name (or ``label``) above it. ``show(image)`` (also
    ``image(image)`` or calling the hook) adds an image below the previous ones, as v0.6 showed None-mode
    stills; ``clear()`` clears the cell's output (v0.6 did that every 32 stills). ``plan(plan,
    settings=None)`` plots the active schedules; ``plot(fig)`` shows a matplotlib figure;
    ``video(mp4_path)`` embeds a video.
    """

    def __init__(self) -> None:
        self._image: Any = None
        self._label: Any = None

    def __call__(self, image: Any) -> None:
        self.show(image)

    def image(self, image: Any) -> None:
        self.show(image)

    def show(self, image: Any) -> None:
        from IPython.display import Image, display

        display(Image(data=_png_bytes(image), format="png"))

    def clear(self) -> None:
        from IPython.display import clear_output

        clear_output(wait=True)
        self._image = self._label = None

    def frame(self, image: Any, label: str | None = None) -> None:
        from IPython.display import Image, display

        shown = Image(data=_png_bytes(image), format="png")
        if label is None and isinstance(image, (str, os.PathLike)):
            label = Path(image).name
        if label is not None:
            if self._label is None:
                self._label = display({"text/plain": label}, raw=True, display_id=True)
            else:
                self._label.update({"text/plain": label}, raw=True)
        if self._image is None:
            self._image = display(shown, display_id=True)
        else:
            self._image.update(shown)

    def plot(self, fig: Any) -> None:
        from IPython.display import Image, display

        display(Image(data=_figure_png(fig), format="png"))

    def plan(self, plan: Any, settings: Any = None) -> None:
        fig = plot_schedules(plan, settings) if plan is not None else None
        if fig is not None:
            self.plot(fig)

    def video(self, mp4_path: str | os.PathLike[str]) -> None:
        from IPython.display import HTML, display

        from deforum.video import video_html

        display(HTML(video_html(mp4_path, width=512)))


# --------------------------------------------------------------------------------- video cell


def _animation_frames(result: Any) -> bool:
    """Whether the run wrote numbered animation frames ``{timestring}_%05d.png`` (else still images)."""
    pattern = re.compile(re.escape(str(result.timestring)) + r"_\d{5}\.png")
    return any(pattern.fullmatch(Path(p).name) for p in result.frames)


@_stops_cell
def create_video(result: Any, *, show: bool = True, **video_args: Any) -> Any:
    """The Create Video cell: the mp4 (and gif) of the run in ``result`` (or of manual paths), shown inline.

    ``video_args`` are the video cell's fields (defaults from deforum.settings). Animation runs use
    ``deforum.video.video_cell``; a None-mode run makes a video of its still images in order.
    Returns ``deforum.video.VideoResult`` or None when skipped.
    """
    from deforum import video as V

    v = A.resolve(video=video_args).video  # the video cell's fields, checked
    if v.skip_video_for_run_all:
        print("Skipping video creation, uncheck skip_video_for_run_all if you want to run it")
        return None
    if result is None and not v.use_manual_settings:
        raise SettingsError("no run to make a video of: run the Run cell first, or turn on use_manual_settings "
                            "and give image_path and mp4_path")
    hint = getattr(result, "fps_hint", None) if result is not None else None
    if hint and not v.use_manual_settings and float(hint) != float(v.fps):
        print(f"fps = {v.fps:g}; the source video suggests fps = {float(hint):g}")
    fields = {k: value for k, value in dataclasses.asdict(v).items() if k != "skip_video_for_run_all"}
    settings = getattr(result, "settings", None)
    init_video = str(getattr(getattr(settings, "video_input", None), "video_init_path", "") or "")
    if v.use_manual_settings or v.render_steps or _animation_frames(result):
        video = V.video_cell(outdir=result.outdir if result is not None else "",
                             timestring=result.timestring if result is not None else "",
                             video_init_path=init_video, **fields)
    else:
        stills = [Path(p) for p in result.frames if Path(p).suffix.lower() == ".png" and "_grid_" not in Path(p).name]
        if not stills:
            raise SettingsError("the run wrote no images to make a video of (save_samples is off?)")
        sound = V.soundtrack_source(v.add_soundtrack, v.soundtrack_path, init_video)
        mp4 = Path(result.outdir) / f"{result.timestring}.mp4"
        gif = mp4.with_suffix(".gif") if v.make_gif else None
        V.make_video(stills, mp4, v.fps, make_gif=v.make_gif, gif_path=gif,
                     audio=sound[0] if sound else None, audio_field=sound[1] if sound else "soundtrack_path")
        video = V.VideoResult(mp4_path=mp4, gif_path=gif, frame_count=len(stills), fps=float(v.fps))
    print(f"wrote {video.mp4_path} ({video.frame_count} frames at {video.fps:g} fps)")
    if show:
        NotebookDisplay().video(video.mp4_path)
    return video


if __name__ == "__main__":
    from deforum.notebook_build import main

    raise SystemExit(main())
