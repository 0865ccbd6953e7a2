"""Settings values: normalize, find every problem at once (types, ranges, choices, cross-field and per-mode
rules, schedules, prompts), v0.6's value rules (``post_process``), the typed settings (``resolve``) and a
run's identity (``identify``: timestring, seed, output folder).

Pure: nothing here reads or writes files (``deforum.settings.files`` does), and no model is loaded.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import os
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from deforum.errors import ScheduleError, SettingsError
from deforum.settings.fields import (
    ANIMATION_MODES,
    DEFAULT_ANIMATION_PROMPTS,
    DEFAULT_PROMPTS,
    DEPTH_MODELS,
    FIELDS,
    GRID_MEMORY_LIMIT,
    GROUP_TITLES,
    LORA_WEIGHT_LIMIT,
    MAX_FRAMES_LIMIT,
    MAX_LORAS,
    MAX_NAME_BYTES,
    MAX_STEPS,
    SCHEDULED_MODES,
    SEED_MAX,
    Field,
    concern_fields,
    defaults,
    group_fields,
    schedule_fields,
)
from deforum.settings.types import CONCERN_TYPES, Settings


def round_to_64(value: int) -> int:
    """Round a size down to a multiple of 64, as the v0.6 cell did (W, H)."""
    value = int(value)
    return value - value % 64


# --------------------------------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_dict(obj: Any) -> dict[str, Any]:
    """The fields of a settings group given as a mapping or a namespace (None: empty)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    return dict(vars(obj))


def normalize(group: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``normalized`` without its notes."""
    return normalized(group, values)[0]


def normalized(group: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Coerce values the way the v0.6 form did, without judging them (``validate`` does that).

    Returns (values, notes): one note per value that changed on the way in, for the user to see (``deforum
    settings check`` prints them, a render shows them once). Integral floats in int fields become ints
    (Colab number fields may give 512.0); diffusion_cadence and the video max_frames become strings ('2';
    the same value, no note); W and H are rounded down to multiples of 64; in the Video Input mode a
    max_frames outside 1..MAX_FRAMES_LIMIT is brought into it (the render takes the count from the video).
    Values that cannot be coerced are left for ``validate`` to report.
    """
    group_fields(group)
    fields = FIELDS[group]
    out = dict(values)
    notes: list[str] = []
    for name, value in values.items():
        f = fields.get(name)
        if f is None:
            continue
        given, reasons = value, []
        if f.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
            reasons.append("a whole number")
        elif f.type == "intstr" and _is_number(value) and float(value).is_integer():
            value = str(int(value))
        if group == "args" and name in ("W", "H") and isinstance(value, int) and not isinstance(value, bool) \
                and value >= 64 and value % 64:
            value = round_to_64(value)
            reasons.append("rounded down to a multiple of 64")
        if group == "anim_args" and name == "max_frames" and values.get("animation_mode") == "Video Input" \
                and isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_FRAMES_LIMIT:
            value = min(max(value, 1), MAX_FRAMES_LIMIT)
            reasons.append("Video Input renders every frame the video gives, as v0.6 did, whatever max_frames "
                           "says; the plan and the checks stop at this count")
        if reasons:
            notes.append(f"{name}={short_repr(given)} is used as {value!r} ({', '.join(reasons)})")
        out[name] = value
    return out, notes


def _unknown_key_message(group: str, key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS[group], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{key!r} is not a {GROUP_TITLES[group]} field{hint}"


_UNSAFE_NAME = re.compile(r"[/\\\x00]")


def unsafe_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a single file/folder name inside the output folder, or None if it can."""
    if _UNSAFE_NAME.search(value):
        return "must be a plain name without '/', '\\' or NUL"
    if value in (".", "..") or ".." in value.split("."):
        return "must not contain '..'"
    if os.path.isabs(value) or re.match(r"^[A-Za-z]:", value):
        return "must not be an absolute path"
    return None


def describe(f: Field) -> str:
    """What is allowed, in words."""
    if f.choices and not f.open_choices and f.type != "intstr":
        allowed = "one of " + ", ".join(repr(c) for c in f.choices)
    elif f.type == "bool":
        allowed = "true or false"
    elif f.type in ("int", "intstr"):
        allowed = "an integer" if f.type == "int" else "an integer (number or string)"
    elif f.type == "float":
        allowed = "a number"
    elif f.type == "schedule":
        allowed = "a keyframe schedule string such as \"0:(1.0), 10:(0.5)\""
    elif f.type == "runtime":
        allowed = "null (it is renderer state)"
    elif f.type == "inject_timing":
        allowed = "an integer n >= 1, a list of step numbers >= 1 or a list of fractions 0..1"
    elif f.type == "lora":
        allowed = (f'a list of at most {MAX_LORAS} {{"path": file, "weight": number from -{_num(LORA_WEIGHT_LIMIT)} '
                   f'to {_num(LORA_WEIGHT_LIMIT)}}}')
    else:
        allowed = "a string"
    if f.minimum is not None and f.maximum is not None:
        allowed += f" from {_num(f.minimum)} to {_num(f.maximum)}"
    elif f.minimum is not None:
        allowed += f" >= {_num(f.minimum)}"
    elif f.maximum is not None:
        allowed += f" <= {_num(f.maximum)}"
    if f.group == "args" and f.name in ("W", "H"):
        allowed += " (rounded down to a multiple of 64)"
    if f.nullable and f.type != "runtime":
        allowed += " or null"
    return allowed


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _value_problem(f: Field, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``f`` (type, range, choice), or None."""
    if value is None:
        return None if f.nullable else "must not be null"
    ok = True
    number: float | None = None
    if f.type == "bool":
        ok = isinstance(value, bool)
    elif f.type == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        number = value if ok else None
    elif f.type == "float":
        ok = _is_number(value) and math.isfinite(value)
        number = value if ok else None
    elif f.type == "intstr":
        ok = isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None
        number = int(value) if ok else None
    elif f.type in ("str", "schedule"):
        ok = isinstance(value, str)
    elif f.type == "runtime":
        ok = False
    elif f.type == "inject_timing":
        return inject_timing_problem(value)
    elif f.type == "lora":
        return lora_problem(value)
    if not ok:
        return f"must be {describe(f)}"
    if number is not None and ((f.minimum is not None and number < f.minimum)
                               or (f.maximum is not None and number > f.maximum)):
        return f"must be {describe(f)}"
    if f.choices and not f.open_choices and f.type != "intstr" and value not in f.choices:
        return f"must be {describe(f)} (names are exact)"
    return None


def lora_problem(value: Any) -> str | None:
    """Why a ``lora`` list is not allowed: each entry names a file and a finite weight."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LORAS:
        return f"must be {describe(FIELDS['root']['lora'])}"
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping) or set(entry) - {"path", "weight"} or "path" not in entry:
            return f'entry {index}: must be {{"path": file, "weight": number}}; got {short_repr(entry)}'
        path, weight = entry["path"], entry.get("weight", 1.0)
        if not isinstance(path, str) or not path.strip():
            return f"entry {index}: path must be the LoRA file's path; got {short_repr(path)}"
        if not _is_number(weight) or not math.isfinite(weight) or abs(weight) > LORA_WEIGHT_LIMIT:
            return (f"entry {index}: weight must be a number from -{_num(LORA_WEIGHT_LIMIT)} to "
                    f"{_num(LORA_WEIGHT_LIMIT)}; got {short_repr(weight)}")
    return None


def inject_timing_problem(value: Any) -> str | None:
    """Step numbers past the steps a frame runs are allowed: they never apply (as in v0.6)."""
    allowed = ("must be null (every step), an integer n >= 1 (every n-th step), a list of step numbers "
               ">= 1, or a list of fractions 0..1")
    if value is None:
        return None
    if _is_number(value) and isinstance(value, int):
        return None if value >= 1 else allowed
    if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
        return allowed
    if all(isinstance(v, int) for v in value):
        return None if min(value) >= 1 else allowed
    if all(isinstance(v, float) for v in value):
        return None if all(0.0 <= v <= 1.0 for v in value) else allowed
    return allowed + " (not a mix of integers and fractions)"


# ----------------------------------------------------------------------------------------- validation


def problems(group: str, values: Mapping[str, Any], *, present_only: bool = False) -> list[str]:
    """Every field-level problem of one group: missing keys, types, ranges, exact choices, safe names.

    ``present_only``: check only the fields in ``values`` (a partial group, e.g. the video fields of a file).
    """
    out = []
    for f in group_fields(group):
        if f.name not in values:
            if not present_only:
                out.append(f"{f.name}: missing (the default is {json.dumps(f.fresh_default())})")
            continue
        value = values[f.name]
        problem = None
        if group == "args" and f.name in _NAME_FIELDS and isinstance(value, str):
            problem = unsafe_name_problem(value)  # first: it is the more important message
        problem = problem or _value_problem(f, value) or _special_problem(group, f.name, value, values)
        if problem is not None:
            out.append(f"{f.name}={short_repr(value)}: {problem}")
    return out


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NAME_FIELDS = ("batch_name", "filename_format", "timestring")  # become file/folder names under outdir


def _special_problem(group: str, name: str, value: Any, values: Mapping[str, Any]) -> str | None:
    """Rules that one field's type and range do not express."""
    if group == "args" and name in _NAME_FIELDS and isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            return f"is {size} bytes long; a file or folder name holds at most {MAX_NAME_BYTES} bytes"
    if group == "args" and name == "grad_inject_timing":
        if isinstance(value, list) and len(value) > MAX_STEPS:
            return f"lists {len(value)} steps; at most {MAX_STEPS} (the most steps a frame runs)"
        return inject_timing_problem(value)
    if group == "anim_args":
        if name == "fov" and value == 0:
            return "must not be 0 (the 3D camera gain 1/tan(fov/2) is undefined)"
        if name == "resume_timestring" and values.get("resume_from_timestring") \
                and not re.fullmatch(r"\d{14}", value):
            return "must be a timestring YYYYmmddHHMMSS (14 digits)"
        if name == "depth_model" and value not in DEPTH_MODELS and not _looks_like_path(value):
            return f"must be one of {', '.join(map(repr, DEPTH_MODELS))} or the path of a local model folder"
    return None


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith(("~", "."))


@dataclass
class Report:
    """What a check found: ``problems`` (the settings cannot run) and ``notes`` (values used differently
    from how they were given, or given but unused; the run goes on). One line of text each."""

    problems: list[str] = dc_field(default_factory=list)
    notes: list[str] = dc_field(default_factory=list)


def check(args: Any, anim_args: Any, root: Any = None, *, prompts: Any = None,
          animation_prompts: Any = None) -> Report:
    """Every problem and note of complete settings groups at once (nothing raised, nothing loaded).

    Fields, the keyframe schedules (in 2D/3D/Video Input, or when animation_mode itself is bad), the mask rule,
    the sizes and counts the values imply together (a still batch's grid memory, the Interpolation frame
    count) and, when ``prompts`` / ``animation_prompts`` are given, the prompts the mode uses (frame keys,
    back-ticked weights at every frame they are used, prompts past max_frames).
    """
    args_d, args_notes = normalized("args", as_dict(args))
    anim_d, anim_notes = normalized("anim_args", as_dict(anim_args))
    report = Report(problems("args", args_d) + problems("anim_args", anim_d), args_notes + anim_notes)
    if root is not None:
        report.problems += problems("root", normalize("root", as_dict(root)))
    report.problems += schedule_problems(anim_d)
    if anim_d.get("animation_mode") != "Video Input":  # there every frame is an init (use_init is forced on)
        report.problems += [problem for problem in [mask_problem(args_d)] if problem]
    elif args_d.get("use_mask") and args_d.get("use_alpha_as_mask") and not anim_d.get("use_mask_video"):
        report.problems.append("use_alpha_as_mask=True: extracted video frames (JPEG) have no alpha channel; use "
                               "use_mask_video with video_mask_path, or a mask_file")
    report.problems += size_problems(args_d, anim_d)
    report.notes += post_process_notes(args_d, anim_d)
    if prompts is not None or animation_prompts is not None:
        found, notes = prompt_problems(args_d, anim_d, prompts, animation_prompts)
        report.problems += found
        report.notes += notes
    return report


def validate(args: Any, anim_args: Any, root: Any = None, *, prompts: Any = None,
             animation_prompts: Any = None) -> None:
    """``check``, raising one SettingsError listing every problem (notes are not raised).

    ``args``/``anim_args``/``root`` are dicts or namespaces holding complete groups (merge partial input
    with ``defaults`` first). The error has a ``problems`` attribute: one line per problem.
    """
    found = check(args, anim_args, root, prompts=prompts, animation_prompts=animation_prompts).problems
    if found:
        raise settings_error(found)


def mask_problem(args: Mapping[str, Any]) -> str | None:
    """``use_mask`` applies the mask to the init image, so it needs ``use_init`` and an ``init_image``."""
    if args.get("use_mask", False) and not (args.get("use_init", False) and args.get("init_image")):
        return "use_mask=True: needs use_init True and an init_image (the mask applies to the init)"
    return None


def settings_error(found: list[str], where: str | None = None) -> SettingsError:
    """One SettingsError listing every problem (``where`` names the file; it is kept as ``err.where``)."""
    head = f"invalid settings{f' in {where}' if where else ''}"
    head += f" ({len(found)} problem{'s' if len(found) != 1 else ''}):"
    err = SettingsError(head + "".join("\n  - " + p.replace("\n", "\n    ") for p in found))
    err.problems = list(found)  # type: ignore[attr-defined]
    err.where = where  # type: ignore[attr-defined]
    return err


def _valid(group: str, name: str, value: Any) -> bool:
    return _value_problem(FIELDS[group][name], value) is None


def schedule_problems(anim: Mapping[str, Any]) -> list[str]:
    """Parse the schedules like v0.6 did: all of them (v0.6's 15 and the new ones), in 2D, 3D and Video Input
    runs; one problem per schedule.

    Also when animation_mode itself is bad (the intended mode may use them). A bad max_frames is reported
    on its own; the schedules are then checked over the default frame count, so one problem never hides
    another.
    """
    mode = anim.get("animation_mode")
    if mode in ANIMATION_MODES and mode not in SCHEDULED_MODES:
        return []
    max_frames = anim.get("max_frames")
    if not _valid("anim_args", "max_frames", max_frames):
        max_frames = FIELDS["anim_args"]["max_frames"].default
    from deforum.keyframes import parse_schedule  # lazy: keyframes pulls in numexpr

    found = []
    for name in schedule_fields():
        text = anim.get(name)
        if not isinstance(text, str):
            continue  # a type problem, already reported
        try:
            parse_schedule(text, max_frames, field=name, frame_limit=MAX_FRAMES_LIMIT)
        except ScheduleError as exc:
            found.append(str(exc))
    return found


def size_problems(args: Mapping[str, Any], anim: Mapping[str, Any]) -> list[str]:
    """Memory that values imply together, estimated before anything is allocated."""
    found = []
    sizes = [args.get(n) for n in ("n_batch", "W", "H")]
    if anim.get("animation_mode") == "None" and args.get("make_grid") is True \
            and all(_valid("args", n, v) for n, v in zip(("n_batch", "W", "H"), sizes, strict=True)):
        n_batch, width, height = sizes
        need = 2 * n_batch * width * height * 3  # the prompt's images and the grid, 8-bit RGB
        if need > GRID_MEMORY_LIMIT:
            found.append(f"n_batch={n_batch}: with make_grid at W x H = {width} x {height}, the grid of one prompt "
                         f"needs about {need / 2**30:.1f} GiB of memory (its images and the grid); at most "
                         f"{GRID_MEMORY_LIMIT / 2**30:g} GiB: lower n_batch, W or H, or turn make_grid off")
    return found


def post_process_notes(args: Mapping[str, Any], anim: Mapping[str, Any]) -> list[str]:
    """What ``post_process`` will change in valid values, as notes (one line each)."""
    notes = []
    strength = args.get("strength")
    if _valid("args", "strength", strength) and not 0 <= strength <= 1:
        notes.append(f"strength={strength!r} is used as {min(1.0, max(0.0, float(strength)))!r} "
                     "(strength is clamped to 0..1)")
    eta, sampler = args.get("ddim_eta"), args.get("sampler")
    if _valid("args", "ddim_eta", eta) and eta != 0 and _valid("args", "sampler", sampler) and sampler != "ddim":
        notes.append(f"ddim_eta={eta!r} is used as 0 (only the ddim sampler uses it; sampler={sampler!r})")
    return notes


# -------------------------------------------------------------------------------------------- prompts


_PROMPT_KEY = re.compile(r"\s*\d+\s*")


def prompt_problems(args: Mapping[str, Any], anim: Mapping[str, Any], prompts: Any,
                    animation_prompts: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) of the prompts the mode uses: None mode the ``prompts`` list, the animation modes
    ``animation_prompts`` (both when animation_mode is bad).

    Frame keys must be whole numbers >= 0 and prompts strings; back-ticked weights are checked and
    evaluated at every frame that generates with them (when prompt_weighting is on); the frames and images
    the prompts imply are bounded; prompts at or past max_frames (2D/3D) are named in a note.
    """
    mode = anim.get("animation_mode")
    found: list[str] = []
    notes: list[str] = []
    weighting = args.get("prompt_weighting") is not False
    if mode == "None" or mode not in ANIMATION_MODES:
        _still_prompt_problems(args, prompts, weighting, found)
    if mode != "None":
        _animation_prompt_problems(anim, animation_prompts, weighting, found, notes)
    return found, notes


def _still_prompt_problems(args: Mapping[str, Any], prompts: Any, weighting: bool, found: list[str]) -> None:
    if prompts is None:
        return
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        found.append(f"prompts={short_repr(prompts)}: must be a list of prompt strings")
        return
    if not prompts:
        found.append("prompts=[]: the None mode needs at least one prompt")
        return
    n_batch = args.get("n_batch")
    if _valid("args", "n_batch", n_batch) and n_batch * len(prompts) > MAX_FRAMES_LIMIT:
        found.append(f"n_batch={n_batch}: {len(prompts)} prompt(s) x n_batch {n_batch} = "
                     f"{n_batch * len(prompts)} images; at most {MAX_FRAMES_LIMIT} in one run")
    from deforum.prompts import NEG, neg_count_message, weight_problems

    for index, text in enumerate(prompts):
        if weighting:
            found += [f"prompts[{index}]: {p}" for p in weight_problems(text, [0])]
        elif text.count(NEG) > 1:
            found.append(f"prompts[{index}]: {neg_count_message(text)}")


def _animation_prompt_problems(anim: Mapping[str, Any], animation_prompts: Any, weighting: bool,
                               found: list[str], notes: list[str]) -> None:
    if animation_prompts is None:
        return
    if not isinstance(animation_prompts, Mapping):
        found.append(f"animation_prompts={short_repr(animation_prompts)}: must be an object frame -> prompt")
        return
    keyed: dict[int, str] = {}
    given: dict[int, Any] = {}
    for key, text in animation_prompts.items():
        frame = key if isinstance(key, int) and not isinstance(key, bool) else (
            int(key) if isinstance(key, str) and _PROMPT_KEY.fullmatch(key) else None)
        if frame is None or frame < 0:
            found.append(f"animation_prompts[{key!r}]: the frame must be a whole number >= 0")
        elif frame in given:
            found.append(f"animation_prompts[{key!r}]: frame {frame} already has a prompt (key {given[frame]!r}); "
                         "give each frame one prompt")
        elif not isinstance(text, str):
            found.append(f"animation_prompts[{key!r}]={short_repr(text)}: the prompt must be a string")
        else:
            keyed[frame], given[frame] = text, key
    if not keyed:
        if not animation_prompts:
            found.append("animation_prompts={}: the animation modes need at least one prompt")
        return
    keys = sorted(keyed)
    mode = anim.get("animation_mode")
    if mode == "Interpolation":
        _interpolation_count_problems(anim, keys, found)
    max_frames = anim.get("max_frames")
    frames_known = _valid("anim_args", "max_frames", max_frames) and mode in ("2D", "3D", "Video Input")
    if frames_known and mode in ("2D", "3D"):
        past = [k for k in keys if k >= max_frames]
        shown = f"frames 0..{max_frames - 1}" if max_frames > 1 else "frame 0 only"
        if len(past) == len(keys):
            notes.append(f"animation_prompts: every prompt is at frame {max_frames} or later, past the last "
                         f"frame (max_frames={max_frames} renders {shown}); the prompt at frame {keys[0]} is "
                         "used for every frame")
        elif past:
            notes.append(f"animation_prompts: the prompt(s) at frame {', '.join(map(str, past))} are not used "
                         f"(max_frames={max_frames} renders {shown})")
    from deforum.prompts import NEG, neg_count_message, weight_problems

    positive = anim.get("animation_prompts_positive")
    if isinstance(positive, str) and NEG in positive:
        found.append(f"animation_prompts_positive={short_repr(positive)}: has {NEG!r}; put the negative part in "
                     "animation_prompts_negative")
    for key, frames in _generated_frames(anim, keys, max_frames if frames_known else None).items():
        if weighting:
            found += [f"animation_prompts[{key}]: {p}" for p in weight_problems(keyed[key], frames)]
        elif keyed[key].count(NEG) > 1:
            found.append(f"animation_prompts[{key}]: {neg_count_message(keyed[key])}")


def _generated_frames(anim: Mapping[str, Any], keys: list[int], max_frames: int | None) -> dict[int, list[int]]:
    """Prompt key -> the frames generated with that prompt (the value of ``t`` in its weights).

    The frames are those the plan diffuses (every diffusion_cadence-th in 2D/3D); Interpolation, or a bad
    max_frames, evaluates each prompt at its own key (Interpolation: at 0, as the renderer does).
    """
    if max_frames is None:
        frame0 = anim.get("animation_mode") == "Interpolation"
        return {k: [0 if frame0 else k] for k in keys}
    import numpy as np

    cadence = anim.get("diffusion_cadence")
    step = int(cadence) if anim.get("animation_mode") in ("2D", "3D") and _valid(
        "anim_args", "diffusion_cadence", cadence) else 1
    inside = np.array([k for k in keys if k < max_frames] or keys[:1])
    frames = np.arange(0, max_frames, step)
    which = np.clip(np.searchsorted(inside, frames, side="right") - 1, 0, None)
    return {int(k): frames[which == i].tolist() for i, k in enumerate(inside) if (which == i).any()}


def _interpolation_count_problems(anim: Mapping[str, Any], keys: list[int], found: list[str]) -> None:
    """The Interpolation frame count, computed without building the frames (plan.interpolation_frames)."""
    if anim.get("interpolate_key_frames") is True:
        count = keys[-1] - keys[0] + 1
        if count > MAX_FRAMES_LIMIT:
            found.append(f"animation_prompts: with interpolate_key_frames the prompts at frames {keys[0]} to "
                         f"{keys[-1]} give {count} frames; at most {MAX_FRAMES_LIMIT}")
        return
    x = anim.get("interpolate_x_frames")
    if _valid("anim_args", "interpolate_x_frames", x):
        count = (len(keys) - 1) * (x + 1) + 1
        if count > MAX_FRAMES_LIMIT:
            found.append(f"interpolate_x_frames={x}: {len(keys)} prompts give (prompts - 1) x "
                         f"(interpolate_x_frames + 1) + 1 = {count} frames; at most {MAX_FRAMES_LIMIT}")


# ------------------------------------------------------------------------------------ post-processing


def resolve_seed(seed: int, rng: random.Random | None = None) -> int:
    """``seed``, or for -1 a fresh random seed from the OS (not from a previous run's state, 12.1 #22)."""
    return (rng or random.SystemRandom()).randint(0, SEED_MAX) if seed == -1 else seed


def post_process(a: dict[str, Any], anim: dict[str, Any]) -> None:
    """The value rules of v0.6's cells (spec 1.4), in place on valid normalized groups: W/H rounded down to /64;
    strength clamped to [0, 1]; init_image None unless use_init; ddim_eta 0 unless ddim; mode None ->
    max_frames 1; Video Input -> use_init True. plms is kept with inits and animation (v0.6 switched it to
    klms; our plms supports img2img)."""
    a["strength"] = min(1.0, max(0.0, float(a["strength"])))
    if not a["use_init"]:
        a["init_image"] = None
    if a["sampler"] != "ddim":
        a["ddim_eta"] = 0
    if anim["animation_mode"] == "None":
        anim["max_frames"] = 1
    elif anim["animation_mode"] == "Video Input":
        a["use_init"] = True


def output_folder(output_path: str, batch_name: str, now: datetime.datetime) -> str:
    """{output_path}/{YYYY-MM}/{batch_name}, absolute; an empty batch_name gives the month folder."""
    parts = [now.strftime("%Y-%m")] + ([batch_name] if batch_name else [])
    return os.path.abspath(os.path.join(os.path.expanduser(output_path), *parts))


# -------------------------------------------------------------------------------------- typed settings


@dataclass(frozen=True)
class RunIdentity:
    """What names one run's files, known only when it starts (or read from the run being resumed)."""

    timestring: str  # YYYYmmddHHMMSS: the prefix of every file of the run
    outdir: Path  # {output_path}/{YYYY-MM}/{batch_name}, absolute
    seed: int  # the seed the run starts from: -1 replaced by a fresh random seed


def resolve(args: Any = None, anim_args: Any = None, root: Any = None, *, prompts: Any = None,
            animation_prompts: Any = None, video: Any = None, load: Any = None) -> Settings:
    """Cells, a settings file or ``--set`` values (partial groups, over the defaults) -> typed ``Settings``.

    Pure: every problem is raised at once (one SettingsError: unknown keys, values, schedules, prompts), then
    v0.6's value rules (``post_process``) and the types of the field table. The run's timestring, folder and
    random seed are ``identify``'s.
    """
    a, anim = defaults("args") | as_dict(args), defaults("anim_args") | as_dict(anim_args)
    r = defaults("root") | {k: v for k, v in as_dict(root).items() if k != "model"}
    v, ld = defaults("video") | as_dict(video), defaults("load") | as_dict(load)
    prompts = list(DEFAULT_PROMPTS if prompts is None else prompts)
    animation_prompts = dict(DEFAULT_ANIMATION_PROMPTS if animation_prompts is None else animation_prompts)
    given = {"args": args, "anim_args": anim_args, "root": root, "video": video, "load": load}
    found = [_unknown_key_message(group, key) for group, values in given.items() for key in as_dict(values)
             if key not in FIELDS[group] and not (group == "root" and key == "model")]
    found += check(a, anim, r, prompts=prompts, animation_prompts=animation_prompts).problems
    found += problems("video", normalize("video", v)) + problems("load", normalize("load", ld))
    if found:
        raise settings_error(found)
    a, anim = normalize("args", a), normalize("anim_args", anim)
    post_process(a, anim)
    groups = {"root": normalize("root", r), "args": a, "anim_args": anim, "video": normalize("video", v),
              "load": normalize("load", ld)}
    return typed(groups, prompts, animation_prompts)


def typed(groups: Mapping[str, Mapping[str, Any]], prompts: Iterable[str],
          animation_prompts: Mapping[Any, str]) -> Settings:
    """``Settings`` from complete, valid groups (``resolve`` checks them first)."""
    lists = {"prompts": tuple(prompts),
             "animation_prompts": MappingProxyType({int(k): v for k, v in animation_prompts.items()})}
    parts = {}
    for concern, cls in CONCERN_TYPES.items():
        values = {f.name: _typed_value(f, groups[f.group][f.name]) for f in concern_fields(concern)}
        parts[concern] = cls(**values, **(lists if concern == "prompts" else {}))
    return Settings(**parts)


def _typed_value(f: Field, value: Any) -> Any:
    if value is None:
        return None
    if f.type in ("int", "intstr"):
        return int(value)
    if f.type == "inject_timing":
        return value if isinstance(value, int) else tuple(value)
    if f.type == "lora":  # ((path, weight), ...): weight 1 when the entry gives none
        return tuple((entry["path"], entry.get("weight", 1.0)) for entry in value)
    return value


def identify(settings: Settings, now: datetime.datetime | None = None,
             rng: random.Random | None = None) -> RunIdentity:
    """A new run's identity: the timestring of ``now``, its output folder and its seed (-1: a random one)."""
    now = now or datetime.datetime.now()
    outdir = output_folder(settings.output.output_path, settings.output.batch_name, now)
    return RunIdentity(now.strftime("%Y%m%d%H%M%S"), Path(outdir), resolve_seed(settings.image.seed, rng))


def schedule_strings(settings: Settings) -> dict[str, str]:
    """The keyframe schedules of typed settings, by name, in table order (v0.6's 15 first; the plan parses them)."""
    return {name: getattr(getattr(settings, FIELDS["anim_args"][name].concern), name) for name in schedule_fields()}
