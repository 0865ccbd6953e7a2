"""Writes ``deforum/settings/types.py``: one frozen dataclass per concern of the field table, ``Settings``
holding them all, and ``FrameValues`` (one frame of the schedules). ``python -m deforum.settings.typegen``
rewrites the file; ``check`` fails when it is not what the table gives (a test runs the check, as for the
notebook and docs/settings.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deforum.settings.fields import GROUPS, Field, concern_fields, schedule_fields

TARGET = Path(__file__).resolve().parent / "types.py"

# The concerns in the order of a render: where it goes, which model, the image, the prompts, ...
CONCERNS = {
    "output": "Where and what is written: output root, batch folder, file names, what is saved and shown.",
    "model": "The model: paths, config and checkpoint, device and precision.",
    "image": "One image: size, seed, sampler, steps, guidance scale.",
    "prompts": "The prompts (the still batch's list, the animation's frame -> prompt) and how they are read.",
    "init": "Init image, strength and the mask.",
    "guidance": "Gradient conditioning: colour, exposure, CLIP, aesthetics and their schedule.",
    "animation": "The animation mode and its length.",
    "motion": "The camera: 2D and 3D motion schedules, border, perspective flip.",
    "coherence": "Frame to frame: noise, strength and contrast schedules, colour coherence, cadence.",
    "hybrid": "Hybrid video: the motion and colours of video_init_path blended into an animation.",
    "depth": "3D depth: the depth model and the warp's planes, field of view and sampling.",
    "video_input": "Video Input: the video, frame extraction and the mask video.",
    "interpolation": "Interpolation mode: frames between key prompts.",
    "resume": "Resuming an animation run.",
    "video": "The video cell: the mp4 (and gif) made from the frames.",
    "load": "The Load Settings cell.",
}

PY_TYPES = {
    "int": "int", "float": "float", "bool": "bool", "str": "str", "intstr": "int", "schedule": "str",
    "inject_timing": "int | tuple[float, ...] | None", "lora": "tuple[tuple[str, float], ...]",
}


def class_name(concern: str) -> str:
    return "".join(part.title() for part in concern.split("_")) + "Settings"


def py_type(f: Field) -> str:
    text = PY_TYPES[f.type]
    return f"{text} | None" if f.nullable and "None" not in text else text


def generate() -> str:
    unknown = {f.concern for fields in GROUPS.values() for f in fields if f.concern} - set(CONCERNS)
    if unknown:
        raise ValueError(f"fields name concerns that typegen does not know: {sorted(unknown)}")
    lines = [
        '"""Typed settings: one frozen dataclass per concern, and ``Settings`` holding them all.',
        "",
        "Generated from the field table (deforum/settings/fields.py) by ``python -m deforum.settings.typegen``; do",
        "not edit by hand. ``deforum.settings.resolve`` builds them; nothing changes them afterwards.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Mapping",
        "from dataclasses import dataclass",
        "",
    ]
    for concern, doc in CONCERNS.items():
        lines += ["", "@dataclass(frozen=True)", f"class {class_name(concern)}:", f'    """{doc}"""', ""]
        for f in concern_fields(concern):
            lines.append(f"    {f.name}: {py_type(f)}  # {f.group}")
        if concern == "prompts":  # the prompt cell: not fields of the table, but settings all the same
            lines += ["    prompts: tuple[str, ...]  # the None mode's prompts",
                      "    animation_prompts: Mapping[int, str]  # frame -> prompt (read-only)"]
        lines.append("")
    lines += ["", "@dataclass(frozen=True)", "class Settings:",
              '    """Everything a run is asked to do, resolved and checked (``deforum.settings.resolve``)."""', ""]
    lines += [f"    {concern}: {class_name(concern)}" for concern in CONCERNS]
    lines += ["", ""]
    lines += ["", "@dataclass(frozen=True)", "class FrameValues:",
              '    """One frame\'s value of every keyframe schedule (the plan\'s rows; ``deforum.plan``)."""', ""]
    lines += [f"    {name}: float" for name in schedule_fields()]
    lines += ["", ""]
    lines.append("CONCERN_TYPES = {")
    lines += [f'    "{concern}": {class_name(concern)},' for concern in CONCERNS]
    lines.append("}")
    names = [class_name(concern) for concern in CONCERNS] + ["Settings", "FrameValues", "CONCERN_TYPES"]
    lines += ["", "__all__ = ["] + [f'    "{name}",' for name in sorted(names)] + ["]"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = generate()
    if argv[:1] == ["check"]:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is out of date: run `python -m deforum.settings.typegen`", file=sys.stderr)
            return 1
        print(f"{TARGET} is current")
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
