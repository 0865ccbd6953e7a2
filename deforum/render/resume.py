"""Exact resume of a 2D/3D animation (replaces v0.6's file counting, spec 9 and 12.1 #10).

Each run keeps a small state folder next to its frames, ``{timestring}_state/``: ``state.json`` (the next
key frame to generate, the tween slots' indices, the depth-map normalisation, and the settings that shape
the image) plus the float32 images the loop carries between frames (both cadence slots, the colour
reference and, with ``use_mask``, the mask and the image kept under it). It is rewritten atomically after
every diffused frame, so a run killed at any moment resumes from the last complete key and rewrites the
frames after it identically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deforum.errors import DeforumError

STATE_VERSION = 1
IMAGE_FIELDS = ("prev_img", "next_img", "color_ref", "mask_img", "overlay_img")

# Fields that do not change a single pixel of the frames: they may differ between a run and its resume.
NON_SHAPING_FIELDS = frozenset({
    "outdir", "timestring", "resume_from_timestring", "resume_timestring", "batch_name",
    "save_samples", "save_settings", "display_samples", "save_sample_per_step", "show_sample_per_step",
    "log_weighted_subprompts", "filename_format", "make_grid", "grid_rows", "n_batch",
    "video_init_path", "video_mask_path", "extract_nth_frame", "overwrite_extracted_frames",
    "init_latent", "init_sample", "init_sample_raw", "mask_sample", "init_c", "prompt", "prompts",
})


@dataclass
class AnimationState:
    """What the render loop carries from one diffused frame to the next."""

    next_key: int = 0  # the next key frame to generate; frames before next_key - cadence are written
    prev_img: np.ndarray | None = None  # older key image, float32 0..255, warped up to prev_idx
    prev_idx: int = 0
    next_img: np.ndarray | None = None  # newer key image, float32 0..255, warped up to next_idx
    next_idx: int = 0
    color_ref: np.ndarray | None = None
    mask_img: np.ndarray | None = None  # use_mask: the mask, float32 HxWx3, warped up to mask_idx
    overlay_img: np.ndarray | None = None  # use_mask: the image kept under the mask, warped up to mask_idx
    mask_idx: int = 0
    depth_range: dict[str, float] = field(default_factory=dict)
    complete: bool = False


def state_dir(outdir: str | Path, timestring: str) -> Path:
    return Path(outdir) / f"{timestring}_state"


def shaping_settings(args: Any, anim_args: Any, animation_prompts: dict) -> dict[str, Any]:
    """The settings that shape the frames, as JSON-able values (what a resume must not change)."""
    out: dict[str, Any] = {}
    for namespace in (args, anim_args):
        for name, value in vars(namespace).items():
            if name in NON_SHAPING_FIELDS:
                continue
            if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
                out[name] = value
    out["animation_prompts"] = {str(k): v for k, v in sorted(animation_prompts.items(), key=lambda kv: int(kv[0]))}
    return json.loads(json.dumps(out))  # normalise tuples and key types exactly as they will be stored


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_state(folder: Path, state: AnimationState, settings: dict[str, Any]) -> None:
    """Write the images first, then ``state.json``, which names them: a crash in between is harmless.

    A write that fails (a full disk) is a MediaError naming the file; the previous state stays valid.
    """
    try:
        _save_state(folder, state, settings)
    except OSError as error:
        from deforum.image.io import write_error

        raise write_error(Path(error.filename or folder), error) from error


def _save_state(folder: Path, state: AnimationState, settings: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for name in IMAGE_FIELDS:
        array = getattr(state, name)
        if array is None:
            continue
        # The key frame that produced the image is part of the name, so state.json never names a file
        # that a later, unfinished write is replacing.
        file = f"{name}_{state.next_key:05}.npy"
        _atomic_save_npy(folder / file, array)
        images[name] = file
    record = {
        "version": STATE_VERSION, "next_key": state.next_key, "prev_idx": state.prev_idx,
        "next_idx": state.next_idx, "mask_idx": state.mask_idx, "depth_range": state.depth_range,
        "complete": state.complete,
        "images": images, "settings": settings,
    }
    _atomic_write_bytes(folder / "state.json", json.dumps(record, indent=1).encode("utf-8"))
    for stale in folder.glob("*.npy"):
        if stale.name not in images.values():
            stale.unlink(missing_ok=True)


def load_state(folder: Path, settings: dict[str, Any]) -> AnimationState:
    """Read a run's state and check that the settings that shape its frames have not changed."""
    path = folder / "state.json"
    if not path.is_file():
        raise DeforumError(
            f"resume_timestring: no resume state at {path}; the run was not started by this version, "
            "or its output folder was moved"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeforumError(f"resume_timestring: the resume state {path} cannot be read ({exc})") from exc
    if record.get("version") != STATE_VERSION:
        raise DeforumError(f"resume_timestring: {path} has state version {record.get('version')!r}, "
                           f"this version reads {STATE_VERSION}")
    saved = record["settings"]
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if changed:
        details = "; ".join(f"{k}: was {saved.get(k)!r}, now {settings.get(k)!r}" for k in changed[:10])
        raise DeforumError(
            f"resume_timestring: the settings that shape the frames changed since the run started, so it "
            f"cannot be continued exactly ({details}). Restore them, or start a new run."
        )
    remove_stale_temps(folder)
    state = AnimationState(next_key=record["next_key"], prev_idx=record["prev_idx"],
                           next_idx=record["next_idx"], mask_idx=record["mask_idx"],
                           depth_range=record["depth_range"], complete=record["complete"])
    for name, file in record["images"].items():
        setattr(state, name, np.load(folder / file, allow_pickle=False))
    return state


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files a killed run left behind: its unfinished frames (``.{timestring}_*.png.tmp``
    beside them, never under a frame's name) and the state's own ``*.tmp``. Returns what was removed."""
    from deforum.image.io import TEMP_SUFFIX

    timestring = folder.name.removesuffix("_state")
    stale = [*folder.parent.glob(f".{timestring}_*{TEMP_SUFFIX}"), *folder.glob("*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def find_run(output_path: str | Path, batch_name: str, timestring: str, outdir: str | Path | None = None) -> Path:
    """The output folder of run ``timestring``: ``outdir`` if it is there, else any month folder."""
    candidates = [Path(outdir)] if outdir else []
    candidates += sorted(Path(output_path).glob(f"*/{batch_name}"), reverse=True) if batch_name else []
    candidates += sorted(Path(output_path).glob("*"), reverse=True) if not batch_name else []
    for folder in candidates:
        if (state_dir(folder, timestring) / "state.json").is_file():
            return folder
    raise DeforumError(
        f"resume_timestring: no run {timestring!r} found under {output_path} (looked in "
        f"{', '.join(str(c) for c in candidates[:5]) or 'no folders'})"
    )
