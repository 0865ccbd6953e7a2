"""The Video Input mode (spec animation 7, generation 5.7): every extracted video frame is img2img'd.

Two steps, so that every user mistake surfaces before the model runs:

1. ``prepare_video_input`` probes the video (and the mask video), checks the output folder, and extracts
   every ``extract_nth_frame``-th frame into ``{outdir}/inputframes`` (masks into ``{outdir}/maskframes``).
   The frame count is known from here on (``len(frames)``); the settings are not changed, the runner
   passes it where it is needed (the settings file's max_frames) and the frames in ``RunInputs.video``.
2. ``render_input_video`` generates frame k from video frame k with the prompt and seed of plan row k,
   saved as ``{timestring}_{k:05}.png``.

Strength (spec 12.1 #14): v0.6 used the global ``strength`` for every frame, whose default 0 noised the video
away completely. Here ``strength`` > 0 is used as in v0.6 (the guide: "strength determines the presence of an
init_image/video"); ``strength`` 0 means "not set" and the per-frame ``strength_schedule`` is used instead,
so the default settings follow the video. Which one applies is logged.

Hybrid video (``hybrid_motion`` / ``hybrid_composite``, A1111 Deforum's fields): frame 0 starts from video
frame 0 as above; every later frame starts from the frame made before it, moved by the video's motion, with
video frame k composited in as the 2D/3D loop does (``deforum.render.hybrid_video``), so the output follows the
video without flickering from frame to frame; "After Generation" blends video frame k into the frame made.

Masks: with ``use_mask_video`` mask frame k is both the latent mask and the overlay mask of frame k, and the
overlay original is video frame k (v0.6 froze the overlay mask at the first mask frame, spec 12.1 #9).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from deforum.errors import MediaError, SettingsError
from deforum.image.convert import sample_to_uint8
from deforum.image.io import ensure_output_folder, load_init_image, open_image
from deforum.plan import FrameRow, make_plan
from deforum.render.hybrid_video import HybridVideo, hybrid_on
from deforum.render.output import FrameSink
from deforum.render.steps import check_finite, generation_request, sample_to_float_image, to_uint8
from deforum.settings import MAX_FRAMES_LIMIT
from deforum.video import count_packets, extract_frames, probe_video

if TYPE_CHECKING:
    from deforum.render.inputs import RunInputs
    from deforum.settings import RunIdentity, Settings

log = logging.getLogger(__name__)

INPUT_FRAMES = "inputframes"
MASK_FRAMES = "maskframes"
LOCK_NAME = ".frames.lock"  # in the output folder: which run owns inputframes/ and maskframes/


@dataclass(frozen=True)
class VideoFrames:
    """The extracted frames of a Video Input run and the frame rate to give the video cell."""

    frames: list[Path]
    mask_frames: list[Path] | None
    fps_hint: float  # suggested output fps: source fps / extract_nth_frame (keeps the source's timing)
    source_fps: float = 0.0
    lock: FramesLock | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Let other runs extract into the shared frames folders again (also done when this is collected)."""
        if self.lock is not None:
            self.lock.release()


class FramesLock:
    """An exclusive lock on ``inputframes``/``maskframes`` of one output folder, held by the run that extracts
    into them until it has rendered (``fcntl.flock``: the system releases it when the process ends, so a
    killed run never leaves it behind). A run that cannot take it extracts into folders of its own."""

    def __init__(self, outdir: Path):
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # no flock (Windows): every run extracts into its own folders
            return
        try:
            fd = os.open(outdir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another run, or a file system without locks
            os.close(fd)
            return
        self._fd = fd
        self._close = weakref.finalize(self, os.close, fd)  # runs once: on release() or when collected

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            self._fd = None
            self._close()  # closing the descriptor drops the flock


def _nth_frame(settings: Settings) -> int:
    value = settings.video_input.extract_nth_frame
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # resolve() gives an int; a hand-built Settings may hold 3.0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"extract_nth_frame: {value!r} is not allowed; use a whole number >= 1")
    return value


def prepare_video_input(settings: Settings, identity: RunIdentity, *, hold: bool = False) -> VideoFrames:
    """Probe the video(s), check the output folder, extract the frames; raises before any diffusion.

    Frames go to ``{identity.outdir}/inputframes/00001.jpg`` ... (and ``maskframes`` with ``use_mask_video``);
    ``overwrite_extracted_frames`` False reuses an earlier extraction only if it came from the same video
    with the same ``extract_nth_frame`` (see ``deforum.video.extract_frames``). Those folders belong to one
    run at a time: while another run renders from them, this one extracts into ``{timestring}_inputframes``
    / ``{timestring}_maskframes`` of its own, so neither loses its frames. With ``hold`` (the runner) they
    stay this run's until ``VideoFrames.release()``; without, only while extracting.
    """
    video_settings = settings.video_input
    n = _nth_frame(settings)
    video_path = str(video_settings.video_init_path or "")
    use_mask_video = bool(video_settings.use_mask_video)
    mask_path = str(video_settings.video_mask_path or "")
    if not video_path:
        raise MediaError("video_init_path: is empty; give the path of the video to use (Video Input mode, hybrid "
                         "video)")
    if use_mask_video and not mask_path:
        raise MediaError("video_mask_path: is empty but use_mask_video is on; give the mask video's path")

    # Check both videos, the frame count and the output folder before extracting anything.
    info = probe_video(video_path, count_frames=False, field="video_init_path")
    stored = count_packets(video_path)  # the frames the file stores, counted without decoding them
    extracted = -(-stored // n)
    if extracted > MAX_FRAMES_LIMIT:
        raise MediaError(f"video_init_path: {video_path!r} has {stored} frames, so extract_nth_frame={n} "
                         f"gives {extracted} frames to render; at most {MAX_FRAMES_LIMIT} are allowed: raise "
                         "extract_nth_frame or cut the video")
    if use_mask_video:
        probe_video(mask_path, count_frames=False, field="video_mask_path")
    outdir = ensure_output_folder(identity.outdir)

    overwrite = bool(video_settings.overwrite_extracted_frames)
    # The shared folders belong to one run at a time: a run started while another one renders from them
    # extracts into {timestring}_inputframes (and _maskframes) instead of deleting the other run's frames.
    lock = FramesLock(outdir)
    input_dir, mask_dir = outdir / INPUT_FRAMES, outdir / MASK_FRAMES
    if not lock.held:
        timestring = identity.timestring
        input_dir, mask_dir = outdir / f"{timestring}_{INPUT_FRAMES}", outdir / f"{timestring}_{MASK_FRAMES}"
        log.info("Video Input: %s is in use by another run; this run extracts into %s", outdir / INPUT_FRAMES,
                 input_dir)
    try:
        frames, mask_frames = _extract(video_path, mask_path if use_mask_video else None, input_dir, mask_dir, n,
                                       overwrite)
    except BaseException:
        lock.release()
        raise
    fps_hint = info.output_fps(n)
    log.info("Video Input: %d frames from %s (source %.4g fps; extract_nth_frame %d -> set the video "
             "cell's fps to %.4g to keep the source's timing)", len(frames), video_path, info.fps, n, fps_hint)
    if not hold:
        lock.release()
    return VideoFrames(frames=frames, mask_frames=mask_frames, fps_hint=fps_hint, source_fps=info.fps,
                       lock=lock if lock.held else None)


def _extract(video_path: str, mask_path: str | None, input_dir: Path, mask_dir: Path, n: int,
             overwrite: bool) -> tuple[list[Path], list[Path] | None]:
    frames = extract_frames(video_path, input_dir, n, overwrite, field="video_init_path")
    mask_frames = None
    if mask_path is not None:
        mask_frames = extract_frames(mask_path, mask_dir, n, overwrite, field="video_mask_path")
        if len(mask_frames) < len(frames):
            raise MediaError(
                f"video_mask_path: {mask_path!r} gives {len(mask_frames)} mask frames with "
                f"extract_nth_frame={n}, but video_init_path gives {len(frames)} frames; the mask video "
                "needs at least as many frames as the video"
            )
        if len(mask_frames) > len(frames):
            log.info("the mask video has %d frames more than the video; they are not used",
                     len(mask_frames) - len(frames))
            mask_frames = mask_frames[:len(frames)]
    return frames, mask_frames


def frame_strengths(settings: Settings, rows: Sequence[FrameRow]) -> tuple[list[float], str]:
    """The img2img strength of every video frame, and which setting gave it.

    ``strength`` > 0: that value for every frame (v0.6). ``strength`` 0: the per-frame ``strength_schedule``
    (v0.6 used 0 here, which ignored the video). Values are clamped to [0, 1].
    """
    strength = float(settings.init.strength or 0.0)
    if strength > 0:
        return [min(strength, 1.0)] * len(rows), "strength"
    strengths = []
    for row in rows:
        if row.values is None:
            raise SettingsError(f"frame {row.frame}: the plan row has no schedule values (strength_schedule)")
        strengths.append(min(max(float(row.values.strength_schedule), 0.0), 1.0))
    return strengths, "strength_schedule"


def render_input_video(settings: Settings, identity: RunIdentity, generator: Any, inputs: RunInputs, *,
                       on_frame: Callable[[int, Path], None] | None = None) -> list[Path]:
    """Generate and save one frame per extracted video frame (``inputs.video``); returns the frame paths in
    order.

    ``generator`` is a ``deforum.generate.Generator`` (anything with its ``generate(GenerationRequest)``);
    ``identity.seed`` is the run's resolved seed. ``on_frame(frame, path)`` is called after each frame is
    written.
    """
    video: VideoFrames | None = inputs.video
    if video is None:
        raise MediaError("video_init_path: no frames were extracted (prepare_video_input gives them; the "
                         "runner puts them in RunInputs.video)")
    if settings.animation.animation_mode != "Video Input":
        raise SettingsError(f"animation_mode: {settings.animation.animation_mode!r}; render_input_video "
                            "renders settings of the 'Video Input' mode")
    if not video.frames:
        raise MediaError("video_init_path: no frames were extracted from the video")
    missing = [str(p) for p in video.frames if not Path(p).is_file()]
    if missing:
        raise MediaError(f"{len(missing)} extracted frame(s) are missing, e.g. {missing[0]!r}; "
                         "extract the video again (overwrite_extracted_frames)")
    if video.mask_frames is not None and len(video.mask_frames) < len(video.frames):
        raise MediaError(f"video_mask_path: {len(video.mask_frames)} mask frames for {len(video.frames)} "
                         "video frames")

    plan = make_plan(settings, identity.seed, init_images=[str(p) for p in video.frames])
    strengths, source = frame_strengths(settings, plan.rows)
    if source == "strength":
        log.info("Video Input: every frame uses strength %.3g (the strength setting)", strengths[0])
    else:
        log.info("Video Input: strength is 0, so each frame uses strength_schedule (frame 0: %.3g); "
                 "set strength > 0 to use one value for every frame", strengths[0])

    W, H = settings.image.W, settings.image.H
    outdir = ensure_output_folder(identity.outdir)

    # A still mask (use_mask with mask_file, read with the run's inputs) applies to every frame; resolve()
    # refused use_alpha_as_mask without a mask video (extracted frames have no alpha channel).
    still_mask = inputs.mask_image if video.mask_frames is None else None
    use_any_mask = video.mask_frames is not None or still_mask is not None

    hybrid = HybridVideo(video.frames, settings) if hybrid_on(settings) else None
    previous: np.ndarray | None = None  # hybrid video: the last frame made, float H x W x 3

    base = generation_request(settings, identity.seed)
    if video.mask_frames is not None:
        base = dataclasses.replace(base, overlay_mask=True)  # v0.6 forced it on with a mask video (spec 5.7)
    save_steps = settings.output.save_sample_per_step
    sink = FrameSink(outdir, identity.timestring, on_frame=on_frame)
    for row, strength in zip(plan.rows, strengths, strict=True):
        init, _alpha = load_init_image(row.init_image, W, H, field="video_init_path")
        if hybrid is not None and previous is not None:
            # the last frame made, moved by the video's motion, with this video frame composited in
            init = Image.fromarray(to_uint8(hybrid.key_init(previous, row.frame, row.values)))
        mask = still_mask
        if video.mask_frames is not None:
            mask = open_image(video.mask_frames[row.frame], field="video_mask_path")
        step_dir = sink.step_dir(row.seed) if save_steps else None
        sample = generator.generate(dataclasses.replace(
            base, seed=row.seed, prompt=row.prompt, frame=row.frame, strength=strength, init_image=init,
            mask=mask if use_any_mask else None, step_dir=step_dir))
        check_finite(sample, row.frame, "generated image", row.values)
        # The overlay original defaults to the init, i.e. this video frame.
        if hybrid is None:
            sink.write_frame(row.frame, sample_to_uint8(sample))
            continue
        previous = hybrid.after_generation(sample_to_float_image(sample), row.frame, row.values)
        sink.write_frame(row.frame, to_uint8(previous))
    return sink.written


__all__ = ["INPUT_FRAMES", "MASK_FRAMES", "VideoFrames", "frame_strengths",
           "prepare_video_input", "render_input_video"]
