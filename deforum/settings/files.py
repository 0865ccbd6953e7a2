"""Settings files: load a v0.6 (or our) settings .txt / preset .json, apply it over the notebook cells, and
write the per-run ``{timestring}_settings.txt`` (spec animation 10.4, 10.5, 12.1 #12).

A settings file is data: JSON, read with ``json``, never executed. Keys of DeforumArgs and DeforumAnimArgs
replace the cell values as in v0.6, with three fixes: the prompts in the file are used, ``outdir`` from
another machine is not, and W/H are rounded down to multiples of 64. Unknown keys are kept and reported
once. Every problem is reported at once, naming the file and the key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deforum.errors import SettingsError
from deforum.settings.dialects import A1111_TABLE, Dialect, a1111_import, detect, unsupported_message, v06_leniency
from deforum.settings.fields import (
    ANIM_ARGS_FIELDS,
    ARGS_FIELDS,
    DEFAULT_ANIMATION_PROMPTS,
    DEFAULT_PROMPTS,
    FIELDS,
    Field,
    defaults,
)
from deforum.settings.resolve import (
    RunIdentity,
    as_dict,
    normalized,
    settings_error,
    short_repr,
    unsafe_name_problem,
)
from deforum.settings.resolve import check as check_values
from deforum.settings.resolve import problems as field_problems
from deforum.settings.types import Settings

SETTINGS_SCHEMA = 1
# Keys our files add after the v0.6 ones; "prompts" is v0.6's own (between args and anim_args).
META_KEYS = ("prompts", "animation_prompts", "batch_prompts", "root", "deforum_version", "settings_schema")
IGNORED_FROM_FILE = ("outdir",)  # machine-specific: a foreign path must not redirect the output


@dataclass
class SettingsFile:
    """A loaded settings file applied over base values (the v0.6 defaults for ``load_settings``).

    ``prompts`` is the None-mode prompt list, ``animation_prompts`` maps frame -> prompt; both come from
    the file when it has them (``from_file`` holds every key the file provided), else from the base.
    ``root`` is the file's ``root`` object, if any (not applied: paths are per machine). ``notes`` are the
    values used differently from how the file gave them (W=500 is used as 448, ...), one line each.
    ``problems`` collects what is wrong while the file is read and merged (``finish_settings`` raises them).
    ``dialect``: which program wrote the file (``deforum.settings.dialects``); a v0.6-family file is read with v0.6's
    meaning where v0.6 was lenient (notes say so), an A1111 / Forge file through the dialect's table (its
    ``mappings`` and ``ignored`` keys say how), a file of an unsupported dialect is one problem.
    ``video``: video-cell values an imported file gave (A1111's fps, add_soundtrack, ...).
    """

    args: SimpleNamespace
    anim_args: SimpleNamespace
    prompts: list[str]
    animation_prompts: dict[int, str]
    root: dict[str, Any] | None = None
    unknown_keys: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    from_file: frozenset[str] = frozenset()
    path: str | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dialect: Dialect | None = None
    video: dict[str, Any] = field(default_factory=dict)


class _JsonObject(dict):
    """A JSON object that remembers the keys it was given more than once (json keeps the last)."""

    duplicates: dict[str, list[Any]]


def _json_object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject()
    seen: dict[str, list[Any]] = {}
    for key, value in pairs:
        seen.setdefault(key, []).append(value)
        obj[key] = value
    obj.duplicates = {key: values for key, values in seen.items() if len(values) > 1}
    return obj


def duplicate_key_problems(data: Mapping[str, Any]) -> list[str]:
    """The keys a settings file gives twice, at the top and one level down (prompts, root); v0.6 silently
    kept the last value."""
    found = []

    def report(name: str, values: list[Any]) -> None:
        shown = ", ".join(short_repr(v, 40) for v in values)
        found.append(f"{name}: given {len(values)} times in the file ({shown}); give it once")

    for key, values in getattr(data, "duplicates", {}).items():
        report(key, values)
    for key, value in data.items():
        for inner, values in getattr(value, "duplicates", {}).items():
            report(f"{key}[{inner!r}]", values)
    return found


def read_settings_file(path: str | os.PathLike[str], problems: list[str] | None = None) -> dict[str, Any]:
    """The JSON object in a settings file; a missing or malformed file is a SettingsError.

    Keys given twice are problems: appended to ``problems`` when a list is given, else raised.
    """
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(f"settings file {where!r} does not exist", where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(f"settings file {where!r} cannot be read: {exc}", where) from exc
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise _file_error(f"settings file {where!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                          f"column {exc.colno}", where) from exc
    except RecursionError:
        raise _file_error(f"settings file {where!r} nests lists or objects too deeply to be a settings "
                          "file", where) from None
    if not isinstance(data, dict):
        raise _file_error(f"settings file {where!r} must hold a JSON object {{\"key\": value, ...}}, "
                          f"not {type(data).__name__}", where)
    duplicates = duplicate_key_problems(data)
    if problems is not None:
        problems += duplicates
    elif duplicates:
        raise settings_error(duplicates, where)
    return data


def _file_error(message: str, where: str) -> SettingsError:
    err = SettingsError(message)
    err.where = where  # type: ignore[attr-defined]  # the message names the file already
    return err


def load_settings(path: str | os.PathLike[str]) -> SettingsFile:
    """A settings file applied over the v0.6 defaults (presets hold only some keys), validated."""
    return apply_settings_file(defaults("args"), defaults("anim_args"), path,
                               prompts=DEFAULT_PROMPTS, animation_prompts=DEFAULT_ANIMATION_PROMPTS)


def apply_settings_file(args: Mapping[str, Any] | SimpleNamespace,
                        anim_args: Mapping[str, Any] | SimpleNamespace, path: str | os.PathLike[str],
                        prompts: list[str] | None = None,
                        animation_prompts: Mapping[Any, str] | None = None, *,
                        check: bool = True) -> SettingsFile:
    """The notebook's ``override_settings_with_file``: every args/anim_args key in the file replaces the
    cell value; prompts in the file replace the cell prompts; ``outdir`` is kept; W/H rounded to /64.

    With ``check`` (default) the merged result is validated and every problem is raised at once.
    """
    found: list[str] = []
    data = read_settings_file(path, found)
    merged = merge_settings(args, anim_args, data, prompts, animation_prompts, where=str(path))
    merged.problems[:0] = found
    return finish_settings(merged, check=check)


def apply_settings(args: Any, anim_args: Any, data: Mapping[str, Any], prompts: list[str] | None = None,
                   animation_prompts: Mapping[Any, str] | None = None, *, where: str = "settings",
                   check: bool = True) -> SettingsFile:
    """``apply_settings_file`` for an already parsed JSON object; ``where`` names it in errors."""
    return finish_settings(merge_settings(args, anim_args, data, prompts, animation_prompts, where=where),
                           check=check)


def merge_settings(args: Any, anim_args: Any, data: Mapping[str, Any], prompts: list[str] | None = None,
                   animation_prompts: Mapping[Any, str] | None = None, *,
                   where: str = "settings") -> SettingsFile:
    """The file's values over ``args`` / ``anim_args`` and the prompts, as given (not normalized, not
    validated, nothing raised): what cannot be merged is in ``problems``. ``finish_settings`` completes it."""
    a = as_dict(args)
    anim = as_dict(anim_args)
    dialect = detect(data)
    if not dialect.supported:  # one message naming the dialect, not one problem per key
        return SettingsFile(args=SimpleNamespace(**a), anim_args=SimpleNamespace(**anim), prompts=list(prompts or []),
                        animation_prompts=dict(animation_prompts or {}), from_file=frozenset(data), path=where,
                        problems=[unsupported_message(dialect)], dialect=dialect)
    found: list[str] = []
    unknown: dict[str, Any] = {}
    a1111 = dialect.name == "a1111"
    for key, value in data.items():
        if a1111 and key in A1111_TABLE:  # read through the dialect's table below
            continue
        if key in FIELDS["args"]:
            if key in IGNORED_FROM_FILE:
                continue
            if FIELDS["args"][key].type == "runtime" and value is not None:
                found.append(f"{key}={short_repr(value)}: must be null (it is renderer state, not a setting)")
                continue
            a[key] = value
        elif key in FIELDS["anim_args"]:
            anim[key] = value
        elif key not in META_KEYS:
            unknown[key] = value
    notes: list[str] = []
    video: dict[str, Any] = {}
    if dialect.v06_family:
        used, notes = v06_leniency(data, anim, a)
        unknown = {key: value for key, value in unknown.items() if key not in used}
    elif a1111:
        # A1111 renders the file's ``prompts``; a Forge file may carry an ``animation_prompts`` too: ignored
        dropped = [key for key in ("animation_prompts", "batch_prompts") if key in data] if "prompts" in data else []
        data = {key: value for key, value in data.items() if key not in dropped}
        imported = a1111_import(data, anim_args=anim, args=a, ignored_candidates=[*unknown, *dropped])
        found += imported.problems
        notes += imported.notes
        video = imported.video
        unknown = {}
        dialect = Dialect(dialect.name, dialect.evidence, tuple(imported.mappings), tuple(imported.ignored))

    schema = data.get("settings_schema", SETTINGS_SCHEMA)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema > SETTINGS_SCHEMA:
        found.append(f"settings_schema={short_repr(schema)}: this version reads settings_schema <= "
                     f"{SETTINGS_SCHEMA}; the file was written by a newer deforum")
    file_prompts, file_anim_prompts = _prompts_from(data, found)
    root = data.get("root")
    if root is not None and not isinstance(root, dict):
        found.append(f"root={short_repr(root)}: must be a JSON object")
        root = None
    if file_anim_prompts is None:
        file_anim_prompts = _int_keys(animation_prompts or {}, found)
    return SettingsFile(
        args=SimpleNamespace(**a),
        anim_args=SimpleNamespace(**anim),
        prompts=list(file_prompts if file_prompts is not None else (prompts or [])),
        animation_prompts=file_anim_prompts,
        root=root,
        unknown_keys=list(unknown),
        extra=unknown,
        from_file=frozenset(data),
        path=where,
        notes=notes,
        problems=found,
        dialect=dialect,
        video=video,
    )


def finish_settings(settings: SettingsFile, *, check: bool = True, unknown_keys: str = "warn",
                    require_prompts: bool = False) -> SettingsFile:
    """Normalize the merged values (their notes go to ``settings.notes``), check everything when ``check``
    (fields, schedules, prompts, sizes) and raise every problem at once, naming the file.

    ``unknown_keys``: "warn" (one warning line naming each key with the closest setting; files of other
    Deforum versions carry extra keys) or "problem" (each is a problem, for ``deforum settings check``).
    ``require_prompts``: no prompt for the mode is a problem too (a render; the notebook's cells may still
    supply them when a file has none).
    """
    if settings.dialect is not None and not settings.dialect.supported:
        raise unsupported_error(settings.dialect, settings.path)
    found = list(settings.problems)
    if unknown_keys == "problem":
        found += [f"{short_repr(key, 40)}: unknown key{_suggestion(key)}; a render ignores it"
                  for key in settings.unknown_keys]
    a, a_notes = normalized("args", vars(settings.args))
    anim, anim_notes = normalized("anim_args", vars(settings.anim_args))
    settings.args, settings.anim_args = SimpleNamespace(**a), SimpleNamespace(**anim)
    settings.notes += a_notes + anim_notes
    if check:
        report = check_values(a, anim, prompts=settings.prompts if settings.prompts or require_prompts else None,
                              animation_prompts=settings.animation_prompts
                              if settings.animation_prompts or require_prompts else None)
        found += report.problems
        settings.notes += report.notes
        found += field_problems("video", settings.video, present_only=True)
    if found:
        raise settings_error(found, settings.path)
    if settings.unknown_keys and unknown_keys == "warn":
        warnings.warn(unknown_keys_warning(settings.path, settings.unknown_keys), UserWarning, stacklevel=3)
    ignored = settings.dialect.ignored_line() if settings.dialect is not None else None
    if ignored and unknown_keys == "warn":  # `deforum settings check` prints it itself
        warnings.warn(f"{settings.path or 'settings'}: {ignored}", UserWarning, stacklevel=3)
    return settings


def unsupported_error(dialect: Dialect, where: str | None) -> SettingsError:
    """The one SettingsError for a file of a dialect that is not imported yet, naming the file once."""
    message = unsupported_message(dialect)
    err = SettingsError(f"{where}: {message}" if where else message)
    err.problems = [message]  # type: ignore[attr-defined]
    err.where = where  # type: ignore[attr-defined]
    return err


def _suggestion(key: str) -> str:
    names = [n for g in ("args", "anim_args") for n, f in FIELDS[g].items() if f.kind != "runtime"]
    close = difflib.get_close_matches(key, [*names, *META_KEYS], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys_warning(where: str | None, keys: list[str]) -> str:
    """One line naming every unknown key of a file, each with the closest setting's name."""
    listed = ", ".join(f"{short_repr(key, 40)}{_suggestion(key)}" for key in keys)
    return (f"{where or 'settings'}: ignoring {len(keys)} unknown key{'s' if len(keys) != 1 else ''}: {listed}; "
            "keys of other Deforum versions are expected, but a misspelt setting keeps its default")


_INT_KEY = re.compile(r"\s*\d+\s*")
_INDEX = re.compile(r"\d{5,}")


def _int_keys(prompts: Mapping[Any, Any], found: list[str], key: str = "animation_prompts") -> dict[int, str]:
    """Frame -> prompt with int frames (JSON makes them strings); bad entries go to ``found``."""
    out: dict[int, str] = {}
    for frame, text in prompts.items():
        if isinstance(frame, int) and not isinstance(frame, bool):
            n = frame
        elif isinstance(frame, str) and _INT_KEY.fullmatch(frame):
            n = int(frame)
        else:
            found.append(f"{key}[{frame!r}]: the frame must be an integer >= 0")
            continue
        if n < 0:
            found.append(f"{key}[{frame!r}]: the frame must be an integer >= 0")
        elif not isinstance(text, str):
            found.append(f"{key}[{frame!r}]={short_repr(text)}: the prompt must be a string")
        else:
            out[n] = text
    return dict(sorted(out.items()))


def _prompts_from(data: Mapping[str, Any],
                  found: list[str]) -> tuple[list[str] | None, dict[int, str] | None]:
    """(None-mode prompt list, animation prompts) from a file; None where the file has none.

    v0.6 wrote ``prompts`` as the animation prompts (string frame keys) in animation runs, and as
    {prompt: "00000" index} in None-mode runs; we also accept a plain list. Our files add explicit
    ``animation_prompts`` and ``batch_prompts`` keys, which win.
    """
    still: list[str] | None = None
    anim: dict[int, str] | None = None
    raw = data.get("prompts")
    if isinstance(raw, list):
        still = _prompt_list(raw, "prompts", found)
    elif isinstance(raw, dict):
        keys_are_frames = all(isinstance(k, str) and _INT_KEY.fullmatch(k) for k in raw)
        values_are_indices = raw and all(isinstance(v, str) and _INDEX.fullmatch(v) for v in raw.values())
        if values_are_indices and not keys_are_frames:
            still = [text for text, _ in sorted(raw.items(), key=lambda kv: int(kv[1]))]
        else:
            anim = _int_keys(raw, found, "prompts")
    elif raw is not None:
        found.append(f"prompts={short_repr(raw)}: must be a list of prompts or an object frame -> prompt")
    if "batch_prompts" in data:
        still = _prompt_list(data["batch_prompts"], "batch_prompts", found)
    if "animation_prompts" in data:
        value = data["animation_prompts"]
        if isinstance(value, dict):
            anim = _int_keys(value, found)
        else:
            found.append(f"animation_prompts={short_repr(value)}: must be an object frame -> prompt")
    return still, anim


def _prompt_list(value: Any, key: str, found: list[str]) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return list(value)
    found.append(f"{key}={short_repr(value)}: must be a list of prompt strings")
    return None


# ---------------------------------------------------------------------------------------------- saving


def settings_dict(args: Any, anim_args: Any, prompts: list[str] | None = None,
                  animation_prompts: Mapping[Any, str] | None = None,
                  root: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of a settings file, in v0.6 key order: args, ``prompts``, anim_args, then ours."""
    from deforum import __version__

    a, anim = as_dict(args), as_dict(anim_args)
    anim_prompts = {str(k): v for k, v in (animation_prompts or {}).items()}
    still = list(prompts or [])
    out: dict[str, Any] = {f.name: a[f.name] for f in ARGS_FIELDS if f.name in a}
    if anim.get("animation_mode") == "None":
        # v0.6 None-mode dumps: {prompt: "00000"-style index}
        out["prompts"] = {text: f"{i:05}" for i, text in enumerate(still)}
    else:
        out["prompts"] = anim_prompts
    out.update({f.name: anim[f.name] for f in ANIM_ARGS_FIELDS if f.name in anim})
    out["animation_prompts"] = anim_prompts
    out["batch_prompts"] = still
    if root is not None:
        out["root"] = dict(root)
    out["deforum_version"] = __version__
    out["settings_schema"] = SETTINGS_SCHEMA
    return out


def _json_default(value: Any) -> Any:
    """Values json cannot write: numpy scalars become numbers, paths strings, anything else (tensors,
    images: renderer state) null."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return item()
        except (TypeError, ValueError):
            return None
    return None


def save_settings(path: str | os.PathLike[str], args: Any, anim_args: Any, prompts: list[str] | None = None,
                  animation_prompts: Mapping[Any, str] | None = None,
                  root: Mapping[str, Any] | None = None) -> Path:
    """Write a settings file atomically (``deforum.image.io.write_atomic``).

    UTF-8 JSON with indent 4 and ``ensure_ascii=False`` like v0.6, so v0.6 can load it too.
    """
    from deforum.image.io import write_atomic  # the one atomic writer (PIL and numpy only when saving)

    text = json.dumps(settings_dict(args, anim_args, prompts, animation_prompts, root), indent=4,
                      ensure_ascii=False, default=_json_default) + "\n"
    return write_atomic(path, text.encode("utf-8"))


def v06_groups(settings: Settings, identity: RunIdentity) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DeforumArgs and DeforumAnimArgs dicts of a run, as v0.6 saved them: typed settings back in the
    table's types, the run's timestring, folder and seed, and v0.6's renderer state as its empty default."""
    groups: dict[str, dict[str, Any]] = {"args": {}, "anim_args": {}}
    for group, values in groups.items():
        for f in FIELDS[group].values():
            if f.concern:
                values[f.name] = _v06_value(f, getattr(getattr(settings, f.concern), f.name))
            else:
                values[f.name] = f.fresh_default()
    groups["args"].update(timestring=identity.timestring, outdir=str(identity.outdir), seed=identity.seed)
    return groups["args"], groups["anim_args"]


def _v06_value(f: Field, value: Any) -> Any:
    """A typed value as a settings file holds it (the inverse of ``resolve``'s typing)."""
    if f.type == "intstr":
        return str(value)
    if f.type == "lora":
        return [{"path": path, "weight": weight} for path, weight in value]
    return list(value) if isinstance(value, tuple) else value


def save_run_settings(path: str | os.PathLike[str], settings: Settings, identity: RunIdentity, *,
                      max_frames: int | None = None) -> Path:
    """The run's ``{timestring}_settings.txt``: a still batch's DeforumArgs with its prompts (v0.6's None-mode
    dump), an animation's DeforumArgs and DeforumAnimArgs with its animation_prompts. ``max_frames`` is the
    frame count found when the run read its inputs (Video Input: the extracted frames)."""
    args, anim = v06_groups(settings, identity)
    if settings.animation.animation_mode == "None":
        return save_settings(path, args, {"animation_mode": "None"}, prompts=list(settings.prompts.prompts))
    if max_frames is not None:
        anim["max_frames"] = max_frames
    return save_settings(path, args, anim, animation_prompts=dict(settings.prompts.animation_prompts))


def resolve_settings_file(settings_file: str, custom_settings_file: str,
                          settings_dir: str | os.PathLike[str] | None = None) -> Path:
    """The file the Load Settings cell names: 'custom' -> custom_settings_file, else a preset in settings/."""
    if settings_file == "custom":
        return Path(os.path.expanduser(custom_settings_file))
    if settings_dir is None:
        settings_dir = Path(__file__).resolve().parents[2] / "settings"
    problem = unsafe_name_problem(settings_file)
    if problem:
        raise SettingsError(f"settings_file={settings_file!r}: {problem} (a file in {str(settings_dir)!r})")
    return Path(settings_dir) / settings_file
