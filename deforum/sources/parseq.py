"""Parseq manifests as a keyframe source: per-frame values that override the schedules they carry.

Parseq (https://github.com/rewbs/sd-parseq) renders its keyframes into a JSON manifest:

- ``meta``: ``generated_by`` ("sd_parseq"), ``version`` (e.g. "0.1.94"), ...
- ``options``: ``output_fps``, ``cadence``, ``bpm``, ...
- ``rendered_frames``: one object per frame with ``frame`` and the value of every field Parseq manages at that
  frame (``translation_x``, ``zoom``, ``strength``, ``seed``, ``scale``, ...), the field's change from the previous
  frame (``<field>_delta``; for zoom, a ratio), its percentage of the maximum (``<field>_pc``) and the frame's
  prompt (``deforum_prompt``: ``"{positive} --neg {negative}"``);
- ``rendered_frames_meta``, ``keyframes``, ``managedFields``, ``prompts``, ...: the document; not read here.

The first rendered frame defines every field the manifest manages; a field it lacks keeps the settings'
schedule. With ``parseq_use_deltas`` (the default, as in A1111 Deforum) the motion fields (angle, zoom,
translations, 3D rotations, perspective-flip angles), which Deforum applies per frame, take the ``_delta``
values; the other fields take the absolute values. ``read_manifest`` reads one; ``apply_manifest`` writes its
values into the cells' dicts as ``0:(v0), 1:(v1), ...`` schedules before ``deforum.settings.resolve()``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deforum.errors import SettingsError

log = logging.getLogger(__name__)

FIELD = "parseq_manifest"
SOURCE = "parseq"
MAX_BYTES = 64 * 1024 * 1024  # a manifest of 100,000 frames with every field is well under this
URL_TIMEOUT_S = 30.0
SUPPORTED_MAJOR = 0  # Parseq manifests so far are versions 0.x.y

# Parseq field -> our schedule field. Motion: Deforum applies these per frame, so deltas are used when asked.
MOTION = {
    "angle": "angle", "zoom": "zoom", "translation_x": "translation_x", "translation_y": "translation_y",
    "translation_z": "translation_z", "rotation_3d_x": "rotation_3d_x", "rotation_3d_y": "rotation_3d_y",
    "rotation_3d_z": "rotation_3d_z", "perspective_flip_theta": "perspective_flip_theta",
    "perspective_flip_phi": "perspective_flip_phi", "perspective_flip_gamma": "perspective_flip_gamma",
}
ABSOLUTE = {
    "perspective_flip_fv": "perspective_flip_fv", "noise": "noise_schedule", "strength": "strength_schedule",
    "contrast": "contrast_schedule",
}
# Parseq field -> (our field, kind): single values here (no schedule); a per-frame series that is not constant
# keeps its first frame's value, with a note.
SCALARS = {"scale": ("scale", "float"), "fov": ("fov", "float"), "near": ("near_plane", "int"),
           "far": ("far_plane", "int")}
PROMPT = "deforum_prompt"
# A rendered frame's keys that are not fields: its number, its prompt, and each field's companions.
_COMPANION = re.compile(r"_(delta|pc)$")


@dataclass(frozen=True)
class Manifest:
    """A Parseq manifest, read and checked: ``frames[i]`` is the rendered frame i (gaps filled forward)."""

    frames: tuple[Mapping[str, Any], ...]
    version: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    def fields(self) -> tuple[str, ...]:
        """The fields the manifest manages: the keys of its first rendered frame but ``frame``, the prompt and
        the ``_delta`` / ``_pc`` companions."""
        return tuple(k for k in self.frames[0] if k not in ("frame", PROMPT) and not _COMPANION.search(k))

    def series(self, name: str) -> list[Any] | None:
        """The per-frame values of ``name``, or None when the first frame does not define it."""
        if self.frames[0].get(name) is None:
            return None
        return [frame.get(name) for frame in self.frames]


def _error(message: str) -> SettingsError:
    return SettingsError(f"{FIELD}: {message}")


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "deforum"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 (http/https only)
            status = getattr(response, "status", 200)
            if status != 200:
                raise _error(f"{url!r} answered HTTP {status}; expected 200 with a Parseq manifest")
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise _error(f"{url!r} answered HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise _error(f"cannot fetch {url!r}: {error.reason}") from error
    except (TimeoutError, OSError) as error:
        raise _error(f"cannot fetch {url!r}: {error}") from error
    if len(body) > MAX_BYTES:
        raise _error(f"{url!r} is larger than the limit of {MAX_BYTES} bytes")
    return body


def _text(source: str | Path) -> tuple[str, str]:
    """(the manifest's JSON text, a short name of where it came from)."""
    if isinstance(source, Path):
        source = str(source)
    text = source.strip()
    if not text:
        raise _error("is empty; give a Parseq manifest: a .json file, an http(s) URL or its JSON text")
    if text.startswith(("{", "[")):
        return text, "JSON text"
    if text.startswith(("http://", "https://")):
        body = _fetch(text)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise _error(f"{text!r} is neither a file, an http(s) URL nor a manifest's JSON text")
        if path.stat().st_size > MAX_BYTES:
            raise _error(f"{text!r} is larger than the limit of {MAX_BYTES} bytes")
        body = path.read_bytes()
    try:
        return body.decode("utf-8-sig"), text
    except UnicodeDecodeError as error:
        raise _error(f"{text!r} is not UTF-8 text ({error})") from None


def _check_version(meta: Any, where: str) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise _error(f"{where}: 'meta' is {type(meta).__name__}; expected an object")
    generated_by = meta.get("generated_by")
    if generated_by is not None and "parseq" not in str(generated_by).lower():
        raise _error(f"{where}: meta.generated_by is {generated_by!r}; expected a Parseq manifest ('sd_parseq')")
    version = meta.get("version")
    if version is None:
        return None
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.].*)?", str(version).strip())
    if not match or int(match.group(1)) != SUPPORTED_MAJOR:
        raise _error(f"{where}: manifest version {version!r} is not supported; this reads Parseq manifests of "
                     f"version {SUPPORTED_MAJOR}.x (e.g. '0.1.94')")
    return str(version)


def _number(value: Any, name: str, frame: int, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(f"{where}: rendered frame {frame}: {name} is {value!r}; expected a number")
    if not math.isfinite(value):
        raise _error(f"{where}: rendered frame {frame}: {name} is {value!r}; expected a finite number")
    return value


def read_manifest(source: str | Path) -> Manifest:
    """A Parseq manifest from a path, an http(s) URL or its JSON text, checked: a JSON object whose
    ``meta.version`` (when given) is 0.x, with a non-empty ``rendered_frames`` list of objects numbered by
    ``frame`` (0, 1, ...; a missing frame repeats the one before, as Parseq's contract has it). Every problem
    is a ``SettingsError`` naming ``parseq_manifest``."""
    text, where = _text(source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _error(f"{where} is not valid JSON: {error}") from None
    if not isinstance(data, Mapping):
        raise _error(f"{where} is a JSON {type(data).__name__}; expected an object with 'rendered_frames'")
    version = _check_version(data.get("meta"), where)
    rendered = data.get("rendered_frames")
    if not isinstance(rendered, list) or not rendered:
        what = "missing" if rendered is None else ("empty" if rendered == [] else f"a {type(rendered).__name__}")
        raise _error(f"{where}: 'rendered_frames' is {what}; a Parseq manifest lists one object per frame in "
                     "'rendered_frames' (render the document in Parseq and copy its output)")
    by_frame: dict[int, Mapping[str, Any]] = {}
    for i, item in enumerate(rendered):
        if not isinstance(item, Mapping):
            raise _error(f"{where}: rendered_frames[{i}] is {type(item).__name__}; expected an object")
        number = item.get("frame")
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise _error(f"{where}: rendered_frames[{i}].frame is {number!r}; expected a frame number >= 0")
        if number in by_frame:
            raise _error(f"{where}: frame {number} is rendered twice")
        by_frame[number] = item
    if 0 not in by_frame:
        raise _error(f"{where}: 'rendered_frames' has no frame 0; the first frame defines every field")
    from deforum.settings.fields import MAX_FRAMES_LIMIT

    count = max(by_frame) + 1
    if count > MAX_FRAMES_LIMIT:
        raise _error(f"{where}: {count} frames; at most {MAX_FRAMES_LIMIT} are allowed")
    frames, previous = [], by_frame[0]
    for number in range(count):
        # A missing frame, or a null value, repeats the frame before (the first frame defines every field).
        current = dict(previous) | {k: v for k, v in by_frame.get(number, {}).items() if v is not None}
        current["frame"] = number
        for key, value in current.items():
            if key != "frame" and key != PROMPT and (key in MOTION or key in ABSOLUTE or key in SCALARS
                                                    or key == "seed" or _COMPANION.search(key)):
                if value is not None:
                    _number(value, key, number, where)
        if PROMPT in current and current[PROMPT] is not None and not isinstance(current[PROMPT], str):
            raise _error(f"{where}: rendered frame {number}: {PROMPT} is {current[PROMPT]!r}; expected text")
        frames.append(current)
        previous = current
    options = data.get("options") if isinstance(data.get("options"), Mapping) else {}
    missing = count - len(by_frame)
    if missing:
        log.warning("%s: %s: %d frame(s) missing from rendered_frames repeat the frame before", FIELD, where,
                    missing)
    return Manifest(tuple(frames), version, dict(options), where)


def _format(value: float) -> str:
    value = float(value)
    return repr(0.0 if value == 0 else value)  # repr: the shortest text that reads back to the same float


def _reproduces(values: np.ndarray, a: int, b: int) -> bool:
    """Whether keyframes at ``a`` and ``b`` alone give every value between them exactly (the schedule's
    linear interpolation, ``np.interp``, as ``deforum.keyframes.parse_schedule`` computes it)."""
    if b - a < 2:
        return True
    frames = np.arange(a, b + 1, dtype=np.float64)
    between = np.interp(frames, np.array([a, b], dtype=np.float64), values[[a, b]])
    return bool(np.array_equal(between, values[a:b + 1]))


def _keyframes(values: np.ndarray) -> list[int]:
    """The frames to keep: each segment runs as far as interpolating its two ends gives every value in it
    exactly (runs of equal values and exact linear ramps shrink to their ends; anything else keeps every
    frame). Doubling then bisecting keeps it O(n log n) on long ramps."""
    keep, a, last = [0], 0, len(values) - 1
    while a < last:
        step, good = 1, a + 1
        while good + step <= last and _reproduces(values, a, good + step):
            good += step
            step *= 2
        bad = min(good + step, last + 1)  # first end not known to work (or past the end)
        while bad - good > 1:
            middle = (good + bad) // 2
            if _reproduces(values, a, middle):
                good = middle
            else:
                bad = middle
        keep.append(good)
        a = good
    return keep


def schedule_string(values: list[float]) -> str:
    """A schedule string whose every frame reads back exactly ``values`` (``0:(v0), 1:(v1), ...``), with the
    keyframes that interpolation reproduces left out: a constant stays one or two keys, an exact linear ramp
    its ends, so long manifests stay within the schedule length limit where they can."""
    array = np.asarray(values, dtype=np.float64)
    text = ", ".join(f"{i}:({_format(array[i])})" for i in _keyframes(array))
    from deforum.keyframes import MAX_SCHEDULE_LENGTH, parse_schedule

    # A check that never fails today: should interpolation not read back a value, one key a frame.
    if len(text) <= MAX_SCHEDULE_LENGTH and not np.array_equal(parse_schedule(text, len(array)), array):
        text = ", ".join(f"{i}:({_format(v)})" for i, v in enumerate(array))
    return text


def _schedule(values: list[float], parseq_name: str, ours: str) -> str:
    from deforum.keyframes import MAX_SCHEDULE_LENGTH

    text = schedule_string(values)
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise _error(f"{parseq_name}: its {len(values)} per-frame values need a {ours} schedule of {len(text)} "
                     f"characters, over the limit of {MAX_SCHEDULE_LENGTH}; render fewer frames, or leave this "
                     "field out in Parseq")
    return text


def _cadence(anim_args: Mapping[str, Any]) -> int:
    try:
        return max(1, int(str(anim_args.get("diffusion_cadence", 1)).strip()))
    except ValueError:
        return 1  # resolve() reports the bad value


def _seed(args: dict, anim_args: Mapping[str, Any], values: list[float], notes: list[str]) -> None:
    """The manifest's per-frame seeds as a start seed and a seed_behavior (this project has no seed schedule):
    the seeds of the diffused frames (every diffusion_cadence-th) constant -> fixed, one more each -> iter;
    anything else starts at frame 0's seed with the settings' seed_behavior, and says so."""
    if any(v != int(v) for v in values):
        notes.append("seed: fractional seeds (Parseq's subseed travel) are not supported here; their whole "
                     "part is used")
    seeds = [int(math.floor(v)) for v in values]
    keys = seeds[::_cadence(anim_args)]
    args["seed"] = keys[0]
    if all(s == keys[0] for s in keys):
        args["seed_behavior"] = "fixed"
    elif all(s == keys[0] + i for i, s in enumerate(keys)):
        args["seed_behavior"] = "iter"
    else:
        notes.append(f"seed: the manifest's per-frame seeds are neither constant nor one more each diffused "
                     f"frame, which a start seed and seed_behavior cannot express; the run starts at frame 0's "
                     f"seed {keys[0]} with seed_behavior {args.get('seed_behavior', 'iter')!r}")


def apply_manifest(args: Mapping[str, Any], anim_args: Mapping[str, Any], animation_prompts: Mapping | None,
                   manifest: Manifest) -> tuple[dict, dict, dict, dict[str, str]]:
    """The cells' dicts with every field the manifest carries overridden frame by frame.

    Returns new ``(args, anim_args, animation_prompts, sources)``; ``sources`` maps each overridden field (our
    name) to ``"parseq"``. The manifest's frame count sets ``max_frames``; schedules become one keyframe a frame;
    prompts become animation_prompts at the frames where they change (negatives after ``--neg``); ``scale``,
    ``fov``, ``near``, ``far`` (single values here) take frame 0's value (a note when they vary); the seed
    becomes a start seed and seed_behavior (``_seed``). Fields the manifest lacks keep the settings' values.
    """
    args, anim_args = dict(args), dict(anim_args)
    prompts = dict(animation_prompts or {})
    sources: dict[str, str] = {}
    notes: list[str] = []
    use_deltas = anim_args.get("parseq_use_deltas", True)
    use_deltas = use_deltas if isinstance(use_deltas, bool) else str(use_deltas).strip().lower() in ("true", "1")

    anim_args["max_frames"] = manifest.frame_count
    sources["max_frames"] = SOURCE
    for parseq_name, ours in MOTION.items():
        name = parseq_name + "_delta" if use_deltas else parseq_name
        values = manifest.series(name)
        if values is None:
            if use_deltas and manifest.series(parseq_name) is not None:
                notes.append(f"{parseq_name}: the manifest has no {name} values (parseq_use_deltas); the "
                             f"settings' {ours} schedule is kept")
            continue
        anim_args[ours] = _schedule(values, name, ours)
        sources[ours] = SOURCE
    for parseq_name, ours in ABSOLUTE.items():
        values = manifest.series(parseq_name)
        if values is not None:
            anim_args[ours] = _schedule(values, parseq_name, ours)
            sources[ours] = SOURCE
    for parseq_name, (ours, kind) in SCALARS.items():
        values = manifest.series(parseq_name)
        if values is None:
            continue
        first = int(round(values[0])) if kind == "int" else values[0]
        if any(v != values[0] for v in values):
            notes.append(f"{parseq_name}: {ours} is one value per run here, not a schedule; the manifest's "
                         f"per-frame values vary, so frame 0's {first!r} is used for the whole run")
        (args if ours == "scale" else anim_args)[ours] = first
        sources[ours] = SOURCE
    seeds = manifest.series("seed")
    if seeds is not None:
        _seed(args, anim_args, seeds, notes)
        sources["seed"] = SOURCE
    texts = manifest.series(PROMPT)
    if texts is not None:
        prompts, last = {}, None
        for frame, text in enumerate(texts):
            text = text.strip()
            if text.endswith("--neg"):  # an empty negative prompt
                text = text[: -len("--neg")].rstrip()
            if text != last:
                prompts[frame] = text
                last = text
        sources["animation_prompts"] = SOURCE
    known = set(MOTION) | set(ABSOLUTE) | set(SCALARS) | {"seed"}
    ignored = [name for name in manifest.fields() if name not in known]
    if ignored:
        notes.append(f"fields with no meaning here, ignored: {', '.join(ignored)}")
    for note in notes:
        log.warning("%s: %s", FIELD, note)
    return args, anim_args, prompts, sources


def parseq_fields(sources: Mapping[str, str]) -> list[str]:
    """The fields ``sources`` says came from Parseq, in a stable order (for ``deforum plan``'s comment)."""
    return [name for name, where in sources.items() if where == SOURCE]
