"""Camera-motion preview: a run's 2D/3D moves applied to a test card or an init image, with no diffusion.

Frame 0 is the start image; frame j is frame j-1 warped with frame j's schedule values, exactly the warp a
render applies before diffusing (``deforum.render.steps.warp_image``). Colour coherence, contrast, noise
and the cadence cross-fade are left out: they change the look, not the camera path. With optical-flow
cadence on, the frames between keys are made along the flow between the keys (``flow_cadence_frames``).
Frames stay uint8 arrays and go straight into ffmpeg's stdin, so a 1000-frame 512x512 preview takes seconds
on a CPU.

Depth for the 3D warp: the configured depth model when its files are already on disk (or one named
explicitly), otherwise a flat plane; ``synthetic`` is a tilted ground plane (near at the bottom, far at
the top) that shows parallax without a depth network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deforum.errors import MediaError, SettingsError
from deforum.outputs import check_output_path, is_ours, png_info
from deforum.settings import Settings
from deforum.video import Mp4Writer

PREVIEW_MODES = ("2D", "3D")
FLAT, SYNTHETIC = "flat", "synthetic"
SYNTHETIC_NEAR, SYNTHETIC_FAR = 1.0, 3.0  # depth units of the 3D warp: MiDaS maps to roughly 1..3

DepthFn = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class PreviewResult:
    mp4_path: Path | None
    frames_dir: Path | None
    frame_count: int
    fps: float
    depth: str  # what the 3D warp used: 'flat', 'synthetic', a model name, or 'none (2D)'
    seconds: float


# ------------------------------------------------------------------------------------------ start image


def test_card(width: int, height: int) -> np.ndarray:
    """An HxWx3 uint8 card that shows motion clearly: checker, colour ramps, rings, corner discs, crosshair.

    Orientation is readable without text: red disc top-left, green top-right, blue bottom-left, yellow
    bottom-right.
    """
    if width < 8 or height < 8:
        raise SettingsError(f"W x H = {width} x {height}: the preview needs at least 8 x 8 pixels")
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cell = max(8, min(width, height) // 16)
    checker = ((x // cell + y // cell) % 2).astype(np.float32)
    card = np.empty((height, width, 3), np.float32)
    card[..., 0] = 60 + 120 * x / width
    card[..., 1] = 60 + 60 * checker
    card[..., 2] = 60 + 120 * y / height
    card += 50 * checker[..., None]

    cx, cy = (width - 1) / 2, (height - 1) / 2
    radius = np.hypot(x - cx, y - cy)
    ring = max(4, min(width, height) // 24)
    rings = (radius < (min(width, height) // 3 // (2 * ring)) * 2 * ring) & ((radius // ring) % 2 == 0)
    card[rings] = (240, 240, 240)

    disc = min(width, height) / 10
    for (px, py), colour in (((0.12, 0.12), (220, 40, 40)), ((0.88, 0.12), (40, 200, 60)),
                             ((0.12, 0.88), (50, 80, 230)), ((0.88, 0.88), (240, 220, 40))):
        card[np.hypot(x - px * width, y - py * height) < disc] = colour
    line = max(1, min(width, height) // 128)
    card[np.abs(x - cx) < line] = (255, 255, 255)
    card[np.abs(y - cy) < line] = (255, 255, 255)
    return card.astype(np.uint8)


def start_image(width: int, height: int, image: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The first frame: ``image`` (path or URL) resized to W x H as an init image is, or the test card."""
    if image is None:
        return test_card(width, height)
    from deforum.image.io import load_init_image

    rgb, _ = load_init_image(str(image), width, height, field="--image")
    return np.asarray(rgb, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- depth


def synthetic_depth(width: int, height: int) -> np.ndarray:
    """A tilted ground plane: depth SYNTHETIC_NEAR at the bottom row to SYNTHETIC_FAR at the top."""
    rows = np.linspace(SYNTHETIC_FAR, SYNTHETIC_NEAR, height, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(rows[:, None], (height, width)))


def depth_model_on_disk(name: str, models_path: str | os.PathLike[str]) -> Path | None:
    """The local folder of depth model ``name`` if its files are already there (never downloads)."""
    from deforum.motion.depth import DEPTH_MODELS, _has_weights

    if os.path.isdir(name):
        return Path(name)
    repo_id = DEPTH_MODELS.get(name, name)
    if repo_id.count("/") != 1:
        return None
    folder = Path(models_path) / repo_id.split("/")[1]
    return folder if _has_weights(folder) else None


def choose_depth(settings: Settings, width: int, height: int, depth: str | None = None,
                 device: str = "cpu") -> tuple[str, DepthFn | None]:
    """(description, depth function or None for flat) for the preview's 3D warp.

    ``depth`` None: the configured ``depth_model`` if it is on disk (``models_path``), else flat. 'flat',
    'synthetic', or a model name/folder (loaded, and downloaded if needed, like a render would).
    """
    models_path = settings.model.models_path
    if settings.animation.animation_mode != "3D":
        return "none (2D)", None
    if not settings.depth.use_depth_warping:
        return "flat (use_depth_warping is off)", None
    if depth == FLAT:
        return FLAT, None
    if depth == SYNTHETIC:
        plane = synthetic_depth(width, height)
        return SYNTHETIC, lambda image: plane
    name = depth or settings.depth.depth_model
    if depth is None:
        folder = depth_model_on_disk(name, models_path)
        if folder is None:
            return f"flat ({name!r} is not in {str(models_path)!r})", None
        name = str(folder)
    from deforum.motion.depth import DepthModel

    model = DepthModel(name, models_path=models_path, device=device, midas_weight=settings.depth.midas_weight)
    return depth or settings.depth.depth_model, model.predict


# ---------------------------------------------------------------------------------------------- frames


def preview_frames(first: np.ndarray, plan: Any, settings: Settings, depth: DepthFn | None = None,
                   device: str = "cpu", hybrid: Any = None) -> Iterator[np.ndarray]:
    """Yield every frame of the plan: ``first``, then each frame warped from the one before it (and moved by
    the video's motion with ``hybrid``, the run's ``deforum.render.hybrid_video.HybridVideo``).

    With ``optical_flow_cadence`` on and ``diffusion_cadence`` N > 1 the frames between two keys (frames 0, N,
    2N, ... warped as above) are made from those two keys by the run's ``FlowTweener`` instead (see
    ``flow_cadence_frames``), so the preview shows what the flow makes of the motion between keys.
    """
    from deforum.render.cadence import FlowTweener, tweener_for

    warped = warped_frames(first, plan, settings, depth, device, hybrid)
    tweener = tweener_for(settings, device)
    if isinstance(tweener, FlowTweener) and plan.cadence > 1:
        return flow_cadence_frames(warped, plan, tweener)
    return warped


def warped_frames(first: np.ndarray, plan: Any, settings: Settings, depth: DepthFn | None = None,
                  device: str = "cpu", hybrid: Any = None) -> Iterator[np.ndarray]:
    """``first``, then each frame of the plan warped from the one before it: the camera path, and the video's
    motion with ``hybrid`` (``hybrid_motion``)."""
    from deforum.render.steps import warp_image

    mode = settings.animation.animation_mode
    if mode not in PREVIEW_MODES:
        raise SettingsError(f"animation_mode={mode!r}: the preview shows camera motion, so it needs one of "
                            f"{', '.join(map(repr, PREVIEW_MODES))}")
    image = np.ascontiguousarray(first, dtype=np.uint8)
    yield image
    for row in plan.rows[1:]:
        image = warp_image(image, row.values, settings, None if depth is None else depth(image), device,
                           frame=row.frame)
        if hybrid is not None:
            image = hybrid.move(image, row.frame, row.values)
        yield image


def flow_cadence_frames(warped: Iterator[np.ndarray], plan: Any, tweener: Any) -> Iterator[np.ndarray]:
    """The warped frames with each frame j between keys K and K + N replaced by ``tweener`` of those two keys
    at tween ``(j - K) / N`` (the frame's ``cadence_flow_factor_schedule``).

    A render has diffused keys that differ in content; the preview has no model, so its keys are the warped
    card at frames K and K + N, and the flow between them stands in for the motion: where the flow is right
    the frame matches the plain preview, where it fails it shows. Keys and the frames after the last key
    (no next key) are the warped frames. N frames are held at a time.
    """
    from deforum.plan import CadenceRole
    from deforum.render.steps import to_uint8

    n = plan.cadence
    held: list[np.ndarray] = []
    for j, frame in enumerate(warped):
        held.append(frame)
        if j % n:
            continue
        if len(held) > 1:  # held: key j - n, the frames between, key j
            before, after = held[0].astype(np.float32), frame.astype(np.float32)
            for k in range(1, n):
                role = CadenceRole(diffused=False, next_key=j, prev_key=j - n, tween=k / n)
                yield to_uint8(tweener(before, after, role, plan.rows[j - n + k].values))
        yield frame
        held = [frame]
    yield from held[1:]  # the tail after the last key


def preview_video(settings: Settings, folder: str | os.PathLike[str]) -> Any:
    """The video whose motion moves the preview's frames (``hybrid_motion`` on), its frames extracted into
    ``folder`` (an earlier extraction of the same video is reused); None without hybrid motion."""
    if settings.hybrid.hybrid_motion == "None":
        return None
    from deforum.render.hybrid_video import HybridVideo
    from deforum.video import extract_frames

    video = settings.video_input
    if not video.video_init_path:
        raise MediaError("video_init_path: is empty; hybrid_motion moves the preview with that video's motion")
    frames = extract_frames(video.video_init_path, folder, video.extract_nth_frame, overwrite=False,
                            field="video_init_path")
    return HybridVideo(frames, settings)


def write_png(frame: np.ndarray, path: Path) -> None:
    """A fast PNG (zlib level 1): previews favour speed over size. It carries deforum's mark, so a later
    preview may replace it (``deforum.outputs``)."""
    from PIL import Image

    Image.fromarray(frame).save(path, compress_level=1, pnginfo=png_info())


def preview_png_path(folder: Path, index: int) -> Path:
    return folder / f"preview_{index:05}.png"


def check_preview_outputs(mp4_path: str | os.PathLike[str] | None, frames_dir: str | os.PathLike[str] | None,
                          frame_count: int, *, field: str = "mp4_path", frames_field: str = "frames_dir") -> None:
    """Refuse (MediaError) before any frame is made: an mp4 path or a PNG frame path that would overwrite
    a file deforum did not write, a wrong suffix, or a frames folder that is a file."""
    if mp4_path is not None:
        check_output_path(mp4_path, "mp4", field)
    if frames_dir is None:
        return
    folder = Path(frames_dir)
    if folder.exists() and not folder.is_dir():
        raise MediaError(f"{frames_field}: {str(folder)!r} is a file, not a folder for the preview's PNG frames")
    if folder.is_dir():
        for index in range(frame_count):
            png = preview_png_path(folder, index)
            if os.path.lexists(png):
                check_output_path(png, "png", frames_field)


def render_preview(plan: Any, settings: Settings, first: np.ndarray, *, mp4_path: str | os.PathLike[str] | None,
                   fps: float = 12, frames_dir: str | os.PathLike[str] | None = None,
                   depth: tuple[str, DepthFn | None] = (FLAT, None), device: str = "cpu",
                   on_frame: Callable[[int], None] | None = None, hybrid: Any = None) -> PreviewResult:
    """Warp ``first`` through the plan and write the frames to ``mp4_path`` and/or PNGs in ``frames_dir``
    (``hybrid``: the video whose motion moves the frames too, see ``preview_frames``).

    PNGs are named ``preview_00000.png``... ``on_frame(index)`` is called after each frame is written.
    """
    if mp4_path is None and frames_dir is None:
        raise SettingsError("the preview needs an mp4 path or a frames folder to write to")
    check_preview_outputs(mp4_path, frames_dir, len(plan.rows))
    started = time.perf_counter()
    height, width = first.shape[:2]
    writer = Mp4Writer(mp4_path, width, height, fps) if mp4_path is not None else None
    folder = Path(frames_dir) if frames_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        for index, frame in enumerate(preview_frames(first, plan, settings, depth[1], device, hybrid)):
            if writer is not None:
                writer.write(frame)
            if folder is not None:
                write_png(frame, preview_png_path(folder, index))
            count = index + 1
            if on_frame is not None:
                on_frame(index)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    path = writer.close() if writer is not None else None
    if folder is not None:
        remove_stale_frames(folder, count)
    return PreviewResult(path, folder, count, float(fps), depth[0], time.perf_counter() - started)


def remove_stale_frames(folder: Path, count: int) -> None:
    """Remove the frames an earlier, longer preview left after frame ``count - 1`` (only PNGs deforum wrote),
    so ``deforum video`` on the folder encodes this preview alone."""
    index = count
    while is_ours(png := preview_png_path(folder, index), "png"):
        png.unlink()
        index += 1
