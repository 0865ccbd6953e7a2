"""``deforum sweep``: variations of one settings file, the cartesian product of ``--vary NAME=VALUES``.

``--vary seed=1..8 --vary cfg_scale=5,7,9`` gives 24 variants. NAME is a field of this project
(``deforum settings fields``; ``args.``/``anim_args.`` may prefix it) or A1111 Deforum's name for one
(``cfg_scale`` is ``scale``); VALUES is an inclusive range of whole numbers ``a..b``, a comma list, or a list
separated by ``|`` when the values hold commas (schedules: ``zoom=0:(1.0)|0:(1.02)``). Each
value is checked by the field's own rule here, and each variant as a whole when its settings are loaded,
all before anything renders. The variants are written as settings files into the sweep's folder
(``sweep_{timestring}/`` beside the runs), rendered like ``deforum render`` renders files, and shown side by
side in a contact sheet (``contact_sheet``).
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deforum import settings as A
from deforum.errors import SettingsError

SWEEP_GROUPS = ("args", "anim_args")  # the fields a sweep may vary: those of a run's settings file
ALIASES = {"cfg_scale": "scale", "enable_perspective_flip": "flip_2d_perspective"}  # A1111 Deforum's names
MAX_VARIANTS = 10_000  # a sweep is rendered in full: far more than any machine renders in a day
RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
TRUE_WORDS, FALSE_WORDS, NULL_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("null", "none")


@dataclass(frozen=True)
class Vary:
    """One ``--vary``: the field and the values it takes, in order."""

    text: str  # as given, for messages
    field: A.Field
    values: tuple[Any, ...]

    @property
    def name(self) -> str:
        return self.field.name


def sweep_field(name: str, option: str = "--vary") -> A.Field:
    """The field ``name`` means: ours (optionally ``group.name``) or A1111 Deforum's alias of one."""
    group, _, bare = name.strip().rpartition(".")
    if group and group not in SWEEP_GROUPS:
        raise SettingsError(f"{option} {name}: unknown group {group!r}; a sweep varies the fields of "
                            f"{' or '.join(SWEEP_GROUPS)}")
    bare = ALIASES.get(bare, bare)
    for g in (group,) if group else SWEEP_GROUPS:
        if bare in A.FIELDS[g]:
            return A.FIELDS[g][bare]
    names = sorted({n for g in SWEEP_GROUPS for n in A.FIELDS[g]} | set(ALIASES))
    close = difflib.get_close_matches(bare, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SettingsError(f"{option} {name}: {bare!r} is not a setting a sweep can vary{hint}; "
                        "`deforum settings fields args anim_args` lists them")


def field_value(f: A.Field, text: str) -> Any:
    """One value as the field's type; text that does not fit is kept for the field's check to report."""
    lowered = text.strip().lower()
    if f.nullable and lowered in NULL_WORDS:
        return None
    if f.type == "bool":
        return True if lowered in TRUE_WORDS else False if lowered in FALSE_WORDS else text
    if f.type in ("int", "float"):
        for convert in (int, float):
            try:
                return convert(text.strip())
            except ValueError:
                continue
    return text.strip() if f.type in ("int", "float") else text


def parse_vary(text: str) -> Vary:
    """``NAME=a..b`` or ``NAME=v1,v2,...`` -> Vary; an unknown field, a bad range or a value the field does
    not allow is a SettingsError naming it."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise SettingsError(f"--vary {text!r}: expected NAME=VALUES, e.g. --vary seed=1..8 or --vary cfg_scale=5,7,9")
    f = sweep_field(name)
    if ".." in spec:
        match = RANGE.match(spec)
        if not match or int(match.group(1)) > int(match.group(2)):
            raise SettingsError(f"--vary {text}: {spec!r} is not a range; a range is a..b with whole numbers "
                                "a <= b (both included), e.g. 1..8")
        first, last = int(match.group(1)), int(match.group(2))
        if last - first >= MAX_VARIANTS:
            raise SettingsError(f"--vary {text}: {last - first + 1} values; a sweep has at most {MAX_VARIANTS}")
        values: list[Any] = list(range(first, last + 1))
    else:
        items = spec.split("|" if "|" in spec else ",")  # | when the values hold commas (schedules)
        if any(not item.strip() for item in items) and f.type not in ("str", "schedule"):
            raise SettingsError(f"--vary {text}: an empty value in {spec!r}; give values separated by commas")
        values = [field_value(f, item) for item in items]
    problems = [p for value in values for p in A.problems(f.group, {f.name: value}, present_only=True)]
    if problems:
        raise SettingsError(f"--vary {text}: " + "; ".join(dict.fromkeys(problems)))
    return Vary(text, f, tuple(values))


def variants(varies: Sequence[Vary]) -> list[dict[str, Any]]:
    """The cartesian product of the values, first ``--vary`` slowest: one {field name: value} per variant."""
    names = [v.name for v in varies]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise SettingsError(f"--vary: {', '.join(twice)} is varied twice; give all its values in one --vary")
    count = 1
    for v in varies:
        count *= len(v.values)
    if count > MAX_VARIANTS:
        raise SettingsError(f"--vary: {count} variants; a sweep has at most {MAX_VARIANTS}")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v.values for v in varies))]


def variant_sets(sets: Mapping[str, Mapping[str, Any]], varies: Sequence[Vary],
                 values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The command line's ``--set`` values with one variant's values over them (by group)."""
    out = {group: dict(given) for group, given in sets.items()}
    for v in varies:
        out.setdefault(v.field.group, {})[v.name] = values[v.name]
    return out


def label(values: Mapping[str, Any]) -> str:
    """``seed=1 scale=7`` (the contact sheet's label of a variant)."""
    return " ".join(f"{name}={value}" for name, value in values.items())


def file_name(index: int, values: Mapping[str, Any]) -> str:
    """``03_seed=1_scale=7.txt``: the variant's number and values, in characters every file system takes."""
    text = "_".join(f"{name}={value}" for name, value in values.items())
    text = re.sub(r"[^A-Za-z0-9_=.,+-]+", "-", text).strip("-")[:100]
    return f"{index:02d}_{text}.txt"


def write_variant(path: Path, job: Any) -> Path:
    """A variant's settings file: a file of ours with every field of the loaded variant (``deforum render``
    renders it alone the same way), plus the video-cell values it was given."""
    from deforum.image.io import write_atomic
    from deforum.settings.files import settings_dict

    data = settings_dict(job.args, job.anim_args, job.prompts, job.animation_prompts)
    data.update(job.video)
    text = json.dumps(data, indent=4, ensure_ascii=False, default=str) + "\n"
    return write_atomic(path, text.encode("utf-8"))


def sweep_folder(outdir: Path, timestring: str) -> tuple[Path, str]:
    """Create the sweep's folder ``sweep_{timestring}`` in ``outdir`` (or the next free second's); not named
    ``{timestring}_...``, so that the runs of the sweep may take that timestring."""
    from deforum.render.resume import MAX_CLAIM_TRIES, next_timestring

    outdir.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_CLAIM_TRIES):
        folder = outdir / f"sweep_{timestring}"
        try:
            folder.mkdir()
        except FileExistsError:
            timestring = next_timestring(timestring)
            continue
        return folder, timestring
    raise SettingsError(f"batch_name: no free sweep folder name in {outdir}; use another batch_name")


def write_manifest(folder: Path, source: str, varies: Sequence[Vary], rows: Sequence[Mapping[str, Any]]) -> Path:
    """``sweep.json``: the settings file swept, the values varied and each variant's file and run."""
    from deforum.image.io import write_atomic

    data = {"settings": source, "vary": [v.text for v in varies], "variants": list(rows)}
    return write_atomic(folder / "sweep.json", (json.dumps(data, indent=1, default=str) + "\n").encode("utf-8"))
