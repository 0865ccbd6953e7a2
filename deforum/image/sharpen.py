"""Anti-blur: an unsharp mask on the warped frame before diffusion (A1111 Deforum's "Anti Blur" section).

Each warp resamples the frame and softens it a little; over many frames the blur builds up. Adding back a
share of the detail a Gaussian blur removes (``image + amount * (image - blurred)``) undoes that per frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from deforum.errors import SettingsError

MAX_KERNEL = 255  # the largest blur kernel, in pixels (the field table's MAX_BLUR_KERNEL)


def odd_kernel(kernel: float) -> int:
    """``kernel`` rounded to the nearest odd integer (an even one goes up: 4 -> 5), kept in 1..255; a Gaussian
    kernel needs an odd size so it has a centre pixel."""
    if not math.isfinite(kernel):
        raise SettingsError(f"kernel_schedule: {kernel!r} is not a kernel size; allowed: a finite number of pixels")
    return int(min(max(math.floor(kernel / 2) * 2 + 1, 1), MAX_KERNEL))


def unsharp_mask(image: np.ndarray, amount: float, kernel: float, sigma: float, threshold: float) -> np.ndarray:
    """The unsharp mask of a 0..255 ``image`` (uint8 or float, HxW or HxWxC), in the same dtype.

    ``blurred = cv2.GaussianBlur(image, (k, k), sigma)`` with ``k = odd_kernel(kernel)`` (a sigma of 0 or
    less: OpenCV's sigma for that kernel), ``sharpened = image * (1 + amount) - blurred * amount``, clipped
    to 0..255 (rounded for uint8). Where ``|image - blurred| < threshold`` (per channel) the original value is
    kept, so flat and nearly flat areas and their noise are not sharpened; threshold 0 keeps nothing. An
    ``amount`` of 0 returns ``image`` itself.
    """
    if amount == 0:
        return image
    k = odd_kernel(kernel)
    source = image.astype(np.float64)
    blurred = cv2.GaussianBlur(source, (k, k), float(sigma))
    sharpened = np.clip(source * (1 + amount) - blurred * amount, 0, 255)
    if threshold > 0:
        keep = np.abs(source - blurred) < threshold
        sharpened[keep] = source[keep]
    if image.dtype == np.uint8:
        return np.rint(sharpened).astype(np.uint8)
    return sharpened.astype(image.dtype, copy=False)
