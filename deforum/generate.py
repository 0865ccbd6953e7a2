"""The Generator: one image from one frozen ``GenerationRequest`` (conditioning, init, mask, strength,
sampler, seed), through ``Generator.generate(request)``.

It never reads settings: ``deforum.render.steps.generation_request(settings, seed)`` builds a run's base
request, and the render modes vary it per image with ``dataclasses.replace`` (seed, prompt, init, mask,
strength, ...). The order of one call follows spec generation 0:

1. seed a CPU ``torch.Generator`` with ``rng_seed(seed)``: every random draw of the call comes from it,
   on the CPU, then moves to the model's device, so the same settings give the same image on any device
   (v0.6 drew from the global CUDA generator);
2. encode the init (a posterior **sample** drawn from that generator) and multiply by ``scale_factor``;
3. ``strength_0_no_init``: strength 0 when there is no init;
4. build the latent mask;
5. (uc, c) ``Conditioning`` values from the prompt through the model family (cached per text) unless
   given; ``scale <= 1`` runs the conditional pass only (no guidance: the negative prompt is not used);
6. sample (strength -> steps, CFG, latent pinning under the mask, per-step callbacks);
7. decode, and the final pixel overlay under the mask (``overlay_mask``, ``mask_overlay_blur``).

The result is the decoded sample, 1 x 3 x H x W float32 in [-1, 1] (not clamped), **on the CPU**.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from deforum.conditioning import Conditioning, ConditioningCache, CondLike, get_uc_and_c, prompt_conditioning
from deforum.errors import SettingsError
from deforum.image import convert, masks
from deforum.models.family import DiffusionModel, ModelFamily, family_of, latent_format_of
from deforum.plan import rng_seed
from deforum.prompts import split_negative

log = logging.getLogger(__name__)

DenoiserWrapper = Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]
StepCallback = Callable[[dict], None]


def image_to_sample(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """An RGB image (PIL, uint8 H x W x 3, or a 1x3xHxW tensor already in [-1, 1]) as a float32 sample.

    v0.6 quantised init pixels to float16 here; float32 is kept (spec 11.1 #24).
    """
    if isinstance(image, torch.Tensor):
        sample = image.float()
        return sample if sample.ndim == 4 else sample[None]
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise SettingsError(f"init image: expected RGB uint8 H x W x 3, got {array.dtype} {array.shape}")
    return convert.image_to_sample(array, torch.float32)


def latent_to_uint8(model: DiffusionModel, latent: torch.Tensor) -> np.ndarray:
    """Full VAE decode of a latent to uint8 H x W x 3 with v0.6's truncation (spec 7.2)."""
    with torch.no_grad():
        image = model.decode_first_stage(latent.to(model.device, model.dtype))
    return convert.sample_to_uint8(image)


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one image is made from (``Generator.generate``); vary it with ``dataclasses.replace``.

    Conditioning: ``uc``/``c`` if given (``Conditioning`` values or cross-attention tensors; ``c`` alone: uc
    from ``prompt``, as Interpolation mode), else from ``prompt`` at ``frame``. Init, first available wins:
    ``init_latent`` (scaled latent), ``init_sample`` (1x3xHxW in [-1, 1]), ``init_image`` (RGB). ``mask``
    (white keeps the init) needs an init; ``overlay_original`` is the image composited back under the overlay
    mask (default: the init). ``callback(info)`` gets the sampler's per-step dict; ``progress(step, total)``
    counts steps; ``step_dir`` receives ``x_{step:05}.png`` and ``x0_pred_{step:05}.png`` per step
    (``save_sample_per_step``); ``show_step(label, image)`` previews them (``show_sample_per_step``).
    ``keep_on_device``: the image stays on the model's device (no copy to the host; not with a mask's overlay).
    """

    seed: int
    W: int
    H: int
    prompt: str | None = None
    frame: int = 0
    uc: CondLike | None = None
    c: CondLike | None = None
    init_image: Image.Image | np.ndarray | None = None
    init_sample: torch.Tensor | None = None
    init_latent: torch.Tensor | None = None
    overlay_original: torch.Tensor | None = None
    mask: Image.Image | None = None
    strength: float = 0.0
    strength_0_no_init: bool = True
    steps: int = 50
    sampler: str = "euler"
    scale: float = 7.0
    ddim_eta: float = 0.0
    dynamic_threshold: float | None = None
    static_threshold: float | None = None
    karras: bool = False
    cond_uncond_sync: bool = True
    prompt_weighting: bool = True
    normalize_prompt_weights: bool = True
    log_weighted_subprompts: bool = False
    invert_mask: bool = False
    mask_brightness_adjust: float = 1.0
    mask_contrast_adjust: float = 1.0
    overlay_mask: bool = True
    mask_overlay_blur: float = 5.0
    callback: StepCallback | None = None
    progress: Callable[[int, int], None] | None = None
    step_dir: str | Path | None = None
    show_step: Callable[[str, np.ndarray], None] | None = None
    keep_on_device: bool = False  # return the image on the model's device (the device frame loop)


class _Guided:
    """The guided denoiser handed to the sampler: a callable plus the base denoiser's sigma schedule."""

    def __init__(self, fn: Callable[..., torch.Tensor], base: Any):
        self.fn = fn
        self.base = base

    def get_sigmas(self, n: int, **kwargs) -> torch.Tensor:
        return self.base.get_sigmas(n, **kwargs)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(x, sigma, **kwargs)

    def __getattr__(self, name: str) -> Any:  # schedule attributes some samplers read (ddim/plms)
        return getattr(self.base, name)


class Generator:
    """Turns a loaded model into images: ``generate(GenerationRequest)``, the one way in.

    The model's family (``model.family``) encodes prompts into ``Conditioning`` values and gives the latent
    format. ``denoiser_wrapper(denoiser) -> denoiser`` wraps the guided (CFG) denoiser, e.g. for gradient
    conditioning; it gets and returns ``D(x, sigma, **extra_args)``.
    """

    def __init__(self, model: DiffusionModel, *, denoiser_wrapper: DenoiserWrapper | None = None,
                 cache_size: int = 64, progress: Callable[[int, int], None] | None = None):
        from deforum.sampling.denoisers import make_denoiser

        self.model = model
        self.family: ModelFamily = family_of(model)
        self.denoiser = make_denoiser(model)
        self.denoiser_wrapper = denoiser_wrapper
        self.progress = progress  # the default per-step hook of every call, e.g. a progress bar over steps
        self.encode = ConditioningCache(model, maxsize=cache_size, encode_prompt=self.family.encode_prompt)
        self.last_latent: torch.Tensor | None = None  # the latent of the latest call, before decoding

    # -- pieces of one call, each usable alone ------------------------------------------------------------

    def prompt_conditioning(self, prompt: str, *, frame: int = 0, prompt_weighting: bool = True,
                            normalize_prompt_weights: bool = True,
                            log_weighted_subprompts: bool = False) -> tuple[Conditioning, Conditioning]:
        """(uc, c) ``Conditioning`` values for a prompt at a frame (spec 2.2), encodings cached per text."""
        uc, c = prompt_conditioning(prompt, self.encode.conditioning, frame=frame, prompt_weighting=prompt_weighting,
                                    normalize_prompt_weights=normalize_prompt_weights,
                                    log_weighted_subprompts=log_weighted_subprompts)
        return Conditioning.of(uc), Conditioning.of(c)

    def conditioning(self, prompt: str, *, frame: int = 0, prompt_weighting: bool = True,
                     normalize_prompt_weights: bool = True,
                     log_weighted_subprompts: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(uc, c) cross-attention tensors for a prompt at a frame: the older form, which the Interpolation
        mode still takes (a family's pooled embedding and extras are not in it; ``prompt_conditioning`` has them).
        """
        return get_uc_and_c(prompt, self.encode, frame=frame, prompt_weighting=prompt_weighting,
                            normalize_prompt_weights=normalize_prompt_weights,
                            log_weighted_subprompts=log_weighted_subprompts)

    def encode_image(self, sample: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A sample in [-1, 1] -> scaled latent: a posterior sample (CPU generator) x scale_factor."""
        model = self.model
        with torch.no_grad():
            posterior = model.encode_first_stage(sample.to(model.device, model.dtype))
            latent = posterior.sample(generator)
        return latent.float() * float(model.scale_factor)

    def decode(self, latent: torch.Tensor, on_device: bool = False) -> torch.Tensor:
        with torch.no_grad():
            image = self.model.decode_first_stage(latent.to(self.model.device, self.model.dtype)).float()
        return image if on_device else image.cpu()

    # -- one image -----------------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> torch.Tensor:
        """Generate one image; returns the decoded sample 1x3xHxW float32 in [-1, 1] on the CPU (on the model's
        device with ``keep_on_device``).

        See ``GenerationRequest`` for what each field does.
        """
        r = request  # the fields as locals (strength, init_latent, uc and c are replaced below; r is not)
        seed, W, H, prompt, frame, uc, c = r.seed, r.W, r.H, r.prompt, r.frame, r.uc, r.c
        init_image, init_sample, init_latent, overlay_original = r.init_image, r.init_sample, r.init_latent, \
            r.overlay_original
        mask, strength, strength_0_no_init = r.mask, r.strength, r.strength_0_no_init
        steps, sampler, scale, ddim_eta, karras = r.steps, r.sampler, r.scale, r.ddim_eta, r.karras
        dynamic_threshold, static_threshold, cond_uncond_sync = r.dynamic_threshold, r.static_threshold, \
            r.cond_uncond_sync
        weighting = dict(prompt_weighting=r.prompt_weighting, normalize_prompt_weights=r.normalize_prompt_weights,
                         log_weighted_subprompts=r.log_weighted_subprompts)
        adjust = dict(mask_brightness_adjust=r.mask_brightness_adjust, mask_contrast_adjust=r.mask_contrast_adjust,
                      invert_mask=r.invert_mask)
        overlay_mask, mask_overlay_blur = r.overlay_mask, r.mask_overlay_blur
        callback, progress, step_dir, show_step = r.callback, r.progress, r.step_dir, r.show_step

        from deforum.sampling.denoisers import CFGDenoiser
        from deforum.sampling.run import get_sampler, sample, schedule_for, steps_to_run

        get_sampler(sampler)
        seed = int(seed)
        if seed < 0:
            raise SettingsError(f"seed: {seed} must be resolved to a value >= 0 before generating")
        latent_format = latent_format_of(self.model)
        f = latent_format.downscale
        if W <= 0 or H <= 0 or W % f or H % f:
            raise SettingsError(f"W, H: {W} x {H} must be positive multiples of {f}")
        if not 0.0 <= float(strength) <= 1.0:
            raise SettingsError(f"strength: {strength} must lie in [0, 1]")

        generator = torch.Generator("cpu").manual_seed(rng_seed(seed))

        original = None
        if init_latent is None:
            source = init_sample if init_sample is not None else init_image
            if source is not None:
                original = image_to_sample(source)
                if tuple(original.shape[-2:]) != (H, W):
                    raise SettingsError(f"init image: is {original.shape[-1]} x {original.shape[-2]}, "
                                        f"expected W x H = {W} x {H}")
                init_latent = self.encode_image(original, generator)
        else:
            init_latent = init_latent.float()

        if init_latent is None and strength > 0 and strength_0_no_init:
            strength = 0.0  # strength_0_no_init: txt2img without an init (v0.6 mutated args; this does not)

        latent_mask = pixel_mask = None
        if mask is not None:
            if init_latent is None:
                raise SettingsError("use_mask: a mask needs an init image (use_init with an init_image)")
            latent_mask = masks.prepare_mask(mask, W, H, f=f, channels=init_latent.shape[1], **adjust)
            if overlay_mask:
                pixel_mask = masks.overlay_mask(mask, W, H, mask_overlay_blur=mask_overlay_blur, **adjust)

        if c is None or uc is None:
            if prompt is None:
                raise SettingsError("prompt: a prompt (or the conditioning uc and c) is needed")
            prompt_uc, prompt_c = self.prompt_conditioning(prompt, frame=frame, **weighting)
            uc = prompt_uc if uc is None else uc
            c = prompt_c if c is None else c
        device = torch.device(self.model.device)
        extra_args = {"cond": Conditioning.of(c).to(device),
                      "uncond": None if scale <= 1 else Conditioning.of(uc).to(device),
                      "cond_scale": float(scale)}

        guided: Callable[..., torch.Tensor] = CFGDenoiser(self.denoiser, cond_uncond_sync=cond_uncond_sync,
                                                          dynamic_threshold=dynamic_threshold,
                                                          static_threshold=static_threshold)
        if self.denoiser_wrapper is not None:
            guided = self.denoiser_wrapper(guided)
            begin = getattr(guided, "begin", None)
            if begin is not None:  # e.g. gradient conditioning: the schedule this call runs, and its prompt
                begin(schedule_for(self.denoiser, sampler, steps, strength, karras), sampler=sampler,
                      prompt=None if prompt is None else split_negative(prompt)[0])

        total = steps_to_run(steps, strength)
        step_callback = self._step_callback(callback, progress or self.progress, total, step_dir, show_step)
        f_shape = (1, latent_format.channels, H // f, W // f)
        with torch.no_grad():
            latent = sample(_Guided(guided, self.denoiser), sampler, steps, strength, shape=f_shape,
                            init_latent=None if init_latent is None else init_latent.to(device),
                            mask=None if latent_mask is None else latent_mask.to(device), generator=generator,
                            extra_args=extra_args, callback=step_callback, karras=karras,
                            eta=float(ddim_eta) if sampler == "ddim" else None, device=device)
        image = self.decode(latent, on_device=r.keep_on_device and pixel_mask is None)
        if pixel_mask is not None:
            base = overlay_original if overlay_original is not None else original
            if base is None:  # an init latent without its pixels: decode it to have something to keep
                base = self.decode(init_latent)
            image = masks.overlay(image_to_sample(base).cpu(), image, pixel_mask)
        self.last_latent = latent
        return image

    def _step_callback(self, callback: StepCallback | None, progress: Callable[[int, int], None] | None,
                       total: int, step_dir: str | Path | None,
                       show_step: Callable[[str, np.ndarray], None] | None) -> StepCallback | None:
        hooks: list[StepCallback] = [hook for hook in (callback,) if hook is not None]
        if progress is not None:
            hooks.append(lambda info: progress(int(info["i"]) + 1, total))
        if step_dir is not None or show_step is not None:
            folder = Path(step_dir) if step_dir is not None else None
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)

            def step_images(info: dict) -> None:
                from deforum.image.io import save_png_atomic

                step = int(info["i"])
                for label, latent in (("x0_pred", info["denoised"]), ("x", info["x"])):
                    image = latent_to_uint8(self.model, latent)
                    if folder is not None:
                        save_png_atomic(image, folder / f"{label}_{step:05}.png")
                    if show_step is not None:
                        show_step(label, image)
            hooks.append(step_images)
        if not hooks:
            return None

        def run_all(info: dict) -> None:
            for hook in hooks:
                hook(info)
        return run_all


__all__ = ["GenerationRequest", "Generator", "image_to_sample", "latent_to_uint8"]
