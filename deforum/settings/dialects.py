"""Which program wrote a settings file, recognised from its content (design 7, docs/compat.md "Settings
files of other programs").

The dialects:

- ``ours``: files this project writes (``settings_schema`` / ``deforum_version``); read strictly.
- ``v06_dump``: a dump of the v0.6 / v0.7 notebook (most of the v0.6 keys).
- ``v06_runner``: a file of a v0.6-based local runner (``width`` / ``height`` instead of ``W`` / ``H``).
- ``v06_partial``: a preset or hand-written file holding some v0.6 keys (nothing says more).
- ``a1111``: an A1111 / Forge Deforum settings file: shared fields by name, the rest through ``A1111_TABLE``
  (``a1111_import``); keys with no meaning here are ignored, listed once in one line.
- ``parseq``: a Parseq manifest; not imported yet (as a settings file).

The three v0.6 dialects are one family: read with v0.6's meaning where v0.6 was lenient (``v06_leniency``).
A file of an unsupported dialect gets one message naming the dialect (``unsupported_message``), never a
per-key cascade. ``detect`` only reads the parsed JSON object; it never fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deforum.errors import DeforumError
from deforum.keyframes import is_number, parse_keyframes
from deforum.settings.fields import FIELDS
from deforum.settings.resolve import short_repr

V06_FAMILY = ("v06_dump", "v06_runner", "v06_partial")
UNSUPPORTED = ("parseq",)

TITLES = {
    "ours": "deforum settings (this project's format)",
    "v06_dump": "Deforum v0.6 / v0.7 notebook settings",
    "v06_runner": "settings of a v0.6-based local runner",
    "v06_partial": "v0.6-style settings (a preset or partial file)",
    "a1111": "A1111 / Forge Deforum settings",
    "parseq": "Parseq manifest",
}

SUPPORTED_TEXT = ("deforum reads Deforum v0.6 / v0.7 notebook settings, files of v0.6-based local runners, "
                  "A1111 / Forge Deforum settings and its own settings files (see docs/compat.md)")

# Keys only A1111 / Forge Deforum writes: any one of these names the dialect.
# (animation_prompts_positive / _negative are fields here too, with A1111's meaning, and so is a prompt's
# ``--neg`` part: they name no dialect.)
A1111_SIGNATURE_KEYS = ("sd_model_name", "sd_model_hash", "deforum_git_commit_id", "positive_prompts",
                        "negative_prompts")
# Keys of A1111 / Forge Deforum that no v0.6 / v0.7 notebook has; several of them name the dialect.
A1111_ONLY_KEYS = frozenset({
    "hybrid_motion", "hybrid_composite", "hybrid_flow_method", "hybrid_comp_alpha_schedule",
    "hybrid_generate_inputframes", "optical_flow_cadence", "optical_flow_redo_generation",
    "cadence_flow_factor_schedule", "redo_flow_factor_schedule", "fov_schedule", "near_schedule", "far_schedule",
    "aspect_ratio_schedule", "aspect_ratio_use_old_formula", "checkpoint_schedule", "enable_checkpoint_scheduling",
    "clipskip_schedule", "enable_clipskip_scheduling", "sampler_schedule", "enable_sampler_scheduling",
    "steps_schedule", "enable_steps_scheduling", "noise_multiplier_schedule", "pix2pix_img_cfg_scale_schedule",
    "kernel_schedule", "sigma_schedule", "amount_schedule", "threshold_schedule", "motion_preview_mode",
    "show_info_on_ui", "restore_faces", "tiling", "reroll_blank_frames", "reroll_patience", "store_frames_in_ram",
    "frame_interpolation_engine", "frame_interpolation_x_amount", "parseq_manifest", "parseq_use_deltas",
    "legacy_colormatch", "skip_video_creation", "ncnn_upscale_model", "add_soundtrack", "soundtrack_path",
    "depth_algorithm", "enable_perspective_flip", "seed_resize_from_w", "seed_resize_from_h",
    "color_force_grayscale",
}) - frozenset(name for group in ("args", "anim_args") for name in FIELDS[group])
A1111_MIN_KEYS = 3
_CONTROLNET_KEY = re.compile(r"cn_\d+_\w+")
# Sampler names of A1111's web UI (v0.6 and this project use lower-case k-diffusion names).
_A1111_SAMPLER = re.compile(r"(Euler|Euler a|LMS|Heun|DPM|DDIM|PLMS|UniPC|Restart|LCM|DEIS)( .*)?|DPM\+\+.*")
PARSEQ_KEYS = ("rendered_frames", "rendered_frames_meta", "keyframes", "options", "managedFields", "timeSeries")

V06_RUNNER_SIZE_KEYS = {"width": "W", "height": "H"}


@dataclass(frozen=True)
class Dialect:
    """The dialect ``name`` (see the module doc), its ``title`` for people, and the ``evidence`` found."""

    name: str
    evidence: tuple[str, ...] = ()
    mappings: tuple[str, ...] = ()  # an imported file: one line per mapping rule used ("sampler 'Euler a' -> ...")
    ignored: tuple[str, ...] = ()  # an imported file: its keys with no meaning here

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def supported(self) -> bool:
        return self.name not in UNSUPPORTED

    @property
    def v06_family(self) -> bool:
        return self.name in V06_FAMILY

    def describe(self) -> str:
        """``title (evidence, ...)``: the line ``deforum settings check`` prints."""
        return self.title + (f" ({'; '.join(self.evidence)})" if self.evidence else "")

    def ignored_line(self) -> str | None:
        """The one line naming every ignored key (None when none was)."""
        if not self.ignored:
            return None
        n = len(self.ignored)
        return (f"ignoring {n} {TITLES[self.name].split(' settings')[0]} key{'s' if n != 1 else ''} with no "
                f"meaning here: {', '.join(self.ignored)}")


def v06_keys() -> frozenset[str]:
    """The keys of a v0.6 notebook dump: the v0.6 fields of args and anim_args (not the ones added here)."""
    return frozenset(f.name for g in ("args", "anim_args") for f in FIELDS[g].values() if not f.new)


def detect(data: Mapping[str, Any]) -> Dialect:
    """The dialect of a settings file's JSON object, with the evidence used."""
    parseq = _parseq_evidence(data)
    if parseq:
        return Dialect("parseq", tuple(parseq))
    a1111 = _a1111_evidence(data)
    if a1111:
        return Dialect("a1111", tuple(a1111))
    if "settings_schema" in data or "deforum_version" in data:
        found = [f"{key}={short_repr(data[key], 20)}" for key in ("deforum_version", "settings_schema")
                 if key in data]
        return Dialect("ours", tuple(found))
    sizes = [key for key in V06_RUNNER_SIZE_KEYS if key in data]
    if sizes:
        targets = " / ".join(V06_RUNNER_SIZE_KEYS[key] for key in sizes)
        return Dialect("v06_runner", (f"{' / '.join(sizes)} instead of {targets}",))
    known = v06_keys()
    present = sum(1 for key in data if key in known)
    if present >= len(known) // 2:
        return Dialect("v06_dump", (f"{present} of the {len(known)} v0.6 keys",))
    return Dialect("v06_partial", ())


def _parseq_evidence(data: Mapping[str, Any]) -> list[str]:
    found = []
    meta = data.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("generated_by"), str) \
            and "parseq" in meta["generated_by"].lower():
        found.append(f"meta.generated_by={meta['generated_by']!r}")
    keys = [key for key in PARSEQ_KEYS if key in data]
    if found or len(keys) >= 2 or "rendered_frames" in keys:
        return found + keys
    return []


def _a1111_evidence(data: Mapping[str, Any]) -> list[str]:
    strong = [key for key in A1111_SIGNATURE_KEYS if key in data]
    only = [key for key in data if key in A1111_ONLY_KEYS or _CONTROLNET_KEY.fullmatch(key)]
    sampler = data.get("sampler")
    # A web-UI sampler name alone may be a typo of a v0.6 one ("Euler"): it counts with another sign only.
    if isinstance(sampler, str) and _A1111_SAMPLER.fullmatch(sampler) and (strong or only):
        strong.append(f"sampler={sampler!r}")
    if not strong and len(only) < A1111_MIN_KEYS:
        return []
    if only:
        shown = ", ".join(only[:4]) + (f" and {len(only) - 4} more" if len(only) > 4 else "")
        strong.append(f"{len(only)} A1111-only key{'s' if len(only) != 1 else ''}: {shown}")
    return strong


def unsupported_message(dialect: Dialect) -> str:
    """The one message for a file of a dialect that is not imported yet."""
    what = {"a1111": "an A1111 / Forge Deforum settings file", "parseq": "a Parseq manifest"}[dialect.name]
    those = {"a1111": "A1111 / Forge Deforum settings", "parseq": "Parseq manifests"}[dialect.name]
    return (f"this is {what} ({'; '.join(dialect.evidence)}); importing {those} is not supported yet: "
            f"{SUPPORTED_TEXT}")


# Fields whose v0.6 reading was lenient: v0.6 used a value outside the choices as this one.
V06_FALLBACKS = {"border": ("wrap", "replicate")}  # v0.6: cv2.BORDER_WRAP if border == 'wrap' else REPLICATE


def v06_leniency(data: Mapping[str, Any], anim: dict[str, Any], args: dict[str, Any]) -> tuple[set[str], list[str]]:
    """Read a v0.6-family file's values as v0.6 did where v0.6 was lenient, into ``args`` / ``anim``.

    Returns (the file keys now read, notes). ``width`` / ``height`` are ``W`` / ``H`` where those are absent;
    a ``border`` other than 'wrap' is 'replicate', as v0.6 rendered it.
    """
    used: set[str] = set()
    notes: list[str] = []
    for key, target in V06_RUNNER_SIZE_KEYS.items():
        if key in data and target not in data:
            args[target] = data[key]
            used.add(key)
            notes.append(f"{key}={short_repr(data[key])} is read as {target} (a v0.6-based runner's name for {target})")
    for key, (special, fallback) in V06_FALLBACKS.items():
        if key in data and data[key] not in (special, fallback):
            anim[key] = fallback
            notes.append(f"{key}={short_repr(data[key])} is used as {fallback!r} (v0.6 rendered every {key} but "
                         f"{special!r} as {fallback!r})")
    return used, notes


# ------------------------------------------------------------------------------------ A1111 / Forge Deforum
#
# An A1111 / Forge Deforum file keeps many v0.6 names (W, H, seed, steps, the motion schedules, prompts with
# --neg, ...): those are read by name. Every other key the import reads is a row of A1111_TABLE: the key, and
# a rule that turns its value into values here, or says why it has no equivalent (``NoEquivalent``: a
# SettingsError naming the key, the value and what is allowed). Every key left is ignored, listed once.
# The choices (which values map, which are errors) are documented in docs/compat.md, "Settings files of
# other programs".


class NoEquivalent(DeforumError):
    """An A1111 value this project has no equivalent for; the message says what is allowed."""


@dataclass(frozen=True)
class Mapped:
    """What a rule gives: ``values`` ({(group, name): value}, group 'args', 'anim_args' or 'video'), the
    mapping line for ``deforum settings check`` (None: nothing to say, the value is used as it is) and a note
    when A1111's meaning is only close to the one here."""

    values: dict[tuple[str, str], Any]
    line: str | None = None
    note: str | None = None


# A1111's web-UI sampler names -> the samplers here; "<name> Karras" adds karras_schedule.
A1111_SAMPLERS = {
    "Euler a": "euler_ancestral", "Euler": "euler", "LMS": "klms", "Heun": "heun", "DPM2": "dpm2",
    "DPM2 a": "dpm2_ancestral", "DPM++ 2S a": "dpmpp_2s_a", "DPM++ 2M": "dpmpp_2m", "DPM++ SDE": "dpmpp_sde",
    "DPM++ 2M SDE": "dpmpp_2m_sde", "DPM fast": "dpm_fast", "DPM adaptive": "dpm_adaptive", "DDIM": "ddim",
    "PLMS": "plms", "LCM": "lcm",
}
KARRAS = " Karras"
# A1111 >= 1.9 and Forge keep the noise schedule apart ("scheduler"): the ones that exist here.
# "simple" and "normal" space the steps evenly over the model's noise levels, as the samplers here do by
# default: close (a note says so), not bit-equal. Any other (exponential, sgm uniform, ...) is an error.
A1111_SCHEDULERS = {"automatic": False, "karras": True, "simple": False, "normal": False}
A1111_COLOR_COHERENCE = {"None": "None", "HSV": "Match Frame 0 HSV", "LAB": "Match Frame 0 LAB",
                         "RGB": "Match Frame 0 RGB"}
# A1111's depth_algorithm names start with the model's name.
A1111_DEPTH = {"midas": "midas", "depth-anything": "depth_anything"}
# Schedules of A1111 that are one number for the whole run here.
A1111_ONE_VALUE = {"cfg_scale_schedule": ("args", "scale"), "fov_schedule": ("anim_args", "fov"),
                   "near_schedule": ("anim_args", "near_plane"), "far_schedule": ("anim_args", "far_plane")}
A1111_VIDEO_KEYS = ("fps", "make_gif", "add_soundtrack", "soundtrack_path")


def _choices(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


def _sampler(value: Any, data: Mapping[str, Any]) -> Mapped:
    ours = FIELDS["args"]["sampler"].choices
    if value in ours:  # a file edited to this project's names
        return Mapped({("args", "sampler"): value})
    name, karras = value, False
    if isinstance(value, str) and value.endswith(KARRAS):
        name, karras = value[:-len(KARRAS)], True
    if not isinstance(name, str) or name not in A1111_SAMPLERS:
        raise NoEquivalent(f"sampler={short_repr(value)}: no such sampler here; A1111 names read: "
                           f"{_choices(A1111_SAMPLERS)} (each also with ' Karras'), or one of this project's: "
                           f"{_choices(ours)}")
    values: dict[tuple[str, str], Any] = {("args", "sampler"): A1111_SAMPLERS[name]}
    line = f"sampler {value!r} -> {A1111_SAMPLERS[name]!r}"
    if karras:
        values[("args", "karras_schedule")] = True
        line += " + karras_schedule"
    return Mapped(values, line)


def _scheduler(value: Any, data: Mapping[str, Any]) -> Mapped:
    key = value.strip().lower().replace("_", " ") if isinstance(value, str) else None
    if key not in A1111_SCHEDULERS:
        raise NoEquivalent(f"scheduler={short_repr(value)}: no such noise schedule here; allowed: "
                           f"{_choices(n.title() for n in A1111_SCHEDULERS)} (Karras: karras_schedule; the others: "
                           "the sampler's own spacing)")
    if A1111_SCHEDULERS[key]:
        return Mapped({("args", "karras_schedule"): True}, f"scheduler {value!r} -> karras_schedule")
    if key == "automatic":
        return Mapped({})
    return Mapped({("args", "karras_schedule"): False}, f"scheduler {value!r} -> the sampler's own spacing",
                  note=f"scheduler={value!r} is used as the sampler's own sigma spacing (v0.6's, evenly spaced "
                       "over the model's noise levels), close to but not the same as A1111's")


def _color_coherence(value: Any, data: Mapping[str, Any]) -> Mapped:
    ours = FIELDS["anim_args"]["color_coherence"].choices
    if value in ours:
        return Mapped({("anim_args", "color_coherence"): value})
    if value not in A1111_COLOR_COHERENCE:
        raise NoEquivalent(f"color_coherence={short_repr(value)}: no such colour match here; allowed: "
                           f"{_choices(A1111_COLOR_COHERENCE)} (A1111) or {_choices(ours)}")
    target = A1111_COLOR_COHERENCE[value]
    return Mapped({("anim_args", "color_coherence"): target}, f"color_coherence {value!r} -> {target!r}")


def _depth_algorithm(value: Any, data: Mapping[str, Any]) -> Mapped:
    for prefix, model in A1111_DEPTH.items():
        if isinstance(value, str) and value.lower().startswith(prefix):
            return Mapped({("anim_args", "depth_model"): model}, f"depth_algorithm {value!r} -> depth_model {model!r}")
    raise NoEquivalent(f"depth_algorithm={short_repr(value)}: no such depth model here; allowed: Midas-* "
                       "(depth_model 'midas') or Depth-Anything-* (depth_model 'depth_anything')")


def _one_value(key: str) -> Callable[[Any, Mapping[str, Any]], Mapped]:
    group, name = A1111_ONE_VALUE[key]

    def rule(value: Any, data: Mapping[str, Any]) -> Mapped:
        try:
            values = {k.value.strip() for k in parse_keyframes(value, field=key)}
        except DeforumError as exc:
            raise NoEquivalent(f"{key}={short_repr(value)}: {exc}") from None
        if len(values) != 1 or not is_number(next(iter(values))):
            raise NoEquivalent(f"{key}={short_repr(value)}: {name} is one number for the whole run here; allowed: "
                               f"a schedule of one value, e.g. \"0: ({FIELDS[group][name].default})\"")
        number = float(next(iter(values)))
        number = int(number) if number.is_integer() else number  # a float field keeps an int as given
        return Mapped({(group, name): number}, f"{key} {value!r} -> {name} {number!r}")

    return rule


def _renamed(key: str, group: str, name: str, *,
             unless: str | None = None) -> Callable[[Any, Mapping[str, Any]], Mapped]:
    def rule(value: Any, data: Mapping[str, Any]) -> Mapped:
        if unless is not None and unless in data:  # the newer name wins
            return Mapped({})
        return Mapped({(group, name): value}, f"{key} {short_repr(value, 40)} -> {name}")

    return rule


def _video(name: str) -> Callable[[Any, Mapping[str, Any]], Mapped]:
    def rule(value: Any, data: Mapping[str, Any]) -> Mapped:
        return Mapped({("video", name): value})

    return rule


# The one table: an A1111 / Forge key -> its rule, applied in this order after the keys read by name (a
# later row wins: cfg_scale_schedule over cfg_scale over scale, as A1111 renders with the schedule).
A1111_TABLE: dict[str, Callable[[Any, Mapping[str, Any]], Mapped]] = {
    "sampler": _sampler,
    "scheduler": _scheduler,
    "cfg_scale": _renamed("cfg_scale", "args", "scale"),
    **{key: _one_value(key) for key in A1111_ONE_VALUE},
    "positive_prompts": _renamed("positive_prompts", "anim_args", "animation_prompts_positive",
                                 unless="animation_prompts_positive"),
    "negative_prompts": _renamed("negative_prompts", "anim_args", "animation_prompts_negative",
                                 unless="animation_prompts_negative"),
    "enable_perspective_flip": _renamed("enable_perspective_flip", "anim_args", "flip_2d_perspective"),
    "color_coherence": _color_coherence,
    "depth_algorithm": _depth_algorithm,
    **{key: _video(key) for key in A1111_VIDEO_KEYS},
}


@dataclass
class Imported:
    """``a1111_import``'s result: ``video`` values (the video cell), the mapping lines, the notes, the
    ignored keys and the problems (one per value with no equivalent)."""

    video: dict[str, Any]
    mappings: list[str]
    notes: list[str]
    ignored: list[str]
    problems: list[str]


def a1111_import(data: Mapping[str, Any], args: dict[str, Any], anim_args: dict[str, Any],
                 ignored_candidates: list[str]) -> Imported:
    """Apply an A1111 / Forge file's table keys to ``args`` / ``anim_args`` (the keys named as here are
    already there). ``ignored_candidates`` (the keys named nothing here) not in the table are ignored."""
    out = Imported({}, [], [], [], [])
    groups = {"args": args, "anim_args": anim_args, "video": out.video}
    for key, rule in A1111_TABLE.items():
        if key not in data:
            continue
        try:
            mapped = rule(data[key], data)
        except NoEquivalent as exc:
            out.problems.append(str(exc))
            continue
        for (group, name), value in mapped.values.items():
            groups[group][name] = value
        if mapped.line:
            out.mappings.append(mapped.line)
        if mapped.note:
            out.notes.append(mapped.note)
    out.ignored = [key for key in ignored_candidates if key not in A1111_TABLE]
    return out
