"""Gradient conditioning (the guide's "Gradient Conditioning in Deforum"; spec generation 4.2 and 6).

    guide = make_denoiser_wrapper(settings, model)   # None when every scale is 0
    generator = Generator(model, denoiser_wrapper=guide)

``make_denoiser_wrapper`` takes the typed settings (``deforum.settings.resolve`` has checked them) and loads
everything the losses need (colormatch / init_mse images, CLIP, the aesthetics head) before any diffusion
starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from deforum.errors import SettingsError
from deforum.guidance import losses
from deforum.guidance.wrapper import (
    DECODE_METHODS,
    ConditionedDenoiser,
    GradientGuide,
    GuideLoss,
    check_inject_timing,
    inject_steps,
    threshold_gradient,
)

if TYPE_CHECKING:
    from deforum.settings import Settings

# Every *_scale field, in v0.6's loss order (spec 6.1).
SCALE_FIELDS = ("clip_scale", "blue_scale", "mean_scale", "exposure_scale", "var_scale", "init_mse_scale",
                "colormatch_scale", "aesthetics_scale")
# The colormatch image is downscaled to this longest side before k-means (linear: before the VAE encode,
# which v0.6 ran on the full native-resolution image).
PALETTE_MAX_SIDE = {"autoencoder": 256, "linear": 512}


def make_decode(model: Any, decode_method: str):
    """``linear`` (v0.6's 4x3 matrix at latent size) or ``autoencoder`` (the full differentiable VAE)."""
    if decode_method == "linear":
        return losses.linear_decode
    if decode_method == "autoencoder":
        return lambda latent: model.decode_first_stage(latent).float()
    raise SettingsError(f"decode_method: {decode_method!r} is not one of {', '.join(map(repr, DECODE_METHODS))}")


def _to_sample(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def _linear_of_image(model: Any, sample: torch.Tensor) -> torch.Tensor:
    """The linear decode of an image's latent (posterior mean x scale_factor), as the guidance sees it."""
    with torch.no_grad():
        latent = model.encode_first_stage(sample.to(model.device)).mode().float() * float(model.scale_factor)
    return losses.linear_decode(latent)


def init_mse_target(model: Any, source: str, W: int, H: int, decode_method: str) -> torch.Tensor:
    """The init_mse_image at W x H in [-1, 1] (autoencoder), or its linear-decoded latent (linear)."""
    from deforum.image.io import load_init_image

    image, _ = load_init_image(source, W, H, field="init_mse_image")
    sample = _to_sample(image)
    return _linear_of_image(model, sample) if decode_method == "linear" else sample


def palette_of(model: Any, source: str | Image.Image, n_colors: int, decode_method: str,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(palette [n, 3], pixel counts [n]) of colormatch_image by k-means, on the downscaled image
    (autoencoder) or on the linear decode of its latent (linear), as the loss sees images."""
    from deforum.image.io import open_image

    image = source if isinstance(source, Image.Image) else open_image(source, field="colormatch_image")
    image = image.convert("RGB")
    factor = 8 if decode_method == "linear" else 1
    scale = min(1.0, PALETTE_MAX_SIDE[decode_method] / max(image.size))
    w, h = (max(factor, int(side * scale) // factor * factor) for side in image.size)
    image = image.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != image.size else image
    pixels = _to_sample(image)
    if decode_method == "linear":
        pixels = _linear_of_image(model, pixels).cpu()
    return losses.kmeans(pixels[0].flatten(1).T, n_colors)


def make_denoiser_wrapper(settings: Settings, model: Any, *, prompt: str | None = None) -> GradientGuide | None:
    """The gradient-conditioning wrapper for a Generator, or None when every ``*_scale`` is 0.

    Images, CLIP and the aesthetics head are loaded here (the head from ``settings.model.models_path``), so a
    missing image, a bad URL or an offline download fails before sampling, as a DeforumError. ``prompt`` is
    the text the CLIP loss compares with (v0.6's runtime ``args.prompt``; None: the loss's own default).
    """
    g = settings.guidance
    scales = {name: float(getattr(g, name)) for name in SCALE_FIELDS}
    if all(value == 0 for value in scales.values()):
        return None
    W, H = settings.image.W, settings.image.H
    device = torch.device(model.device)

    clip = None
    if scales["clip_scale"] or scales["aesthetics_scale"]:
        from deforum.guidance import clip as clip_module

        clip_module.arch_of(g.clip_name)  # a bad name fails before anything else loads
        if scales["aesthetics_scale"]:
            from deforum.guidance.aesthetics import head_entry

            head_entry(g.clip_name)
        dtype = model.dtype if device.type == "cuda" else torch.float32
        clip = clip_module.load_clip(g.clip_name, device, dtype)

    fns: dict[str, Any] = {
        "blue_scale": losses.blue_loss,
        "mean_scale": losses.mean_loss,
        "var_scale": losses.var_loss,
    }
    if scales["clip_scale"]:
        from deforum.guidance.clip import ClipLoss

        fns["clip_scale"] = ClipLoss(clip, cutn=g.cutn, cut_pow=g.cut_pow, prompt=prompt or None)
    if scales["exposure_scale"]:
        target = g.exposure_target
        fns["exposure_scale"] = lambda x: losses.exposure_loss(x, target)
    if scales["init_mse_scale"]:
        if not g.init_mse_image:
            raise SettingsError("init_mse_image: init_mse_scale is not 0, so an image (path or URL) is needed")
        mse_target = init_mse_target(model, g.init_mse_image, W, H, g.decode_method)
        fns["init_mse_scale"] = lambda x: losses.init_mse_loss(x, mse_target)
    if scales["colormatch_scale"]:
        if not g.colormatch_image:
            raise SettingsError("colormatch_image: colormatch_scale is not 0, so an image (path or URL) is needed")
        palette, counts = palette_of(model, g.colormatch_image, g.colormatch_n_colors, g.decode_method)
        fns["colormatch_scale"] = losses.ColorMatchLoss(palette.to(device), counts, g.ignore_sat_weight)
    if scales["aesthetics_scale"]:
        from deforum.guidance.aesthetics import AestheticsLoss, load_head

        head = load_head(g.clip_name, settings.model.models_path, device)
        fns["aesthetics_scale"] = AestheticsLoss(clip, head)

    guide_losses = [GuideLoss(name, fns[name], scales[name]) for name in SCALE_FIELDS if scales[name]]
    timing = g.grad_inject_timing
    return GradientGuide(
        guide_losses, make_decode(model, g.decode_method),
        gradient_wrt=g.gradient_wrt, gradient_add_to=g.gradient_add_to, grad_threshold_type=g.grad_threshold_type,
        clamp_grad_threshold=g.clamp_grad_threshold, clamp_start=g.clamp_start, clamp_stop=g.clamp_stop,
        grad_inject_timing=list(timing) if isinstance(timing, tuple) else timing, prompt=prompt or None)


__all__ = [
    "SCALE_FIELDS", "ConditionedDenoiser", "GradientGuide", "GuideLoss", "check_inject_timing", "inject_steps",
    "init_mse_target", "make_decode", "make_denoiser_wrapper", "palette_of", "threshold_gradient",
]
