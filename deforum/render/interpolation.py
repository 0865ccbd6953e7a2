"""The Interpolation mode (spec animation 8): frames that blend the conditioning from one prompt to the next.

Every frame is a fresh generation with the same (fixed) seed, so the starting noise is identical and only
the conditioning moves. The frame list comes from the render plan (``deforum.plan.make_plan``, through
``deforum.plan.interpolation_frames``):

* ``interpolate_key_frames`` False: X+1 frames per consecutive prompt pair at t = j/(X+1), X =
  ``interpolate_x_frames``, then the last prompt alone: (P-1)(X+1)+1 frames (v0.6's count).
* ``interpolate_key_frames`` True: ``key_b - key_a`` frames per pair at t = j/(key_b - key_a), then the last
  prompt: ``key_last - key_first + 1`` frames, so frame n shows prompt key n (v0.6 rendered only the last
  pair).

Fixes of spec 12.1 #11: every pair is rendered, one prompt gives one frame, ``uc`` is interpolated between
the keys' own unconditionals (each key's negative prompt — its ``--neg`` part and negative sub-prompts — is
its own, so negatives are interpolated too; v0.6 used the last prompt's for every frame), and the key images
are saved: the frame at t = 0 of a pair is a plain generation of the pair's first prompt, and the last frame
is the last prompt (see ``key_image_frames``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from deforum.conditioning import Conditioning, interpolate_conditioning
from deforum.errors import SettingsError
from deforum.image.convert import sample_to_uint8
from deforum.image.io import ensure_output_folder
from deforum.plan import RenderPlan, animation_prompt_texts
from deforum.render.output import FrameSink
from deforum.render.steps import check_finite, generation_request

if TYPE_CHECKING:
    from deforum.generate import Generator
    from deforum.render.inputs import RunInputs
    from deforum.settings import RunIdentity, Settings

log = logging.getLogger(__name__)


def key_image_frames(plan: RenderPlan) -> list[int]:
    """The output frame of each prompt's key image, in prompt-key order (frame n is ``{timestring}_{n:05}.png``).

    A key image is the frame at t = 0 of the prompt's pair (the last prompt: the final frame).
    """
    first: dict[int, int] = {}
    for row in plan.rows:
        a, _b, t = row.interpolation
        if t == 0.0:
            first.setdefault(a, row.frame)
    return [first[index] for index in sorted(first)]


def _conditioning_at(keys: list[tuple[Conditioning, Conditioning]], a: int, b: int, t: float,
                     method: str) -> tuple[Conditioning, Conditioning]:
    """(uc, c) at t between key a and key b; exactly key a's at t = 0 (so key images are plain generations)."""
    uc_a, c_a = keys[a]
    if t == 0.0 or a == b:
        return uc_a, c_a
    uc_b, c_b = keys[b]
    return (interpolate_conditioning(uc_a, uc_b, t, method), interpolate_conditioning(c_a, c_b, t, method))


def render_interpolation(settings: Settings, identity: RunIdentity, generator: Generator, plan: RenderPlan,
                         inputs: RunInputs, *, on_frame: Callable[[int, Path], None] | None = None) -> list[Path]:
    """Generate and save every Interpolation frame as ``{timestring}_{n:05}.png``; returns the paths in order.

    ``plan`` is ``make_plan(settings, identity.seed)`` (one row per output frame, all with the run's seed).
    The conditioning (``Conditioning`` values: cross-attention, pooled embedding and extras) blends linearly,
    or by slerp when ``interpolation_method == 'slerp'``. An init (``inputs.init``, with its mask under
    ``use_mask``) is used only with ``use_init``, then ``strength`` applies, for every frame.
    """
    method = settings.interpolation.interpolation_method
    if method not in ("linear", "slerp"):
        raise SettingsError(f"interpolation_method: {method!r} is not allowed; choose 'linear' or 'slerp'")
    # each key's full prompt (its --neg part and animation_prompts_positive / _negative included), as planned
    texts = [text for _key, text in sorted(animation_prompt_texts(settings).items())]
    outdir = ensure_output_folder(identity.outdir)

    init = inputs.init if settings.init.use_init else None
    if settings.init.use_init and init is None:
        raise SettingsError("init_image: is empty but use_init is on; give an image path or URL")
    mask = inputs.mask_of(init) if init is not None and settings.init.use_mask else None
    request = dataclasses.replace(
        generation_request(settings, identity.seed), frame=0,
        strength=settings.init.strength if init is not None else 0.0,
        init_image=None if init is None else init.image, mask=mask)

    prompts = settings.prompts
    # Each key's own (uc, c), at frame 0 as v0.6 encoded them ('t' in back-ticked weights is 0).
    keys = [generator.prompt_conditioning(text, frame=0, prompt_weighting=prompts.prompt_weighting,
                                          normalize_prompt_weights=prompts.normalize_prompt_weights,
                                          log_weighted_subprompts=prompts.log_weighted_subprompts)
            for text in texts]
    for index, frame in enumerate(key_image_frames(plan)):
        log.info("Interpolation: key image of prompt %d (%r) is frame %05d", index, texts[index][:60], frame)

    sink = FrameSink(outdir, identity.timestring, on_frame=on_frame)
    for row in plan.rows:
        a, b, t = row.interpolation
        uc, c = _conditioning_at(keys, a, b, t, method)
        step_dir = None
        if settings.output.save_sample_per_step:
            step_dir = sink.step_dir(row.seed)  # the fixed seed reuses one folder, as v0.6
        sample = generator.generate(dataclasses.replace(request, seed=row.seed, prompt=row.prompt, uc=uc, c=c,
                                                        step_dir=step_dir))
        check_finite(sample, row.frame, "generated image")
        sink.write_frame(row.frame, sample_to_uint8(sample))
    return sink.written


__all__ = ["key_image_frames", "render_interpolation"]
