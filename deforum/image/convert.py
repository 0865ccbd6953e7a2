"""Conversions between uint8 RGB frames and [-1, 1] samples (spec 6.2 step 5 and 10.2)."""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def image_to_sample(image: np.ndarray, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """HxWx3 image with values in 0..255 (uint8, or the unclipped float64 after contrast) -> 1x3xHxW sample.

    As v0.6's ``sample_from_cv2``: ``(x/255)*2 - 1`` in float64, then cast to float16 (the init sample's
    precision). Values outside 0..255 stay outside [-1, 1]: contrast is not clipped (spec 6.4).
    """
    sample = ((image.astype(np.float64) / 255.0) * 2 - 1).transpose(2, 0, 1)[None]
    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    if numpy_dtype is None:
        return torch.from_numpy(np.ascontiguousarray(sample)).to(dtype)
    return torch.from_numpy(np.ascontiguousarray(sample, dtype=numpy_dtype))  # numpy rounds, as v0.6 did


def sample_to_uint8(sample: torch.Tensor, compute_dtype: torch.dtype | None = torch.float32) -> np.ndarray:
    """1x3xHxW (or 3xHxW) sample -> HxWx3 uint8: ``trunc(clip(x/2 + 1/2, 0, 1)*255)``.

    ``compute_dtype`` float32 is v0.6's ``sample_to_cv2`` (the next frame's warp source); ``None`` computes
    in the sample's own dtype, as v0.6 did for the saved PNG of a float16 decoded sample (spec 10.2).
    """
    x = sample.detach()
    if x.ndim == 4:
        x = x[0]
    x = x.cpu()
    if x.dtype == torch.bfloat16:  # numpy has no bfloat16
        x = x.float()
    # numpy, as v0.6's sample_to_cv2: elementwise float arithmetic rounds the same, without a thread pool.
    pixels = x.numpy() if compute_dtype is None else x.numpy().astype(_NUMPY_DTYPES[compute_dtype])
    pixels = np.clip(pixels * 0.5 + 0.5, 0, 1) * 255
    return pixels.transpose(1, 2, 0).astype(np.uint8)


def sample_to_image(sample: torch.Tensor) -> np.ndarray:
    """The previous output sample as the next frame's uint8 warp source (v0.6 ``sample_to_cv2``)."""
    return sample_to_uint8(sample, torch.float32)
