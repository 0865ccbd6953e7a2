"""Init-image masks: the latent mask used while sampling and the blurred pixel overlay mask (spec 5.3, 5.6).

Polarity, as the guide says and v0.6 does: **white keeps the init image, black is regenerated**.

``mask_brightness_adjust`` and ``mask_contrast_adjust`` each do what their name says here; v0.6 passed them
to each other's slot (spec 11.1 #1), so an old settings file with only one of them != 1 gets the other
adjustment than it got in v0.6.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance

from deforum.errors import MediaError


def mask_array(
    mask: Image.Image,
    W: int,
    H: int,
    *,
    mask_brightness_adjust: float = 1.0,
    mask_contrast_adjust: float = 1.0,
    invert_mask: bool = False,
) -> np.ndarray:
    """The mask as float32 H x W in [0, 1] (v0.6 ``prepare_mask`` before tiling).

    Lanczos resize to W x H, grey (ITU-R 601 luma, alpha ignored), brightness then contrast with PIL's
    ``ImageEnhance`` (factor 1 = unchanged), /255, optional inversion, clip.
    """
    grey = mask if mask.mode == "L" else mask.convert("RGBA")  # v0.6 read masks as RGBA before resizing
    if grey.size != (W, H):
        grey = grey.resize((W, H), Image.Resampling.LANCZOS)
    grey = grey.convert("L")
    if mask_brightness_adjust != 1:
        grey = ImageEnhance.Brightness(grey).enhance(mask_brightness_adjust)
    if mask_contrast_adjust != 1:
        grey = ImageEnhance.Contrast(grey).enhance(mask_contrast_adjust)
    values = np.asarray(grey, dtype=np.float32) / 255.0
    if invert_mask:
        values = 1.0 - values
    return np.clip(values, 0.0, 1.0)


def prepare_mask(
    mask: Image.Image,
    W: int,
    H: int,
    *,
    f: int = 8,
    channels: int = 4,
    mask_brightness_adjust: float = 1.0,
    mask_contrast_adjust: float = 1.0,
    invert_mask: bool = False,
) -> torch.Tensor:
    """The latent mask ``[1, channels, H/f, W/f]`` float32 for per-step latent pinning (spec 5.3, 5.4)."""
    values = mask_array(
        mask,
        W // f,
        H // f,
        mask_brightness_adjust=mask_brightness_adjust,
        mask_contrast_adjust=mask_contrast_adjust,
        invert_mask=invert_mask,
    )
    return torch.from_numpy(values)[None, None].repeat(1, channels, 1, 1).contiguous()


def overlay_mask(
    mask: Image.Image,
    W: int,
    H: int,
    *,
    mask_overlay_blur: float = 5.0,
    mask_brightness_adjust: float = 1.0,
    mask_contrast_adjust: float = 1.0,
    invert_mask: bool = False,
) -> torch.Tensor:
    """The full-resolution pixel overlay mask ``[1, 1, H, W]`` float32 (spec 5.6).

    Binarised as v0.6 (every value below the mask's maximum becomes 0), then a Gaussian blur of sigma
    ``mask_overlay_blur`` (reflect at the borders, truncated at 4 sigma, as SciPy's default).
    """
    from scipy.ndimage import gaussian_filter

    values = mask_array(
        mask,
        W,
        H,
        mask_brightness_adjust=mask_brightness_adjust,
        mask_contrast_adjust=mask_contrast_adjust,
        invert_mask=invert_mask,
    )
    values = np.where(values < values.max(), 0.0, values).astype(np.float32)
    if mask_overlay_blur > 0:
        values = gaussian_filter(values, sigma=float(mask_overlay_blur), mode="reflect", truncate=4.0)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]


def overlay(original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``original * M + generated * (1 - M)``: white (1) keeps the original pixels, black the generated."""
    mask = mask.to(device=generated.device, dtype=torch.float32)
    return original.to(device=generated.device, dtype=torch.float32) * mask + generated.float() * (1.0 - mask)


def check_alpha_mask(alpha: Image.Image, field: str = "use_alpha_as_mask") -> None:
    """An alpha mask that is all opaque or all transparent would keep or repaint everything (v0.6 raised)."""
    low, high = alpha.getextrema()
    if low == high and low in (0, 255):
        state = "fully opaque (everything would be kept)" if low == 255 else "fully transparent"
        raise MediaError(
            f"{field}: the init image's alpha channel is {state}; give an init image with transparency "
            "or turn use_alpha_as_mask off"
        )


__all__ = ["check_alpha_mask", "mask_array", "overlay", "overlay_mask", "prepare_mask"]
