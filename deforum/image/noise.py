"""Contrast gain and init noise, the two steps between colour coherence and img2img (spec 6.4)."""

from __future__ import annotations

import numpy as np
import torch


def apply_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """``image * contrast`` in float64: a gain about black, not clipped (values may exceed 255)."""
    return image.astype(np.float64) * float(contrast)


def add_noise(sample: torch.Tensor, noise_amount: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``sample + noise_amount * N(0, 1)``, one independent normal per pixel and channel.

    The normals are float32 draws from a CPU generator (``generator``, or torch's default one as in v0.6),
    so the stream is the same on every device; they are drawn even when ``noise_amount`` is 0, as v0.6 did,
    so later draws from that generator are unchanged. A float16 sample plus float32 noise is float32.
    """
    noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32, device="cpu")
    if sample.device.type == "cpu" and sample.dtype == torch.float16:
        # The same float32 arithmetic as torch's half + float promotion, ~10x faster on CPU in numpy.
        scaled = noise.numpy() * np.float32(noise_amount)
        return torch.from_numpy(sample.numpy().astype(np.float32) + scaled)
    return sample + noise.to(sample.device) * noise_amount
