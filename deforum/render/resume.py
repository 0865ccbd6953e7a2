"""Exact resume of a 2D/3D animation (replaces v0.6's file counting, spec 9 and 12.1 #10).

Each run keeps a small state folder next to its frames, ``{timestring}_state/``: ``state.json`` (the next
key frame to generate, the tween slots' indices, the depth-map normalisation, and the settings that shape
the image) plus the float32 images the loop carries between frames (both cadence slots, the colour
reference and, with ``use_mask``, the mask and the image kept under it). It is rewritten atomically after
every diffused frame, so a run killed at any moment resumes from the last complete key and rewrites the
frames after it identically.

The folder is created by ``claim_timestring`` when a run starts (every mode): an atomic ``mkdir`` that makes
the timestring the run's own, so two runs started in the same second never write the same files. A state
read back is untrusted data (``load_state``): its schema, its plan, its file names and file kinds and the
size of its images are checked before any model loads, and any problem is a ``StateError`` naming the file
and the key.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deforum.errors import DeforumError, StateError
from deforum.image.io import write_atomic
from deforum.keyframes import MAX_SCHEDULE_LENGTH
from deforum.settings import FIELDS, MAX_FRAMES_LIMIT, SEED_MAX, RunIdentity, schedule_fields, v06_groups

if TYPE_CHECKING:
    from deforum.settings import Settings

STATE_VERSION = 1
STATE_FILE = "state.json"
IMAGE_FIELDS = ("prev_img", "next_img", "color_ref", "mask_img", "overlay_img")
RECORD_KEYS = ("version", "next_key", "prev_idx", "next_idx", "mask_idx", "depth_range", "complete", "images",
               "settings")
# state.json holds a few numbers and the settings that shape the frames: the schedules (every keyframe schedule
# and seed_schedule, each at most MAX_SCHEDULE_LENGTH characters, which JSON's escapes may double) and the
# prompts. A real one is kilobytes; the bound only has to admit the largest settings this version accepts.
MAX_STATE_BYTES = 2 * (len(schedule_fields()) + 1) * MAX_SCHEDULE_LENGTH + 64 * 2**20
MAX_STATE_INDEX = 2 * MAX_FRAMES_LIMIT  # frame indices and keys; load_state bounds them by the run's own plan
TIMESTRING_FORMAT = "%Y%m%d%H%M%S"
MAX_CLAIM_TRIES = 10_000  # seconds after the wanted timestring that a new run may move on to
# Names that belong to run {ts}: frames, depth maps, settings, state, videos, and their hidden temp files.
_TIMESTRING_PREFIX = re.compile(r"^\.?(\d{14})(?:[_.]|$)")
IMAGE_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))  # the loop's images; the colour reference is uint8
NPY_HEADER_BYTES = 4096  # a .npy header is 128 bytes for our arrays; the rest of the file is H x W x 3 float32

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


def claim_timestring(outdir: str | Path, timestring: str) -> str:
    """Reserve a new run's timestring in ``outdir``: ``timestring``, or the first free second after it.

    A timestring is free when no file or folder of ``outdir`` is named after it (``{ts}_*``, ``{ts}.*`` and
    their hidden temp files) and this call creates its ``{ts}_state/`` folder: ``mkdir`` without
    ``exist_ok`` is atomic, so of two runs started in the same second into the same folder (any mode) one
    gets the timestring and the other moves on to the next second, and they never write the same files.
    The folder is the run's resume state folder (2D/3D); in other modes it stays empty until the run ends
    (``release_claim``), and from then on the run's files keep their timestring taken.
    """
    outdir = Path(outdir)
    try:
        taken = {match.group(1) for match in map(_TIMESTRING_PREFIX.match, os.listdir(outdir)) if match}
    except OSError as error:
        from deforum.image.io import write_error

        raise write_error(outdir, error) from error
    candidate = timestring
    for _ in range(MAX_CLAIM_TRIES):
        if candidate not in taken:
            try:
                state_dir(outdir, candidate).mkdir()
            except FileExistsError:
                pass  # another run claimed it since the folder was listed
            except OSError as error:
                from deforum.image.io import write_error

                raise write_error(state_dir(outdir, candidate), error) from error
            else:
                return candidate
        candidate = next_timestring(candidate)
    raise DeforumError(f"timestring: no free timestring from {timestring} to {candidate} in {outdir} "
                       f"({MAX_CLAIM_TRIES} tries); use another batch_name")


def release_claim(outdir: str | Path, timestring: str) -> bool:
    """Remove the claim folder of a run that ended without putting anything in it (a still batch, a Video
    Input or Interpolation run, or a run that failed before its first state); its files, if any, keep the
    timestring taken. Returns whether the folder was removed."""
    try:
        os.rmdir(state_dir(outdir, timestring))
    except OSError:  # not empty (a 2D/3D run's state), or already gone
        return False
    return True


def next_timestring(timestring: str) -> str:
    """The timestring one second later (``YYYYmmddHHMMSS``); any other digit string counts up by one."""
    import datetime

    try:
        moment = datetime.datetime.strptime(timestring, TIMESTRING_FORMAT)
    except ValueError:
        digits = re.sub(r"\D", "", timestring) or "0"
        return str(int(digits) + 1).zfill(len(digits))
    return (moment + datetime.timedelta(seconds=1)).strftime(TIMESTRING_FORMAT)


def shaping_settings(settings: Settings, identity: RunIdentity) -> dict[str, Any]:
    """The settings that shape the frames, as JSON-able values (what a resume must not change).

    Every DeforumArgs and DeforumAnimArgs field whose ``shapes_image`` column is on, as v0.6 named and saved
    it (``v06_groups``), plus the animation prompts: the ``settings`` object of ``state.json``. The seed is
    the run's resolved seed, ``identity.seed`` (a resumed run with seed -1 has the seed it started with).
    """
    args, anim_args = v06_groups(settings, identity)
    out: dict[str, Any] = {}
    for group, values in (("args", args), ("anim_args", anim_args)):
        out.update((name, value) for name, value in values.items() if FIELDS[group][name].shapes_image)
    prompts = settings.prompts.animation_prompts
    out["animation_prompts"] = {str(k): prompts[k] for k in sorted(prompts, key=int)}
    return json.loads(json.dumps(out))  # normalise tuples and key types exactly as they will be stored


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, data)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, array, allow_pickle=False))


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


def load_state(folder: Path, settings: dict[str, Any], *, width: int, height: int, max_frames: int,
               cadence: int = 1) -> AnimationState:
    """Read a run's state as untrusted data and check it against this run's settings and plan.

    ``state.json`` is checked against a schema (types, ranges, ``next_key`` within the plan of ``max_frames``
    frames at ``cadence``); its images must be plain ``.npy`` files inside ``folder`` itself (no paths, no
    symlinks, no FIFOs or devices), ``height x width x 3`` arrays (float32 of finite values in 0..255, or
    uint8). The settings that shape the frames must not have changed. Any problem is a ``StateError`` naming
    the file and the key; nothing in the folder is changed (``remove_stale_temps`` does that, once the run
    goes on).
    """
    path = folder / STATE_FILE
    record = read_record(folder)
    saved = record["settings"]
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if changed:
        details = "; ".join(f"{k}: was {_short(saved.get(k))}, now {_short(settings.get(k))}" for k in changed[:10])
        raise StateError(
            f"resume_timestring: the settings that shape the frames changed since the run started, so it "
            f"cannot be continued exactly ({details}). Restore them, or start a new run."
        )
    cadence = max(1, int(cadence))
    last_key = ((int(max_frames) - 1) // cadence) * cadence
    next_key = record["next_key"]
    if next_key > last_key + cadence or next_key % cadence:
        raise _bad(path, "next_key", next_key, f"a multiple of diffusion_cadence ({cadence}) from 0 to "
                                               f"{last_key + cadence} (this run has {max_frames} frames)")
    for key in ("prev_idx", "next_idx", "mask_idx"):
        if record[key] >= max_frames:
            raise _bad(path, key, record[key], f"a frame index from 0 to {max_frames - 1}")
    images = record["images"]
    if next_key > 0 and "next_img" not in images:
        raise _bad(path, "images", images, "the next_img of the key frames already generated (next_key is "
                                           f"{next_key})")
    state = AnimationState(next_key=next_key, prev_idx=record["prev_idx"], next_idx=record["next_idx"],
                           mask_idx=record["mask_idx"], depth_range=dict(record["depth_range"]),
                           complete=record["complete"])
    for name, file in images.items():
        setattr(state, name, _read_image(folder, name, file, int(width), int(height)))
    return state


def read_record(folder: Path) -> dict[str, Any]:
    """``state.json`` of a run, checked against the schema (types and plan-independent ranges).

    Reading never blocks or follows a link: the state folder must be a real folder and ``state.json`` a
    regular file of at most ``MAX_STATE_BYTES``.
    """
    path = folder / STATE_FILE
    _check_folder(folder, path)
    data = _read_regular(path, path, "state.json", MAX_STATE_BYTES)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StateError(f"resume_timestring: the resume state {path} is not valid JSON ({exc}); it was damaged "
                         "or written by another program. Start a new run.") from None
    if not isinstance(record, dict):
        raise StateError(f"resume_timestring: the resume state {path} holds a {type(record).__name__}, not an "
                         f"object with the keys {', '.join(RECORD_KEYS)}. Start a new run.")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise StateError(f"resume_timestring: the resume state {path} lacks the key(s) {', '.join(missing)}; "
                         "it was damaged or written by another program. Start a new run.")
    if not _is_int(record["version"]) or record["version"] != STATE_VERSION:
        raise StateError(f"resume_timestring: {path} has state version {_short(record['version'])}, "
                         f"this version reads {STATE_VERSION}")
    for key in ("next_key", "prev_idx", "next_idx", "mask_idx"):
        if not _is_int(record[key]) or not 0 <= record[key] <= MAX_STATE_INDEX:
            raise _bad(path, key, record[key], f"a whole number from 0 to {MAX_STATE_INDEX}")
    if not isinstance(record["complete"], bool):
        raise _bad(path, "complete", record["complete"], "true or false")
    depth_range = record["depth_range"]
    if not isinstance(depth_range, dict) or (depth_range and (
            set(depth_range) != {"dmin", "dmax"}
            or not all(_is_number(v) and math.isfinite(v) for v in depth_range.values())
            or depth_range["dmin"] > depth_range["dmax"])):
        raise _bad(path, "depth_range", depth_range, "{} or {\"dmin\": d0, \"dmax\": d1} with finite d0 <= d1")
    images = record["images"]
    if not isinstance(images, dict):
        raise _bad(path, "images", images, f"an object mapping some of {', '.join(IMAGE_FIELDS)} to file names")
    for name, file in images.items():
        if name not in IMAGE_FIELDS:
            raise _bad(path, "images", name, f"one of {', '.join(IMAGE_FIELDS)}")
        if not isinstance(file, str) or not re.fullmatch(rf"{name}_\d{{5,9}}\.npy", file):
            raise _bad(path, f"images.{name}", file,
                       f"a file name {name}_NNNNN.npy in the state folder {folder} (no path)")
    settings = record["settings"]
    if not isinstance(settings, dict):
        raise _bad(path, "settings", settings, "an object of the settings that shape the frames")
    return record


def saved_seed(folder: Path) -> int:
    """The seed the run being resumed started with (a run started with seed -1 resumes with it)."""
    path = folder / STATE_FILE
    seed = read_record(folder)["settings"].get("seed")
    if not _is_int(seed) or not 0 <= seed <= SEED_MAX:
        raise _bad(path, "settings.seed", seed, f"a whole number from 0 to {SEED_MAX}")
    return seed


def _check_folder(folder: Path, path: Path) -> None:
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        raise StateError(f"resume_timestring: no resume state at {path}; the run was not started by this "
                         "version, or its output folder was moved") from None
    except OSError as exc:
        raise StateError(f"resume_timestring: the resume state folder {folder} cannot be read "
                         f"({exc.strerror or exc})") from None
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a folder"
        raise StateError(f"resume_timestring: the resume state folder {folder} is {kind}; a run's state must be "
                         "a real folder inside its output folder")


def _read_regular(path: Path, state_file: Path, key: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a link, FIFO, device or folder) of <= limit bytes."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if path == state_file:
            raise StateError(f"resume_timestring: no resume state at {path}; the run was not started by this "
                             "version, or its output folder was moved") from None
        raise _bad(state_file, key, path.name, "a file that exists in the state folder") from None
    except OSError as exc:
        raise StateError(f"resume_timestring: {path} (key {key} of {state_file}) cannot be read "
                         f"({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _bad(state_file, key, path.name, f"a regular file (this is {_file_kind(info.st_mode)})")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise StateError(f"resume_timestring: {path} (key {key} of {state_file}) cannot be read "
                         f"({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())  # what was opened, in case the name was swapped after the check
        if not stat.S_ISREG(info.st_mode):
            raise _bad(state_file, key, path.name, f"a regular file (this is {_file_kind(info.st_mode)})")
        if info.st_size > limit:
            raise _bad(state_file, key, path.name, f"a file of at most {limit} bytes (it has {info.st_size})")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _bad(state_file, key, path.name, f"a file of at most {limit} bytes")
    return data


def _read_image(folder: Path, name: str, file: str, width: int, height: int) -> np.ndarray:
    state_file = folder / STATE_FILE
    key = f"images.{name}"
    path = folder / file  # a plain name (read_record): never a path out of the folder
    data = _read_regular(path, state_file, key, width * height * 3 * 4 + NPY_HEADER_BYTES)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy reports a damaged .npy with many exception types
        raise _bad(state_file, key, file, f"a .npy array file ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype not in IMAGE_DTYPES or array.shape != (height, width, 3):
        what = f"{getattr(array, 'dtype', type(array).__name__)} {tuple(getattr(array, 'shape', ()))}"
        raise _bad(state_file, key, file, f"a float32 or uint8 image of {height} x {width} x 3, the size of this "
                                          f"run (W={width}, H={height}); it holds {what}")
    if array.dtype == np.float32 and (not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 255.0):
        raise _bad(state_file, key, file, "an image of finite values from 0 to 255")
    return array


def _bad(state_file: Path, key: str, value: Any, allowed: str) -> StateError:
    return StateError(f"resume_timestring: the resume state {state_file} is not valid: {key} = {_short(value)} "
                      f"is not allowed; it must be {allowed}. The state was damaged or written by another "
                      "program; start a new run.")


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
