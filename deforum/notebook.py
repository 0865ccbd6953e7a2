"""The notebook: Deforum_Stable_Diffusion.ipynb generated from deforum/args.py, and the helpers its cells call.

``python -m deforum.notebook build`` writes the notebook at the repository root; ``python -m deforum.notebook
check`` exits 1 when the committed file differs from what ``build`` would write. Every form field and its
default comes from the field tables in ``deforum.args``, so no field is defined twice by hand.

The cells follow v0.6's order (title and terms, NVIDIA GPU, setup, Root, animation settings, prompts, run,
create video, disconnect) and keep its ``def DeforumArgs(): ... return locals()`` shape. At run time the
cells call the helpers below: ``run_in_notebook`` (one clear message instead of a traceback for a
``DeforumError``), ``prepare_root`` (Drive and paths), ``settings_file_path`` (Load Settings),
``NotebookDisplay`` (the frame shown in place, the schedule plot, the video) and ``create_video``.
Building needs nbformat; the run-time helpers need only IPython (and matplotlib for the plot).
"""

from __future__ import annotations

import difflib
import functools
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from deforum import args as A
from deforum import install
from deforum.errors import DeforumError, SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_PATH = REPO_ROOT / "Deforum_Stable_Diffusion.ipynb"
SETTINGS_DIR = REPO_ROOT / "settings"
PYPROJECT = REPO_ROOT / "pyproject.toml"

# Fields the notebook shows that deforum/args.py does not declare (yet). They are used only when args.py
# lacks a field of that name, so moving one into args.py needs no change here.
EXTRA_FIELDS: dict[str, tuple[A.Field, ...]] = {
    "disconnect": (
        A.Field("skip_disconnect_for_run_all", "bool", True, "Do not disconnect the Colab runtime on Run all.",
                widget="boolean", group="disconnect", section="Disconnect Runtime"),
    ),
}


# ------------------------------------------------------------------------------------------ form fields


def settings_file_choices(settings_dir: str | os.PathLike[str] = SETTINGS_DIR) -> tuple[str, ...]:
    """The Load Settings dropdown: 'custom' and the settings files in settings/ (listed when building)."""
    folder = Path(settings_dir)
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".txt")) \
        if folder.is_dir() else []
    return ("custom", *files)


def cell_fields(group: str) -> tuple[A.Field, ...]:
    """The fields of one form cell, in order: args.py's group plus any EXTRA_FIELDS it does not declare.

    An extra field goes after the last field of its section (or at the end when the section is new).
    """
    fields = list(A.GROUPS.get(group, ()))
    if group == "load":
        fields = [replace(f, choices=settings_file_choices()) if f.name == "settings_file" else f
                  for f in fields]
    names = {f.name for f in fields}
    for extra in EXTRA_FIELDS.get(group, ()):
        if extra.name in names:
            continue
        same = [i for i, f in enumerate(fields) if f.section == extra.section]
        fields.insert(same[-1] + 1 if same else len(fields), extra)
    return tuple(fields)


def render_form_line(f: A.Field) -> str:
    """``args.form_line`` plus what the notebook adds: typed-in values for open dropdowns, help of hidden fields.

    Colab's ``{allow-input: true}`` lets a dropdown take a value that is not listed (a checkpoint file in
    models_path, a local depth model folder), which is what ``open_choices`` means.
    """
    line = A.form_line(f)
    if f.hidden:
        return f"{line}  # {f.help}"
    if f.widget == "dropdown" and f.open_choices:
        line = line.removesuffix(" {type:'string'}") + " {allow-input: true}"
    return line


def _form_block(fields: Iterable[A.Field], indent: str = "") -> list[str]:
    """Form lines under a ``#@markdown`` heading per section (a plain comment for a section with no form)."""
    lines: list[str] = []
    section = None
    fields = list(fields)
    for f in fields:
        if f.section != section:
            section = f.section
            if lines:
                lines.append("")
            shown = any(not g.hidden for g in fields if g.section == section)
            lines.append(f"{indent}#@markdown **{section}**" if shown else f"{indent}# {section} (not in the form)")
        lines.append(indent + render_form_line(f))
    return lines


def _function_cell(name: str, group: str, head: Iterable[str] = ()) -> list[str]:
    """``def Name(): <form lines> return locals()``: v0.6's shape, which artists copy between notebooks."""
    return [*head, f"def {name}():", *_form_block(cell_fields(group), "    "), "    return locals()"]


# ------------------------------------------------------------------------------------------ cells


def repository_url(pyproject: str | os.PathLike[str] = PYPROJECT) -> str:
    """``[project.urls] Homepage`` of pyproject.toml: the one place the repository's address is written.

    "" while it is the placeholder (a host under the reserved ``.invalid`` domain): the project is not
    published yet, so the Setup cell has no address to install from until the user sets one.
    """
    text = Path(pyproject).read_text(encoding="utf-8")
    match = re.search(r'^Homepage\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SettingsError(f"no [project.urls] Homepage in {pyproject}")
    url = match.group(1)
    return "" if (urlparse(url).hostname or "").endswith(".invalid") else url


def package_version(pyproject: str | os.PathLike[str] = PYPROJECT) -> str:
    """``[project] version`` of pyproject.toml: the deforum version this notebook is built for."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', Path(pyproject).read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise SettingsError(f"no [project] version in {pyproject}")
    return match.group(1)


def installer_source() -> str:
    """deforum/install.py without its docstring, ``__future__`` import and command-line entry: the Setup
    cell's copy (deforum cannot be imported before it is installed)."""
    text = Path(install.__file__).read_text(encoding="utf-8")
    body = text[re.search(r"^import ", text, re.MULTILINE).start():text.index('\n\nif __name__ == "__main__":')]
    return "# deforum/install.py, copied here by the notebook builder\n" + body.strip()


TITLE = """\
# **Deforum Stable Diffusion v0.6**

Prompts and keyframed camera moves turned into animations: the Deforum Stable Diffusion v0.6 notebook,
rebuilt as thin form cells over the tested `deforum` package. Fill the forms and press *Run all*.

[Stable Diffusion](https://github.com/CompVis/stable-diffusion) by Robin Rombach, Andreas Blattmann,
Dominik Lorenz, Patrick Esser, Björn Ommer and the [Stability.ai](https://stability.ai/) team.
Samplers after [K Diffusion](https://github.com/crowsonkb/k-diffusion) by Katherine Crowson.
Notebook by deforum (EnzymeZoo, foxxie, huemin and contributors); guide: *Quick Guide to Deforum v06*.

This notebook is generated from `deforum/args.py` by `python -m deforum.notebook build`; edit that file,
not this one."""

TERMS = """\
## Stability.AI Model Terms of Use

By using this Notebook, you agree to the following Terms of Use, and license:

This model is open access and available to all, with a CreativeML OpenRAIL-M license further specifying
rights and usage.

The CreativeML OpenRAIL License specifies:

1. You can't use the model to deliberately produce nor share illegal or harmful outputs or content
2. CompVis claims no rights on the outputs you generate, you are free to use them and are accountable for
   their use which must not go against the provisions set in the license
3. You may re-distribute the weights and use the model commercially and/or as a service. If you do, please
   be aware you have to include the same use restrictions as the ones in the license and share a copy of the
   CreativeML OpenRAIL-M to all your users (please read the license entirely and carefully)

Please read the full license here: https://huggingface.co/spaces/CompVis/stable-diffusion-license"""

GPU_CELL = """\
#@markdown **NVIDIA GPU**: the GPU of this session (Colab: A100 > V100 > P100 > T4 > K80).
import subprocess

try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free",
                          "--format=csv,noheader"], capture_output=True, text=True, check=True).stdout
    print(gpu.strip())
except (OSError, subprocess.CalledProcessError):
    print("No NVIDIA GPU found (nvidia-smi is not available): rendering will be slow.")"""

SETUP_CELL = """\
#@markdown **Setup**: makes the `deforum` package importable. If it is not installed (a new Colab runtime),
#@markdown it is installed from `repo_url`: this project's git URL, or a checkout or wheel on Google Drive.
#@markdown pip may add packages to the runtime but never changes one it has.
repo_url = {repo_url!r} #@param {{type:"string"}}

{installer}

ensure_deforum(repo_url, version={version!r})
import deforum

print(f"deforum {{deforum.__version__}} from {{deforum.__file__}}")"""

ROOT_TAIL = """\

import deforum.models
from types import SimpleNamespace
from deforum.notebook import prepare_root, run_in_notebook

root = SimpleNamespace(**Root())
prepare_root(root)  # in Colab with mount_google_drive: mount Drive and use the gdrive paths
root.model = run_in_notebook(deforum.models.load_root_model, root) if root.load_on_run_all else None"""

RUN_TAIL = """\

import deforum.runner
from deforum.notebook import NotebookDisplay, run_in_notebook, settings_file_path

result = run_in_notebook(
    deforum.runner.render, args=DeforumArgs(), anim_args=DeforumAnimArgs(), prompts=prompts,
    animation_prompts=animation_prompts, root=root,
    settings_file=settings_file_path(override_settings_with_file, settings_file, custom_settings_file),
    display=NotebookDisplay())
print(f"Output folder: {result.outdir}")"""

DISCONNECT_TAIL = """\

import sys

if skip_disconnect_for_run_all:
    print("Skipping disconnect, uncheck skip_disconnect_for_run_all if you want to run it")
elif "google.colab" in sys.modules:
    from google.colab import runtime
    runtime.unassign()
else:
    print("Not in Colab: nothing to disconnect")"""


def _prompts_cell() -> list[str]:
    lines = ["prompts = ["]
    lines += [f"    {json.dumps(p, ensure_ascii=False)},  # None mode: one image (n_batch) per prompt"
              if i == 0 else f"    {json.dumps(p, ensure_ascii=False)},"
              for i, p in enumerate(A.DEFAULT_PROMPTS)]
    lines += ["]", "", "animation_prompts = {"]
    lines += [f"    {k}: {json.dumps(v, ensure_ascii=False)}," for k, v in A.DEFAULT_ANIMATION_PROMPTS.items()]
    lines += ["}"]
    return lines


def _video_cell() -> list[str]:
    fields = cell_fields("video")
    call = ", ".join(["globals().get(\"result\")", *(f"{f.name}={f.name}" for f in fields)])
    return [*_form_block(fields), "", "from deforum.notebook import create_video", "",
            "video = create_video(", *_wrap(call, 100, "    "), ")"]


def _wrap(arguments: str, width: int, indent: str) -> list[str]:
    """Lines of at most ``width`` characters holding a ', '-separated argument list."""
    lines: list[str] = []
    line = ""
    for part in arguments.split(", "):
        if line and len(indent) + len(line) + len(part) + 2 > width:
            lines.append(indent + line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    return [*lines, indent + line]


def notebook_cells() -> list[tuple[str, str, str]]:
    """(cell id, kind 'markdown'|'code', source) of every cell, in v0.6's order."""
    run = [*_function_cell("DeforumArgs", "args"), "", *_form_block(cell_fields("load")), RUN_TAIL]
    return [
        ("title", "markdown", TITLE),
        ("terms", "markdown", TERMS),
        ("gpu", "code", GPU_CELL),
        ("setup-heading", "markdown", "# Setup"),
        ("setup", "code", SETUP_CELL.format(repo_url=repository_url(), installer=installer_source(),
                                            version=package_version())),
        ("root", "code", "\n".join([*_function_cell("Root", "root"), ROOT_TAIL])),
        ("settings-heading", "markdown", "# Settings"),
        ("animation", "code", "\n".join(_function_cell(
            "DeforumAnimArgs", "anim_args", ["#@markdown ####**Animation Settings:**"]))),
        ("prompts-heading", "markdown", "### Prompts\n`prompts` are used by the None mode (still images); "
         "`animation_prompts` map a frame number to the prompt from that frame on (2D, 3D, Video Input, "
         "Interpolation)."),
        ("prompts", "code", "\n".join(_prompts_cell())),
        ("run-heading", "markdown", "# Run"),
        ("run", "code", "\n".join(run)),
        ("video-heading", "markdown", "# Create Video From Frames"),
        ("video", "code", "\n".join(_video_cell())),
        ("disconnect-heading", "markdown", "# Disconnect Runtime"),
        ("disconnect", "code", "\n".join(_form_block(cell_fields("disconnect"))) + "\n" + DISCONNECT_TAIL),
    ]


NOTEBOOK_METADATA = {
    "accelerator": "GPU",
    "colab": {"provenance": []},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def build_notebook() -> Any:
    """The notebook as an nbformat v4 node: outputs empty, Colab GPU runtime metadata, stable cell ids."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(NOTEBOOK_METADATA)))
    for cell_id, kind, source in notebook_cells():
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source, id=cell_id)
        else:
            meta = {"cellView": "form"} if "#@markdown" in source else {}
            cell = nbformat.v4.new_code_cell(source, id=cell_id, metadata=meta)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text() -> str:
    """The text ``build`` writes (nbformat's JSON, newline-terminated)."""
    import nbformat

    text = nbformat.writes(build_notebook())
    return text if text.endswith("\n") else text + "\n"


def write_notebook(path: str | os.PathLike[str] = NOTEBOOK_PATH) -> Path:
    path = Path(path)
    path.write_text(notebook_text(), encoding="utf-8")
    return path


def notebook_diff(path: str | os.PathLike[str] = NOTEBOOK_PATH, limit: int = 40) -> list[str]:
    """Unified-diff lines between the file at ``path`` and what ``build`` would write (empty: up to date)."""
    path = Path(path)
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    expected = notebook_text()
    if current == expected:
        return []
    diff = list(difflib.unified_diff(current.splitlines(), expected.splitlines(), str(path), "generated",
                                     lineterm="", n=1))
    return (diff or [f"{path} is missing"])[:limit]


def main(argv: Iterable[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    path = Path(argv[1]) if len(argv) > 1 else NOTEBOOK_PATH
    if command == "build":
        print(f"wrote {write_notebook(path)}")
        return 0
    if command == "check":
        diff = notebook_diff(path)
        if diff:
            print(f"{path} is out of date; run `python -m deforum.notebook build`:", *diff, sep="\n")
            return 1
        print(f"{path} is up to date")
        return 0
    print("usage: python -m deforum.notebook build|check [PATH]", file=sys.stderr)
    return 2


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

    Outside Colab mount_google_drive is ignored (with a note), as v0.6 fell back to the local paths.
    """
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


def active_schedules(plan: Any, anim_args: Any = None) -> dict[str, np.ndarray]:
    """The schedules of ``plan`` that move in this run: used by its mode (spec 1.6) and not constant.

    The perspective-flip schedules count in 2D when ``anim_args.flip_2d_perspective`` is on (they are left
    out when no anim_args is given: the default phi sawtooth would otherwise show in every 2D run).
    """
    names = list(MODE_SCHEDULES.get(plan.animation_mode, ()))
    if plan.animation_mode == "2D":
        flip = anim_args is not None and bool(_as_mapping(anim_args).get("flip_2d_perspective", False))
        names += list(FLIP_SCHEDULES) if flip else []
    out = {}
    for name in names:
        series = np.asarray(plan.schedules.get(name, ()), dtype=float)
        if series.size and not np.all(series == series[0]):
            out[name] = series
    return out


def plot_schedules(plan: Any, anim_args: Any = None) -> Any:
    """A matplotlib Figure of the active schedules over the frames (one panel each), or None if none move."""
    series = active_schedules(plan, anim_args)
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
    anim_args=None)`` plots the active schedules; ``plot(fig)`` shows a matplotlib figure;
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

    def plan(self, plan: Any, anim_args: Any = None) -> None:
        fig = plot_schedules(plan, anim_args)
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

    ``video_args`` are the video cell's fields (defaults from deforum.args). Animation runs use
    ``deforum.video.video_cell``; a None-mode run makes a video of its still images in order.
    Returns ``deforum.video.VideoResult`` or None when skipped.
    """
    from deforum import video as V

    v = A.make_namespace("video", video_args)
    if v.skip_video_for_run_all:
        print("Skipping video creation, uncheck skip_video_for_run_all if you want to run it")
        return None
    if result is None and not v.use_manual_settings:
        raise SettingsError("no run to make a video of: run the Run cell first, or turn on use_manual_settings "
                            "and give image_path and mp4_path")
    hint = getattr(result, "fps_hint", None) if result is not None else None
    if hint and not v.use_manual_settings and float(hint) != float(v.fps):
        print(f"fps = {v.fps:g}; the source video suggests fps = {float(hint):g}")
    fields = {k: getattr(v, k) for k in A.defaults("video") if k != "skip_video_for_run_all"}
    if v.use_manual_settings or v.render_steps or _animation_frames(result):
        video = V.video_cell(outdir=result.outdir if result is not None else "",
                             timestring=result.timestring if result is not None else "", **fields)
    else:
        stills = [Path(p) for p in result.frames if Path(p).suffix.lower() == ".png" and "_grid_" not in Path(p).name]
        if not stills:
            raise SettingsError("the run wrote no images to make a video of (save_samples is off?)")
        mp4 = Path(result.outdir) / f"{result.timestring}.mp4"
        gif = mp4.with_suffix(".gif") if v.make_gif else None
        V.make_video(stills, mp4, v.fps, make_gif=v.make_gif, gif_path=gif)
        video = V.VideoResult(mp4_path=mp4, gif_path=gif, frame_count=len(stills), fps=float(v.fps))
    print(f"wrote {video.mp4_path} ({video.frame_count} frames at {video.fps:g} fps)")
    if show:
        NotebookDisplay().video(video.mp4_path)
    return video


def _as_mapping(obj: Any) -> Mapping[str, Any]:
    return obj if isinstance(obj, Mapping) else vars(obj)


if __name__ == "__main__":
    raise SystemExit(main())
