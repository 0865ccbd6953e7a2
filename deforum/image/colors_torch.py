"""Colour coherence on torch tensors, on their device: ``colors.maintain_colors`` without leaving the GPU.

The histogram match is ``colors.match_histograms_uint8``'s arithmetic: per channel, the 256-bin counts of
image and reference, their cumulative quantiles in float64, ``np.interp`` of each source quantile on the
reference's (over the values present, with numpy's rule for the two ends and for an exact hit), truncated to
uint8, applied as a lookup. Every step is a fixed-size tensor op (``scatter_add``, ``cumsum``,
``searchsorted``, ``cummax``), so nothing is read back to the host.

HSV and LAB are OpenCV's 8-bit conversions (fixed-point arithmetic with its own tables). They are used here
as lookup tables of every 8-bit RGB colour (and every 8-bit HSV / LAB triple back), built once per process
from ``cv2.cvtColor`` and kept on the device: a gather per pixel, and exactly OpenCV's numbers.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from deforum.errors import MediaError, SettingsError
from deforum.image.colors import COLOR_COHERENCE_MODES

_CONVERSIONS = {
    "Match Frame 0 HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
    "Match Frame 0 LAB": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB),
}
_TABLES: dict[tuple[int, str], torch.Tensor] = {}


def conversion_table(code: int, device: torch.device | str) -> torch.Tensor:
    """(2**24) x 3 uint8: ``cv2.cvtColor(code)`` of every 8-bit triple, indexed by ``c0 * 65536 + c1 * 256 + c2``."""
    device = torch.device(device)
    key = (code, str(device))
    if key not in _TABLES:
        every = np.arange(1 << 24, dtype=np.uint32)
        triples = np.stack([(every >> 16) & 255, (every >> 8) & 255, every & 255], axis=-1).astype(np.uint8)
        converted = cv2.cvtColor(triples.reshape(4096, 4096, 3), code).reshape(-1, 3)
        _TABLES[key] = torch.from_numpy(np.ascontiguousarray(converted)).to(device)
    return _TABLES[key]


def convert(image: torch.Tensor, code: int) -> torch.Tensor:
    """``cv2.cvtColor(image, code)`` of an HxWx3 uint8 tensor, by table lookup on the tensor's device."""
    pixels = image.reshape(-1, 3).to(torch.int64)
    index = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    return conversion_table(code, image.device)[index].reshape(image.shape)


def histograms(image: torch.Tensor) -> torch.Tensor:
    """C x 256 int64 counts of each channel of an HxWxC uint8 tensor."""
    channels = image.shape[2]
    values = image.reshape(-1, channels).to(torch.int64).T  # C x N
    counts = torch.zeros((channels, 256), dtype=torch.int64, device=image.device)
    return counts.scatter_add_(1, values, torch.ones_like(values))


def channel_tables(source_counts: torch.Tensor, reference_counts: torch.Tensor) -> torch.Tensor:
    """C x 256 uint8 lookup tables value -> matched value (``colors._channel_table`` for every channel).

    Zero-count bins of the reference repeat the cumulative quantile of the bin before them, so the first bin
    whose quantile exceeds x is a value present in the reference (np.interp's right neighbour) and the last
    present value before it (``cummax`` of the present indices) is the left one.
    """
    f64 = torch.float64
    channels = source_counts.shape[0]
    device = source_counts.device
    source_q = source_counts.cumsum(1).to(f64) / source_counts.sum(1, keepdim=True).to(f64)
    reference_q = reference_counts.cumsum(1).to(f64) / reference_counts.sum(1, keepdim=True).to(f64)
    bins = torch.arange(256, device=device).expand(channels, 256)
    present = reference_counts > 0
    last_present = torch.where(present, bins, torch.full_like(bins, -1)).cummax(1).values  # at or before each bin
    first_value = torch.where(present, bins, torch.full_like(bins, 256)).min(1, keepdim=True).values
    last_value = last_present[:, -1:]
    right = torch.searchsorted(reference_q.contiguous(), source_q.contiguous(), right=True)  # first q > x
    inside = right < 256
    right_c = right.clamp(max=255)
    left = torch.gather(last_present, 1, (right_c - 1).clamp(min=0))
    before = (right == 0) | (left < 0)  # x below the first present value's quantile
    left_c = left.clamp(min=0)
    x0 = torch.gather(reference_q, 1, left_c)
    x1 = torch.gather(reference_q, 1, right_c)
    y0, y1 = left_c.to(f64), right_c.to(f64)
    slope = (y1 - y0) / torch.where(x1 == x0, torch.ones_like(x1), x1 - x0)
    value = slope * (source_q - x0) + y0
    value = torch.where(source_q == x0, y0, value)
    value = torch.where(before, first_value.to(f64).expand(channels, 256), value)
    value = torch.where(inside, value, last_value.to(f64).expand(channels, 256))
    return value.clamp(0, 255).to(torch.uint8)  # float -> uint8 truncates, as the numpy table


def match_histograms_torch(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-channel cumulative-histogram matching of HxWxC uint8 tensors (``match_histograms_uint8``)."""
    tables = channel_tables(histograms(image), histograms(reference))
    channels = image.shape[2]
    values = image.reshape(-1, channels).to(torch.int64).T
    return torch.gather(tables, 1, values).T.reshape(image.shape)


def maintain_colors_torch(image: torch.Tensor, reference: torch.Tensor, mode: str) -> torch.Tensor:
    """``colors.maintain_colors`` of HxWx3 uint8 RGB tensors on their device; 'None' returns ``image``."""
    if mode not in COLOR_COHERENCE_MODES:
        raise SettingsError(f"color_coherence={mode!r} is not allowed; use one of {list(COLOR_COHERENCE_MODES)}")
    if mode == "None":
        return image
    for name, array in (("image", image), ("reference", reference)):
        if not isinstance(array, torch.Tensor) or array.dtype != torch.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise MediaError(f"colour coherence needs HxWx3 uint8 RGB tensors; {name} is "
                             f"{getattr(array, 'dtype', type(array).__name__)} {tuple(getattr(array, 'shape', ()))}")
    conversion = _CONVERSIONS.get(mode)
    if conversion is None:
        return match_histograms_torch(image, reference)
    forward, backward = conversion
    matched = match_histograms_torch(convert(image, forward), convert(reference, forward))
    return convert(matched, backward)
