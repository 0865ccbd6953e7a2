"""Contrast gain and init noise, the two steps between colour coherence and img2img (spec 6.4).

The init noise is v0.6's Gaussian noise (``noise_type`` "uniform": the same in every pixel) or, as in A1111
Deforum, that noise shaped by 2D Perlin noise ("perlin"): each pixel's normals are scaled by ``(P + 1) / 2``,
so the noise comes in soft blobs of the size the Perlin lattice sets instead of evenly everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from deforum.errors import SettingsError

NOISE_TYPES = ("uniform", "perlin")

# The most gradients one octave may draw (a lattice of 2048 x 2048 points): far past one cell per pixel of any
# image size, so only settings whose finest octave is pure per-pixel noise reach it.
MAX_PERLIN_LATTICE_POINTS = 1 << 22


@dataclass(frozen=True)
class PerlinParams:
    """The Perlin noise of ``noise_type`` "perlin": ``res_w`` lattice cells across the width and ``res_h`` down
    the height (any positive number, need not divide the size), ``octaves`` layers each at twice the frequency
    of the last, each weighted ``persistence`` times the one before (the fields ``perlin_w``, ``perlin_h``,
    ``perlin_octaves``, ``perlin_persistence``)."""

    res_w: float
    res_h: float
    octaves: int
    persistence: float


def apply_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """``image * contrast`` in float64: a gain about black, not clipped (values may exceed 255)."""
    return image.astype(np.float64) * float(contrast)


def add_noise(sample: torch.Tensor, noise_amount: float, generator: torch.Generator | None = None,
              noise_type: str = "uniform", perlin: PerlinParams | None = None) -> torch.Tensor:
    """``sample + noise_amount * N(0, 1)``, one independent normal per pixel and channel.

    The normals are float32 draws from a CPU generator (``generator``, or torch's default one as in v0.6),
    so the stream is the same on every device; they are drawn even when ``noise_amount`` is 0, as v0.6 did,
    so later draws from that generator are unchanged. A float16 sample plus float32 noise is float32.

    ``noise_type`` "perlin" multiplies the normals of each pixel (all channels alike) by ``(P + 1) / 2``,
    ``P = perlin_noise(...)`` with ``perlin``'s lattice, its gradients drawn from the same generator after
    the normals. "uniform" (the default) is v0.6's noise, bit for bit.
    """
    if noise_type not in NOISE_TYPES:
        raise SettingsError(f"noise_type: {noise_type!r} is not a noise type; allowed: {', '.join(NOISE_TYPES)}")
    noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32, device="cpu")
    if noise_type == "perlin":
        if perlin is None:
            raise TypeError("add_noise: noise_type 'perlin' needs perlin=PerlinParams(...)")
        height, width = sample.shape[-2], sample.shape[-1]
        p = perlin_noise(height, width, perlin.res_w, perlin.res_h, perlin.octaves, perlin.persistence, generator)
        noise = noise * ((p + 1) / 2).to(torch.float32)
    if sample.device.type == "cpu" and sample.dtype == torch.float16:
        # The same float32 arithmetic as torch's half + float promotion, ~10x faster on CPU in numpy.
        scaled = noise.numpy() * np.float32(noise_amount)
        return torch.from_numpy(sample.numpy().astype(np.float32) + scaled)
    return sample + noise.to(sample.device) * noise_amount


def perlin_noise(height: int, width: int, res_w: float, res_h: float, octaves: int, persistence: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """2D Perlin noise with octaves, an ``height`` x ``width`` float64 tensor in [-1, 1].

    ``P = sum over o < octaves of persistence**o * perlin_octave(res * 2**o)``, clamped to [-1, 1]. Each
    octave draws its own gradients (``perlin_gradients``) from ``generator``, coarsest first.
    """
    total = torch.zeros(height, width, dtype=torch.float64)
    for octave in range(int(octaves)):
        scale = 2.0 ** octave
        rw, rh = res_w * scale, res_h * scale
        rows, cols = lattice_shape(rw, rh)
        total += persistence ** octave * perlin_octave(height, width, rw, rh, perlin_gradients(rows, cols, generator))
    return total.clamp_(-1.0, 1.0)


def lattice_shape(res_w: float, res_h: float) -> tuple[int, int]:
    """The lattice points one octave needs: ``(ceil(res_h) + 1, ceil(res_w) + 1)`` (rows, columns), so every
    pixel's cell, whose corners are ``floor(pixel * res / size)`` and the next point, is inside it."""
    if not (res_w > 0 and res_h > 0 and math.isfinite(res_w) and math.isfinite(res_h)):
        raise SettingsError(f"perlin_w, perlin_h: {res_w!r}, {res_h!r} must be positive lattice cell counts")
    rows, cols = math.ceil(res_h) + 1, math.ceil(res_w) + 1
    if rows * cols > MAX_PERLIN_LATTICE_POINTS:
        raise SettingsError(
            f"perlin_w, perlin_h, perlin_octaves: an octave of {res_w:g} x {res_h:g} lattice cells needs "
            f"{rows * cols} gradients, more than {MAX_PERLIN_LATTICE_POINTS}; lower perlin_w, perlin_h or "
            f"perlin_octaves (cells smaller than a pixel add nothing but per-pixel noise)")
    return rows, cols


def perlin_gradients(rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random unit gradients at the lattice points: ``rows`` x ``cols`` x 2 float64 ``(gx, gy)``, at angles
    drawn uniformly in [0, 2 pi) from ``generator``."""
    angles = 2 * math.pi * torch.rand((rows, cols), generator=generator, dtype=torch.float64)
    return torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)


def fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's improved-noise blend ``6t^5 - 15t^4 + 10t^3``: 0 at 0, 1 at 1, flat (1st and 2nd derivative 0)
    at both ends so the cells join smoothly."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_octave(height: int, width: int, res_w: float, res_h: float, gradients: torch.Tensor) -> torch.Tensor:
    """One octave of gradient noise over ``height`` x ``width`` pixels from the lattice ``gradients``.

    Pixel ``(row, col)`` sits at lattice point ``(x, y) = (col * res_w / width, row * res_h / height)``; the
    four corners of its cell contribute ``gradient . (point - corner)``, blended with ``fade`` of the offsets
    inside the cell, x first. It is 0 on the lattice points and within +-sqrt(2)/2 everywhere.
    """
    rows, cols = gradients.shape[0], gradients.shape[1]
    x = torch.arange(width, dtype=torch.float64) * res_w / width
    y = torch.arange(height, dtype=torch.float64) * res_h / height
    i, j = x.floor().long(), y.floor().long()
    if int(i.max()) + 1 >= cols or int(j.max()) + 1 >= rows:
        raise ValueError(f"perlin_octave: a {rows}x{cols} lattice is too small for {res_w:g} x {res_h:g} cells")
    u, v = x - i, y - j

    def corner(dj: int, di: int) -> torch.Tensor:
        # the gradients at corner (j + dj, i + di) of every pixel's cell: rows, then columns (HxWx2)
        g = gradients.index_select(0, j + dj).index_select(1, i + di)
        return g[..., 0] * (u - di)[None, :] + g[..., 1] * (v - dj)[:, None]

    fu, fv = fade(u)[None, :], fade(v)[:, None]
    top = torch.lerp(corner(0, 0), corner(0, 1), fu)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), fu)
    return torch.lerp(top, bottom, fv)
