"""The 2D warp on a torch tensor, on the tensor's device: the same frame as ``warp2d`` (OpenCV 4 arithmetic).

``warp2d`` runs ``cv2.remap`` with OpenCV 4's fixed-point maps: each source position is rounded to 1/32
pixel and the four bilinear weights are exact multiples of 1/1024 (uint8 images: integers summing to 2**15,
the sum rounded half up). Here the same positions are computed in float64 with the same operations in the
same order (``warp2d._fixed_point_maps``), the four neighbours are gathered with the border rule applied to
each index (``replicate`` clamps, ``wrap`` takes the index modulo the size, as ``borderInterpolate``), and
the weights are the same numbers. ``grid_sample`` has no wrap border and samples at the exact position, so
the gather is written out: the result is ``warp2d``'s frame, not a resampling close to it.

The matrix comes from ``warp2d.warp2d_matrix`` (the host computes it from the frame's schedule values, so
nothing is read back from the device).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from deforum.errors import MediaError, SettingsError
from deforum.motion.warp2d import warp2d_matrix

BORDERS = ("wrap", "replicate")
_INTER_BITS = 5
_TAB = 1 << _INTER_BITS  # 32 positions per pixel
_COEF_SCALE = 1 << 15  # OpenCV's INTER_REMAP_COEF_SCALE: uint8 weights are integers summing to this
_BLOCK_SZ = 32


def inverse_matrix(xform: np.ndarray) -> list[float]:
    """The destination-to-source matrix as nine floats, inverted as ``warpPerspective`` does (double, LU; a
    singular matrix gives zeros, so every pixel reads the top-left one)."""
    return [float(v) for v in cv2.invert(np.asarray(xform, dtype=np.float64), flags=cv2.DECOMP_LU)[1].ravel()]


def fixed_point_positions(m: list[float], width: int, height: int,
                          device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenCV 4's source positions of every pixel for the inverse matrix ``m``: integer x, y (int64, HxW,
    saturated to int16 as ``cv2.remap``'s CV_16SC2 map) and the 1/32 fractions fx, fy (int64 0..31).

    float64 arithmetic in ``warp2d._fixed_point_maps``'s order: OpenCV evaluates each row in blocks of
    ``block_w`` columns from the block's first column.
    """
    f64 = torch.float64
    block_h = min(_BLOCK_SZ // 2, height)
    block_w = min(_BLOCK_SZ * _BLOCK_SZ // block_h, width)
    columns = torch.arange(width, device=device)
    x = (columns - columns % block_w).to(f64)[None, :]
    x1 = (columns % block_w).to(f64)[None, :]
    y = torch.arange(height, device=device, dtype=f64)[:, None]
    w = m[6] * x + m[7] * y
    w = w + m[8]
    w = w + m[6] * x1
    nonzero = w != 0
    w = torch.where(nonzero, _TAB / torch.where(nonzero, w, torch.ones_like(w)), torch.zeros_like(w))
    fixed = []
    for row_step, offset, scale in ((m[1], m[2], m[0]), (m[4], m[5], m[3])):
        value = scale * x + row_step * y
        value = value + offset
        value = value + scale * x1
        value = value * w
        value = value.clamp(-(2.0 ** 31), 2.0 ** 31 - 1)  # saturate_cast<int>, half to even (np.rint)
        fixed.append(torch.round(value).to(torch.int64))
    fixed_x, fixed_y = fixed
    ix = (fixed_x >> _INTER_BITS).clamp(-32768, 32767)
    iy = (fixed_y >> _INTER_BITS).clamp(-32768, 32767)
    return ix, iy, fixed_x & (_TAB - 1), fixed_y & (_TAB - 1)


def remap_bilinear(image: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor,
                   border: str) -> torch.Tensor:
    """``cv2.remap`` INTER_LINEAR of an HxWxC uint8 or float32 tensor with fixed-point positions."""
    height, width = image.shape[:2]
    if border == "wrap":
        x0, x1 = ix.remainder(width), (ix + 1).remainder(width)
        y0, y1 = iy.remainder(height), (iy + 1).remainder(height)
    else:
        x0, x1 = ix.clamp(0, width - 1), (ix + 1).clamp(0, width - 1)
        y0, y1 = iy.clamp(0, height - 1), (iy + 1).clamp(0, height - 1)
    flat = image.reshape(height * width, -1)
    top, bottom = y0 * width, y1 * width
    corners = [flat[(top + x0).reshape(-1)], flat[(top + x1).reshape(-1)],
               flat[(bottom + x0).reshape(-1)], flat[(bottom + x1).reshape(-1)]]
    fx, fy = fx.reshape(-1, 1), fy.reshape(-1, 1)
    gx, gy = _TAB - fx, _TAB - fy
    # Weights (32 - fx)(32 - fy)/1024 ...: exact as floats, and times 32 the uint8 path's integers.
    weights = (gx * gy, fx * gy, gx * fy, fx * fy)
    if image.dtype == torch.uint8:
        total = sum(c.to(torch.int32) * (w * _TAB).to(torch.int32) for c, w in zip(corners, weights, strict=True))
        out = ((total + (_COEF_SCALE >> 1)) >> 15).clamp(0, 255).to(torch.uint8)
    else:
        scale = 1.0 / (_TAB * _TAB)
        ws = [(w.to(torch.float32) * scale) for w in weights]
        out = corners[0] * ws[0] + corners[1] * ws[1]
        out = out + corners[2] * ws[2]
        out = out + corners[3] * ws[3]
        out = out.to(image.dtype)
    return out.reshape(image.shape)


def warp_perspective_torch(image: torch.Tensor, xform: np.ndarray, border: str) -> torch.Tensor:
    """``warp2d.warp_perspective_v4`` on a tensor: ``xform`` maps source to destination, output is the
    input's size, dtype and device."""
    height, width = image.shape[:2]
    positions = fixed_point_positions(inverse_matrix(xform), width, height, image.device)
    return remap_bilinear(image, *positions, border)


def warp2d_torch(image: torch.Tensor, *, angle: float, zoom: float, translation_x: float, translation_y: float,
                 border: str = "replicate", flip_2d_perspective: bool = False, perspective_flip_theta: float = 0,
                 perspective_flip_phi: float = 0, perspective_flip_gamma: float = 0,
                 perspective_flip_fv: float = 53, corrected_flip: bool = False) -> torch.Tensor:
    """``warp2d`` on an HxWx3 uint8 or float32 tensor (any device); the result has the input's dtype."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"2D warp needs an HxWx3 image tensor; got {type(image).__name__} of shape "
                         f"{tuple(getattr(image, 'shape', ()))}")
    if image.dtype not in (torch.uint8, torch.float32):
        raise MediaError(f"2D warp needs a uint8 or float32 image; got dtype {image.dtype}")
    if border not in BORDERS:
        raise SettingsError(f"border={border!r} is not allowed; use one of {sorted(BORDERS)}")
    height, width = image.shape[:2]
    xform = warp2d_matrix(width, height, angle=angle, zoom=zoom, translation_x=translation_x,
                          translation_y=translation_y, flip_2d_perspective=flip_2d_perspective,
                          perspective_flip_theta=perspective_flip_theta, perspective_flip_phi=perspective_flip_phi,
                          perspective_flip_gamma=perspective_flip_gamma, perspective_flip_fv=perspective_flip_fv,
                          corrected_flip=corrected_flip)
    return warp_perspective_torch(image, xform, border)
