"""Which program wrote a settings file, recognised from its content (design 7, docs/compat.md "Settings
files of other programs").

The dialects:

- ``ours``: files this project writes (``settings_schema`` / ``deforum_version``); read strictly.
- ``v06_dump``: a dump of the v0.6 / v0.7 notebook (most of the v0.6 keys).
- ``v06_runner``: a file of a v0.6-based local runner (``width`` / ``height`` instead of ``W`` / ``H``).
- ``v06_partial``: a preset or hand-written file holding some v0.6 keys (nothing says more).
- ``a1111``: an A1111 / Forge Deforum settings file; not imported yet.
- ``parseq``: a Parseq manifest; not imported yet.

The three v0.6 dialects are one family: read with v0.6's meaning where v0.6 was lenient (``v06_leniency``).
A file of an unsupported dialect gets one message naming the dialect (``unsupported_message``), never a
per-key cascade. ``detect`` only reads the parsed JSON object; it never fails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deforum.settings.fields import FIELDS
from deforum.settings.resolve import short_repr

V06_FAMILY = ("v06_dump", "v06_runner", "v06_partial")
UNSUPPORTED = ("a1111", "parseq")

TITLES = {
    "ours": "deforum settings (this project's format)",
    "v06_dump": "Deforum v0.6 / v0.7 notebook settings",
    "v06_runner": "settings of a v0.6-based local runner",
    "v06_partial": "v0.6-style settings (a preset or partial file)",
    "a1111": "A1111 / Forge Deforum settings",
    "parseq": "Parseq manifest",
}

SUPPORTED_TEXT = ("deforum reads Deforum v0.6 / v0.7 notebook settings, files of v0.6-based local runners and "
                  "its own settings files (see docs/compat.md)")

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
