"""The gradient-conditioning losses (spec generation 6.2-6.7): small functions of the decoded prediction.

Every loss takes ``x``, the decoded x0 prediction ``[B, 3, h, w]`` in about [-1, 1] (latent size for the
``linear`` decode, image size for ``autoencoder``), and returns a scalar. Every loss is a mean over pixels
(v0.6's magnitudes, which users tuned their ``*_scale`` values against). The wrapper multiplies each by
its scale and sums them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# v0.6's latent -> RGB matrix for the `linear` decode (spec 6.10): rows are latent channels, columns R, G, B.
LINEAR_DECODE_MATRIX = torch.tensor([
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
])

BLUE_TARGET = 0.9  # in [-1, 1] space (spec 6.5)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def linear_decode(latent: torch.Tensor) -> torch.Tensor:
    """Scaled latent [B, 4, h, w] -> RGB [B, 3, h, w] with v0.6's per-pixel matrix (differentiable)."""
    matrix = LINEAR_DECODE_MATRIX.to(latent.device, latent.dtype)
    return torch.einsum("bchw,cr->brhw", latent, matrix)


def mean_loss(x: torch.Tensor) -> torch.Tensor:
    """mean(|x|): pushes pixels towards 0, mid-grey (``mean_scale``)."""
    return x.abs().mean()


def var_loss(x: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over all elements (``var_scale``)."""
    return x.var()


def exposure_loss(x: torch.Tensor, target: float) -> torch.Tensor:
    """mean(|x - target|) (``exposure_scale`` with ``exposure_target`` in [-1, 1])."""
    return (x - target).abs().mean()


def blue_loss(x: torch.Tensor) -> torch.Tensor:
    """mean(|blue - 0.9|) on the last channel (``blue_scale``)."""
    return (x[:, -1] - BLUE_TARGET).abs().mean()


def init_mse_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((x - target)^2) (``init_mse_scale``); the target is resized to x's size when they differ."""
    target = target.to(x.device, x.dtype)
    if target.shape[-2:] != x.shape[-2:]:
        target = torch.nn.functional.interpolate(target, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return ((x - target) ** 2).mean()


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luminance 0.2989 R + 0.587 G + 0.114 B, broadcast back to 3 channels."""
    weights = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


def desaturate(x: torch.Tensor, ignore_sat_weight: float | None) -> torch.Tensor:
    """``w * x + (1 - w) * gray(x)`` clamped to [-1, 1]; None leaves x as it is (spec 6.7)."""
    if ignore_sat_weight is None:
        return x
    w = float(ignore_sat_weight)
    return (w * x + (1 - w) * gray(x)).clamp(-1, 1)


def kmeans(points: torch.Tensor, k: int, *, seed: int = 0, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres [k, C], pixel counts per centre [k]) of ``points`` [N, C]: k-means++ seeding, Lloyd steps.

    Deterministic for a seed (v0.6 used scikit-learn's KMeans(random_state=0); the palettes agree up to
    the order of the colours and k-means' local optimum).
    """
    points = points.float()
    n = points.shape[0]
    k = min(int(k), n)
    g = torch.Generator().manual_seed(seed)
    centres = points[torch.randint(n, (1,), generator=g)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).min(1).values ** 2
        if float(d2.sum()) == 0:
            pick = torch.randint(n, (1,), generator=g)
        else:
            pick = torch.multinomial(d2 / d2.sum(), 1, generator=g)
        centres = torch.cat([centres, points[pick]])
    for _ in range(iterations):
        labels = torch.cdist(points, centres).argmin(1)
        new = centres.clone()
        for j in range(k):
            members = points[labels == j]
            if len(members):
                new[j] = members.mean(0)
        if torch.allclose(new, centres):
            break
        centres = new
    labels = torch.cdist(points, centres).argmin(1)
    counts = torch.bincount(labels, minlength=k)
    return centres, counts


@dataclass
class ColorMatchLoss:
    """Palette loss (``colormatch_scale``, spec 6.7): the sorted distances of every pixel to each palette
    colour should match those of an image with exactly the palette's colour proportions."""

    palette: torch.Tensor  # [n, 3] in [-1, 1]
    counts: torch.Tensor  # [n] pixels per palette colour
    ignore_sat_weight: float | None = None
    _targets: dict = field(default_factory=dict, repr=False)

    def target(self, pixels: int, device: torch.device | None = None) -> torch.Tensor:
        """[n, pixels]: for each palette colour a, the ascending distances to b repeated count_b times
        (counts rescaled to ``pixels`` with floor; the shortfall is 0)."""
        key = (pixels, str(device))
        if key not in self._targets:
            counts = (self.counts.double() * pixels / self.counts.sum().double()).floor().long()
            palette = self.palette.float().cpu()
            rows = []
            for a in palette:
                distances = (palette - a).norm(dim=1)
                row = torch.repeat_interleave(distances, counts)
                row = torch.cat([row, row.new_zeros(pixels - len(row))])
                rows.append(row.sort().values)
            self._targets[key] = torch.stack(rows).to(device)
        return self._targets[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = desaturate(x, self.ignore_sat_weight)
        palette = self.palette.to(x.device, x.dtype)
        b, _, h, w = y.shape
        flat = y.flatten(2)  # [B, 3, P]
        distances = (flat[None] - palette[:, None, :, None]).norm(dim=2)  # [n, B, P]
        target = self.target(h * w, x.device).to(x.dtype)
        return ((distances.sort(dim=-1).values - target[:, None, :]) ** 2).mean()


def palette_distance(x: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Mean distance from each pixel of x [B, 3, h, w] to its nearest palette colour (a test/report metric)."""
    flat = x.flatten(2).transpose(1, 2).reshape(-1, 3).float()
    return torch.cdist(flat, palette.float().to(flat.device)).min(1).values.mean()


__all__ = [
    "LINEAR_DECODE_MATRIX", "ColorMatchLoss", "blue_loss", "desaturate", "exposure_loss", "gray",
    "init_mse_loss", "kmeans", "linear_decode", "mean_loss", "palette_distance", "var_loss",
]
