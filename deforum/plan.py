"""The render plan: every per-frame value of a run, computed before any model loads (DESIGN section 2).

The plan is the dry run, the preview, the thing the notebook plots and the table tests compare. Renderers
execute it row by row; they never re-derive schedules, prompts, seeds or cadence roles themselves.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deforum.errors import SettingsError
from deforum.keyframes import parse_schedule, parse_schedules, prompt_schedule
from deforum.prompts import compose_prompt, split_negative
from deforum.settings import (
    ANIMATION_MODES,
    FIELDS,
    MAX_BLUR_KERNEL,
    MAX_FRAMES_LIMIT,
    SEED_MAX,
    FrameValues,
    Settings,
    schedule_fields,
    schedule_strings,
    settings_error,
)

SEED_LIMIT = SEED_MAX + 1  # seeds are drawn from, and fed to the RNGs as, 0 .. 2**32 - 1
SEED_BEHAVIORS = FIELDS["args"]["seed_behavior"].choices

# Bounds that keep every frame finite (checked at planning, before any model loads; a finite check of each
# frame before it is saved catches the rest). Each is far beyond any value an artist uses, and well inside
# what float32 (the warps, the sampler) and float16 (the model on a GPU) can carry:
SCALE_MAX = 100.0  # |scale|: guidance beyond ~30 already saturates; 1e308 overflows the CFG sum to inf
ZOOM_MIN, ZOOM_MAX = 1e-3, 1e3  # |2D zoom| per frame: 0 collapses the image to a point (a blank frame)
FOV_MIN, FOV_MAX = 1e-3, 180.0  # |fov| in degrees: the 3D gain 1/tan(fov/2) is infinite at 0, zero at 180
TRANSLATION_MAX = 1e6  # pixels (2D) or camera units (3D) per frame; float32 overflows near 3.4e38
ROTATION_MAX = 1e5  # degrees per frame; a float32 angle near 3.4e38 is inf, and its cosine NaN
NOISE_MAX = 100.0  # |noise_schedule|: std of the noise added to a [-1, 1] init; more is only noise
CONTRAST_MAX = 100.0  # |contrast_schedule|: gain on 0..255 pixels before the VAE (float16 on a GPU)
FACTOR_MAX = 100.0  # |anti-blur amount|, |flow factors|: 100 times the measured flow or the sharpening is noise
SIGMA_MAX = 1000.0  # anti-blur sigma in pixels: beyond the largest kernel it is a box blur anyway


@dataclass(frozen=True)
class ValueBound:
    """The values a per-frame schedule or a setting may take (``low``/``high`` on the magnitude when
    ``magnitude``), and in which modes it matters."""

    low: float | None
    high: float | None
    allowed: str
    modes: tuple[str, ...]
    magnitude: bool = False
    high_inclusive: bool = True

    def problem(self, value: float) -> bool:
        x = abs(value) if self.magnitude else value
        if not np.isfinite(x):
            return True
        if self.low is not None and x < self.low:
            return True
        return self.high is not None and (x > self.high if self.high_inclusive else x >= self.high)


_MOTION_2D, _MOTION_3D = ("2D",), ("3D",)
_SCHEDULED = ("2D", "3D", "Video Input")
_FLIP = "flip"  # the perspective flip schedules matter only with flip_2d_perspective on
SCHEDULE_BOUNDS: dict[str, ValueBound] = {
    "zoom": ValueBound(ZOOM_MIN, ZOOM_MAX, f"a zoom factor per frame with {ZOOM_MIN:g} <= |zoom| <= "
                                           f"{ZOOM_MAX:g} (1 = still; a negative zoom also turns the frame "
                                           "half round, as in v0.6)", _MOTION_2D, magnitude=True),
    "angle": ValueBound(None, ROTATION_MAX, f"from -{ROTATION_MAX:g} to {ROTATION_MAX:g} degrees per frame",
                        _MOTION_2D, magnitude=True),
    **{name: ValueBound(None, TRANSLATION_MAX, f"from -{TRANSLATION_MAX:g} to {TRANSLATION_MAX:g} per frame",
                        ("2D", "3D") if name != "translation_z" else _MOTION_3D, magnitude=True)
       for name in ("translation_x", "translation_y", "translation_z")},
    **{name: ValueBound(None, ROTATION_MAX, f"from -{ROTATION_MAX:g} to {ROTATION_MAX:g} degrees per frame",
                        _MOTION_3D, magnitude=True)
       for name in ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z")},
    **{name: ValueBound(None, ROTATION_MAX, f"from -{ROTATION_MAX:g} to {ROTATION_MAX:g} degrees",
                        (_FLIP,), magnitude=True)
       for name in ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma")},
    "perspective_flip_fv": ValueBound(FOV_MIN, FOV_MAX, f"a field of view with {FOV_MIN:g} <= |fv| < "
                                                        f"{FOV_MAX:g} degrees", (_FLIP,), magnitude=True,
                                      high_inclusive=False),
    "noise_schedule": ValueBound(None, NOISE_MAX, f"from -{NOISE_MAX:g} to {NOISE_MAX:g}", ("2D", "3D"),
                                 magnitude=True),
    "contrast_schedule": ValueBound(None, CONTRAST_MAX, f"from -{CONTRAST_MAX:g} to {CONTRAST_MAX:g} (1 = "
                                                        "unchanged)", ("2D", "3D"), magnitude=True),
    # motion beyond v0.6: anti-blur, flow factors, hybrid composite (finite, and far beyond any use)
    "amount_schedule": ValueBound(None, FACTOR_MAX, f"from -{FACTOR_MAX:g} to {FACTOR_MAX:g} (0 = no sharpening)",
                                  _SCHEDULED, magnitude=True),
    "kernel_schedule": ValueBound(0, MAX_BLUR_KERNEL, f"a blur kernel from 0 to {MAX_BLUR_KERNEL} pixels (made odd)",
                                  _SCHEDULED),
    "sigma_schedule": ValueBound(0, SIGMA_MAX, f"a blur sigma from 0 to {SIGMA_MAX:g} (0: from the kernel)",
                                 _SCHEDULED),
    "threshold_schedule": ValueBound(0, 255, "from 0 to 255", _SCHEDULED),
    **{name: ValueBound(None, FACTOR_MAX, f"from -{FACTOR_MAX:g} to {FACTOR_MAX:g} (1 = the measured flow)",
                        _SCHEDULED, magnitude=True)
       for name in ("cadence_flow_factor_schedule", "redo_flow_factor_schedule", "hybrid_flow_factor_schedule")},
    **{name: ValueBound(None, None, "a finite number (clamped to 0..1)", _SCHEDULED)
       for name in ("hybrid_comp_alpha_schedule", "hybrid_comp_mask_blend_alpha_schedule")},
    "hybrid_comp_mask_contrast_schedule": ValueBound(None, CONTRAST_MAX, f"from -{CONTRAST_MAX:g} to "
                                                     f"{CONTRAST_MAX:g} (1 = unchanged)", _SCHEDULED, magnitude=True),
}
SETTING_BOUNDS: dict[str, ValueBound] = {
    "scale": ValueBound(None, SCALE_MAX, f"a guidance scale from -{SCALE_MAX:g} to {SCALE_MAX:g}",
                        ANIMATION_MODES, magnitude=True),
    "ddim_eta": ValueBound(0.0, None, ">= 0 (a negative eta makes the ddim step's noise NaN)", ANIMATION_MODES),
    "fov": ValueBound(FOV_MIN, FOV_MAX, f"{FOV_MIN:g} <= |fov| < {FOV_MAX:g} degrees (the 3D camera gain "
                                        "1/tan(fov/2) must be finite and not 0)", _MOTION_3D, magnitude=True,
                      high_inclusive=False),
}


def _applies(bound: ValueBound, settings: Settings) -> bool:
    mode = settings.animation.animation_mode
    if _FLIP in bound.modes:
        return mode == "2D" and settings.motion.flip_2d_perspective
    return mode in bound.modes


def _setting_values(settings: Settings) -> dict[str, float]:
    return {"scale": settings.image.scale, "ddim_eta": settings.image.ddim_eta, "fov": settings.depth.fov}


def value_problems(settings: Settings, schedules: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Every setting and schedule value of this run's mode that would make a frame non-finite or blank.

    One line per field: the field, the first frame and value that break it (and how many frames do), and
    what is allowed.
    """
    found = []
    for name, value in _setting_values(settings).items():
        if _applies(SETTING_BOUNDS[name], settings) and SETTING_BOUNDS[name].problem(float(value)):
            found.append(f"{name}={value!r}: not allowed; it must be {SETTING_BOUNDS[name].allowed}")
    for name, series in (schedules or {}).items():
        bound = SCHEDULE_BOUNDS.get(name)
        if bound is None or not _applies(bound, settings):
            continue
        x = np.abs(series) if bound.magnitude else np.asarray(series)
        bad = ~np.isfinite(x)
        if bound.low is not None:
            bad |= x < bound.low
        if bound.high is not None:
            bad |= (x > bound.high) if bound.high_inclusive else (x >= bound.high)
        if bad.any():
            frames = np.flatnonzero(bad)
            first = int(frames[0])
            more = f" ({len(frames)} frames, {first} to {int(frames[-1])})" if len(frames) > 1 else ""
            found.append(f"{name}: {float(series[first])!r} at frame {first}{more} is not allowed; it must be "
                         f"{bound.allowed}")
    return found


def check_values(settings: Settings, schedules: Mapping[str, np.ndarray] | None = None) -> None:
    """Raise one SettingsError listing every ``value_problems`` line (its ``problems`` attribute)."""
    found = value_problems(settings, schedules)
    if found:
        raise settings_error(found)


def next_seed(seed: int, seed_behavior: str) -> int:
    """The seed after ``seed`` for v0.6's modes (spec 6.6): iter +1, fixed unchanged, random chained.

    v0.6 re-seeded Python's ``random`` with the current seed before drawing, so "random" seeds form a
    deterministic chain from the start seed; ``random.Random(seed)`` reproduces that chain exactly.
    """
    if seed_behavior == "iter":
        return seed + 1
    if seed_behavior == "fixed":
        return seed
    if seed_behavior == "random":
        return random.Random(seed).randint(0, SEED_LIMIT - 1)
    raise SettingsError(
        f"seed_behavior: {seed_behavior!r} is not allowed here; choose one of iter, fixed, random"
    )


def seed_sequence(start_seed: int, seed_behavior: str, frames: Sequence[int], *, seed_iter_n: int = 1,
                  scheduled: np.ndarray | None = None) -> list[int]:
    """The seed of each generated image, the k-th of which is output frame ``frames[k]`` (A1111 Deforum's modes
    beside v0.6's):

    - iter: up by 1 every ``seed_iter_n`` images (s, s+1, ... for 1; s, s, s+1, s+1, ... for 2);
    - fixed, random: v0.6's (``next_seed``);
    - ladder: +2, -1, +2, -1, ... (s, s+2, s+1, s+3, s+2, ...);
    - alternate: +1, -1, ... (s, s+1, s, s+1, ...);
    - schedule: ``scheduled[frame]`` (``seed_schedule``, whose ``s`` is the start seed), truncated to a whole
      number; -1 is a random seed drawn from the start seed and the frame, so a run stays reproducible.
    """
    start = int(start_seed)
    if seed_behavior == "schedule":
        if scheduled is None:
            raise SettingsError("seed_behavior 'schedule' needs the parsed seed_schedule")
        return [_scheduled_seed(float(scheduled[frame]), start, frame) for frame in frames]
    seeds, seed = [], start
    for k in range(len(frames)):
        seeds.append(seed)
        if seed_behavior == "iter":
            seed = start + (k + 1) // max(1, int(seed_iter_n))
        elif seed_behavior == "ladder":
            seed += 2 if k % 2 == 0 else -1
        elif seed_behavior == "alternate":
            seed += 1 if k % 2 == 0 else -1
        else:
            seed = next_seed(seed, seed_behavior)
    return seeds


def _scheduled_seed(value: float, start_seed: int, frame: int) -> int:
    if not np.isfinite(value) or value < -1 or value > SEED_MAX:
        raise SettingsError(f"seed_schedule: {value!r} at frame {frame} is not allowed; a seed must be from 0 to "
                            f"{SEED_MAX}, or -1 for a random one")
    if int(value) == -1:
        return random.Random(f"{start_seed}/{frame}").randint(0, SEED_LIMIT - 1)
    return int(value)


def rng_seed(seed: int) -> int:
    """The value the random generators are seeded with: ``iter`` may count past 2**32 - 1, so wrap.

    v0.6 replaced such a seed with a non-reproducible random one; wrapping keeps runs reproducible.
    """
    return int(seed) % SEED_LIMIT


@dataclass(frozen=True)
class CadenceRole:
    """How one output frame of a 2D/3D animation is made (spec 6.7, with the tail fixed).

    Diffused ("key") frames are 0, N, 2N, ...; output frame j shows key ``next_key = (j // N) * N``
    warped up to j, cross-faded with the previous key ``next_key - N`` (also warped up to j) with weight
    ``tween`` = (j % N + 1) / N for the newer key. The first segment has no previous key; a frame whose
    tween is 1 is the newer key alone.
    """

    diffused: bool
    next_key: int
    prev_key: int | None
    tween: float

    @property
    def blended(self) -> bool:
        return self.prev_key is not None and self.tween < 1.0


def cadence_role(frame: int, cadence: int) -> CadenceRole:
    cadence = max(1, int(cadence))
    next_key = (frame // cadence) * cadence
    prev_key = next_key - cadence if next_key >= cadence else None
    tween = (frame % cadence + 1) / cadence
    return CadenceRole(diffused=frame % cadence == 0, next_key=next_key, prev_key=prev_key, tween=tween)


@dataclass(frozen=True)
class FrameRow:
    """One output frame (2D/3D/Video Input/Interpolation) or one still image (None mode)."""

    frame: int
    prompt: str
    seed: int | None  # the seed of the image generated for this row; None when nothing is generated here
    role: str  # "diffused" | "tween" | "still" | "video" | "interpolated"
    values: FrameValues | None = None  # the schedules' values at this frame (2D, 3D, Video Input)
    cadence: CadenceRole | None = None
    init_image: str | None = None  # None mode / Video Input: the init image of this row
    interpolation: tuple[int, int, float] | None = None  # (prompt index a, prompt index b, t)

    # ``prompt`` is the frame's full prompt, ``positive --neg negative`` (with animation_prompts_positive /
    # _negative added in the animation modes): what the generator encodes and what the plan shows.
    @property
    def positive_prompt(self) -> str:
        return split_negative(self.prompt)[0]

    @property
    def negative_prompt(self) -> str:
        return split_negative(self.prompt)[1]


@dataclass
class RenderPlan:
    animation_mode: str
    max_frames: int
    rows: list[FrameRow]
    schedules: dict[str, np.ndarray]
    start_seed: int
    seed_behavior: str
    cadence: int = 1

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def diffused_frames(self) -> list[int]:
        return [row.frame for row in self.rows if row.seed is not None]

    def column_names(self) -> list[str]:
        names = ["frame", "role", "prompt", "seed"]
        if self.animation_mode in ("2D", "3D"):
            names += ["next_key", "prev_key", "tween"]
        if self.animation_mode == "Interpolation":
            names += ["prompt_a", "prompt_b", "t"]
        if self.animation_mode in ("None", "Video Input"):
            names += ["init_image"]
        return names + list(self.schedules)

    def table(self) -> list[dict[str, Any]]:
        out = []
        for row in self.rows:
            record: dict[str, Any] = {"frame": row.frame, "role": row.role, "prompt": row.prompt,
                                      "seed": row.seed}
            if self.animation_mode in ("2D", "3D") and row.cadence is not None:
                record.update(next_key=row.cadence.next_key, prev_key=row.cadence.prev_key,
                              tween=row.cadence.tween)
            if self.animation_mode == "Interpolation" and row.interpolation is not None:
                record.update(prompt_a=row.interpolation[0], prompt_b=row.interpolation[1],
                              t=row.interpolation[2])
            if self.animation_mode in ("None", "Video Input"):
                record["init_image"] = row.init_image
            if row.values is not None:
                record.update(asdict(row.values))
            out.append(record)
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        """The plan as CSV text; also written to ``path`` when given."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.column_names(), lineterminator="\n")
        writer.writeheader()
        for record in self.table():
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text



def _seeds(settings: Settings, start_seed: int, frames: Sequence[int], length: int) -> list[int]:
    """``seed_sequence`` for a run's generated ``frames`` (``length``: the frames ``seed_schedule`` covers)."""
    image = settings.image
    scheduled = None
    if image.seed_behavior == "schedule":
        scheduled = parse_schedule(image.seed_schedule, length, field="seed_schedule", frame_limit=MAX_FRAMES_LIMIT,
                                   variables={"s": float(start_seed)})
    return seed_sequence(start_seed, image.seed_behavior, frames, seed_iter_n=image.seed_iter_N,
                         scheduled=scheduled)


def interpolation_frames(n_prompts: int, keys: list[int], interpolate_x_frames: int,
                         interpolate_key_frames: bool) -> list[tuple[int, int, float]]:
    """(prompt index a, prompt index b, t) for every Interpolation frame (spec 8, with 12.1 #11 fixed).

    ``interpolate_key_frames`` False: each consecutive pair gets X+1 frames at t = j/(X+1), then the last
    prompt alone: (P-1)(X+1)+1 frames, as v0.6. True: each pair (a, b) gets key_b - key_a frames at
    t = j/(key_b - key_a), then the last prompt — every pair, where v0.6 rendered only the last one.
    A single prompt gives one frame.
    """
    frames: list[tuple[int, int, float]] = []
    for a in range(n_prompts - 1):
        if interpolate_key_frames:
            count = keys[a + 1] - keys[a]
            if count <= 0:
                raise SettingsError(
                    f"animation_prompts: with interpolate_key_frames the keys must increase, "
                    f"but key {keys[a + 1]} follows key {keys[a]}"
                )
        else:
            count = int(interpolate_x_frames) + 1
        frames += [(a, a + 1, j / count) for j in range(count)]
    last = n_prompts - 1
    frames.append((last, last, 0.0))
    return frames


def animation_prompt_texts(settings: Settings) -> dict[int, str]:
    """The animation prompts {key: full prompt} of a run (keys as in the settings): each key's text with
    ``animation_prompts_positive`` before its positive part and ``animation_prompts_negative`` after its
    negative part (``--neg``), as A1111 Deforum composes them (``deforum.prompts.compose_prompt``). A prompt
    with two ``--neg`` is a SettingsError. (The None mode's prompts get neither: A1111 has no None mode.)
    """
    prompts = settings.prompts
    positive, negative = prompts.animation_prompts_positive, prompts.animation_prompts_negative
    return {key: compose_prompt(text, positive, negative, field=f"animation_prompts[{key}]")
            for key, text in prompts.animation_prompts.items()}


def make_plan(settings: Settings, seed: int, *, init_images: Sequence[str] | None = None) -> RenderPlan:
    """The per-frame table of a run, from resolved settings and the run's seed (``RunIdentity.seed``).

    ``init_images`` is the list of init images of a None-mode batch or the extracted frames of a Video Input
    run (their count then sets the number of frames).
    """
    mode = settings.animation.animation_mode
    if seed < 0:
        raise SettingsError(f"seed: {seed} must be resolved to a value >= 0 before planning (-1 means random)")
    seed_behavior = settings.image.seed_behavior
    if mode == "None":
        check_values(settings)
        return _plan_stills(settings, seed, init_images)
    if mode == "Interpolation":
        check_values(settings)
        return _plan_interpolation(settings, seed)

    max_frames = len(init_images) if mode == "Video Input" and init_images is not None else \
        settings.animation.max_frames
    names = schedule_fields()
    schedules = parse_schedules(schedule_strings(settings), max_frames, names=names, frame_limit=MAX_FRAMES_LIMIT)
    check_values(settings, schedules)
    prompt_per_frame = prompt_schedule(animation_prompt_texts(settings), max_frames,
                                       frame_limit=MAX_FRAMES_LIMIT)
    cadence = 1 if mode == "Video Input" else max(1, settings.coherence.diffusion_cadence)

    keys = list(range(0, max_frames, cadence))
    seed_of_key = dict(zip(keys, _seeds(settings, seed, keys, max_frames), strict=True))
    rows = []
    for frame in range(max_frames):
        values = FrameValues(**{name: float(series[frame]) for name, series in schedules.items()})
        if mode == "Video Input":
            rows.append(FrameRow(frame, prompt_per_frame[frame], seed_of_key[frame], "video", values,
                                 init_image=init_images[frame] if init_images else None))
            continue
        role = cadence_role(frame, cadence)
        rows.append(FrameRow(frame, prompt_per_frame[frame], seed_of_key.get(frame),
                             "diffused" if role.diffused else "tween", values, cadence=role))
    return RenderPlan(mode, max_frames, rows, schedules, seed, seed_behavior, cadence)


def _plan_stills(settings: Settings, seed: int, init_images: Sequence[str] | None) -> RenderPlan:
    """None mode (spec 11): prompts x n_batch x init images, the seed advancing after every image."""
    inits: list[str | None] = list(init_images) if init_images else [None]
    seed_behavior = settings.image.seed_behavior
    for index, prompt in enumerate(settings.prompts.prompts):
        split_negative(prompt, field=f"prompts[{index}]")  # two --neg: a SettingsError before any model loads
    combos = [(prompt, init) for prompt in settings.prompts.prompts for _ in range(settings.output.n_batch)
              for init in inits]
    seeds = _seeds(settings, seed, range(len(combos)), len(combos))
    rows = [FrameRow(index, prompt, image_seed, "still", init_image=init)
            for index, ((prompt, init), image_seed) in enumerate(zip(combos, seeds, strict=True))]
    return RenderPlan("None", 1, rows, {}, seed, seed_behavior)


def _plan_interpolation(settings: Settings, seed: int) -> RenderPlan:
    """Interpolation mode (spec 8): a fixed seed, conditioning interpolated between prompt pairs."""
    animation_prompts = animation_prompt_texts(settings)
    if not animation_prompts:
        raise SettingsError("animation_prompts: Interpolation needs at least one prompt")
    items = sorted((int(key), text) for key, text in animation_prompts.items())
    keys = [key for key, _ in items]
    texts = [text for _, text in items]
    frames = interpolation_frames(len(items), keys, settings.interpolation.interpolate_x_frames,
                                  settings.interpolation.interpolate_key_frames)
    rows = [FrameRow(index, texts[b] if t >= 0.5 else texts[a], seed, "interpolated", interpolation=(a, b, t))
            for index, (a, b, t) in enumerate(frames)]
    return RenderPlan("Interpolation", len(rows), rows, {}, seed, "fixed")
