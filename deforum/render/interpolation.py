"""The Interpolation mode (spec animation 8): frames that blend the conditioning from one prompt to the next.

Every frame is a fresh generation with the same (fixed) seed, so the starting noise is identical and only
the conditioning moves. The frame list comes from the render plan (``deforum.plan.interpolation_frames``):

* ``interpolate_key_frames`` False: X+1 frames per consecutive prompt pair at t = j/(X+1), X =
  ``interpolate_x_frames``, then the last prompt alone: (P-1)(X+1)+1 frames (v0.6's count).
* ``interpolate_key_frames`` True: ``key_b - key_a`` frames per pair at t = j/(key_b - key_a), then the last
  prompt: ``key_last - key_first + 1`` frames, so frame n shows prompt key n (v0.6 rendered only the last
  pair).

Fixes of spec 12.1 #11: every pair is rendered, one prompt gives one frame, ``uc`` is interpolated between
the keys' own unconditionals (each key's negative sub-prompts are its own; v0.6 used the last prompt's for
every frame), and the key images are saved: the frame at t = 0 of a pair is a plain generation of the
pair's first prompt, and the last frame is the last prompt (see ``key_image_frames``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from deforum.args import as_dict, check_mask, get_value
from deforum.conditioning import interpolate_conditioning
from deforum.errors import SettingsError
from deforum.image.convert import sample_to_uint8
from deforum.image.io import ensure_output_folder, load_init_image, open_image
from deforum.plan import RenderPlan, make_plan
from deforum.render.output import FrameSink
from deforum.render.steps import check_finite

log = logging.getLogger(__name__)




def interpolation_plan(args: Any, anim_args: Any, animation_prompts: Mapping[Any, str]) -> RenderPlan:
    """The render plan of an Interpolation run (one row per output frame, all with ``args.seed``)."""
    return make_plan(args, as_dict(anim_args) | {"animation_mode": "Interpolation"}, animation_prompts)


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


def _conditioning_at(keys: list[tuple[torch.Tensor, torch.Tensor]], a: int, b: int, t: float,
                     method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uc, c) at t between key a and key b; exactly key a's at t = 0 (so key images are plain generations)."""
    uc_a, c_a = keys[a]
    if t == 0.0 or a == b:
        return uc_a, c_a
    uc_b, c_b = keys[b]
    return (interpolate_conditioning(uc_a, uc_b, t, method), interpolate_conditioning(c_a, c_b, t, method))


def render_interpolation(args: Any, anim_args: Any, animation_prompts: Mapping[Any, str], generator: Any, *,
                         plan: RenderPlan | None = None, on_frame: Callable[[int, Path], None] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Generate and save every Interpolation frame as ``{timestring}_{n:05}.png``; returns the paths in order.

    ``generator`` is a ``deforum.generate.Generator`` (it needs ``conditioning`` and the call). The
    conditioning blends linearly, or by slerp when ``anim_args.interpolation_method == 'slerp'``. An init is
    used only with ``use_init`` (then ``args.strength`` applies), for every frame. ``plan`` is
    ``interpolation_plan`` of the same settings when the caller already made it.
    """
    from deforum.generate import generation_kwargs

    method = str(get_value(anim_args, "interpolation_method", "linear") or "linear")
    if method not in ("linear", "slerp"):
        raise SettingsError(f"interpolation_method: {method!r} is not allowed; choose 'linear' or 'slerp'")
    if plan is None:
        plan = interpolation_plan(args, anim_args, animation_prompts)
    texts = [text for _key, text in sorted((int(k), str(v)) for k, v in animation_prompts.items())]
    W, H = int(get_value(args, "W")), int(get_value(args, "H"))
    timestring = str(get_value(args, "timestring"))
    outdir = ensure_output_folder(get_value(args, "outdir"))

    # Read every input before the first generation.
    init = mask = None
    use_init = bool(get_value(args, "use_init", False))
    use_mask = bool(get_value(args, "use_mask", False))
    check_mask(args)
    if use_init:
        init_source = get_value(args, "init_image")
        if not init_source:
            raise SettingsError("init_image: is empty but use_init is on; give an image path or URL")
        use_alpha = use_mask and bool(get_value(args, "use_alpha_as_mask", False))
        init, alpha = load_init_image(init_source, W, H, use_alpha_as_mask=use_alpha)
        if use_mask:
            mask = alpha if use_alpha else open_image(get_value(args, "mask_file"), field="mask_file")
    strength = min(max(float(get_value(args, "strength", 0.0) or 0.0), 0.0), 1.0) if use_init else 0.0

    call = generation_kwargs(args)
    weighting = {name: call[name] for name in
                 ("prompt_weighting", "normalize_prompt_weights", "log_weighted_subprompts") if name in call}
    # Each key's own (uc, c), at frame 0 as v0.6 encoded them ('t' in back-ticked weights is 0).
    keys = [generator.conditioning(text, frame=0, **weighting) for text in texts]
    for index, frame in enumerate(key_image_frames(plan)):
        log.info("Interpolation: key image of prompt %d (%r) is frame %05d", index, texts[index][:60], frame)

    sink = FrameSink(outdir, timestring, on_frame=on_frame)
    for row in plan.rows:
        a, b, t = row.interpolation
        uc, c = _conditioning_at(keys, a, b, t, method)
        step_dir = None
        if get_value(args, "save_sample_per_step", False):
            step_dir = sink.step_dir(row.seed)  # the fixed seed reuses one folder, as v0.6
        sample = generator(**call | {"strength": strength}, seed=row.seed, prompt=row.prompt, frame=0,
                           uc=uc, c=c, init_image=init, mask=mask, step_dir=step_dir, progress=progress)
        check_finite(sample, row.frame, "generated image")
        sink.write_frame(row.frame, sample_to_uint8(sample))
    return sink.written


__all__ = ["interpolation_plan", "key_image_frames", "render_interpolation"]
