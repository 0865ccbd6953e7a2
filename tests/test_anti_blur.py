"""Anti-blur (the unsharp mask before diffusion): its gain against the Gaussian's frequency response."""

import dataclasses
import math

import cv2
import numpy as np
import pytest

from deforum.errors import SettingsError
from deforum.image.sharpen import odd_kernel, unsharp_mask
from deforum.plan import make_plan
from deforum.render import steps
from deforum.testing import settings_for_test


def grating(frequency, height=16, width=96, mean=128.0, amplitude=40.0):
    """A vertical sine grating, ``frequency`` cycles per pixel across x, the same in 3 channels."""
    x = np.arange(width, dtype=np.float64)
    row = mean + amplitude * np.sin(2 * np.pi * frequency * x + 0.3)
    return np.repeat(np.tile(row, (height, 1))[:, :, None], 3, axis=2)


def sharpness(image, margin):
    """Laplacian variance away from the borders (where the blur reflects): the usual focus measure."""
    lap = cv2.Laplacian(image[:, :, 0], cv2.CV_64F)
    return lap[2:-2, margin:-margin].var()


def gaussian_gain(kernel, sigma, frequency):
    """The blur's gain at ``frequency``: the discrete-time Fourier transform of OpenCV's symmetric kernel."""
    weights = cv2.getGaussianKernel(kernel, sigma, cv2.CV_64F).ravel()
    offsets = np.arange(kernel) - kernel // 2
    return float(np.sum(weights * np.cos(2 * np.pi * frequency * offsets)))


# (amount, kernel, sigma, frequency): a grating's detail grows by 1 + amount * (1 - gain of the blur there)
GAIN_CASES = [(0.8, 11, 1.5, 1 / 8), (0.5, 15, 2.0, 1 / 8), (1.2, 7, 1.0, 1 / 4), (0.3, 5, 1.0, 1 / 6),
              (0.6, 9, 0.0, 1 / 12)]


@pytest.mark.parametrize("amount, kernel, sigma, frequency", GAIN_CASES)
def test_sharpness_rises_by_one_plus_amount_times_what_the_blur_removes(amount, kernel, sigma, frequency):
    image = grating(frequency)
    out = unsharp_mask(image, amount, kernel, sigma, 0.0)
    factor = 1 + amount * (1 - gaussian_gain(kernel, sigma, frequency))
    margin = kernel // 2 + 2
    assert sharpness(out, margin) / sharpness(image, margin) == pytest.approx(factor ** 2, rel=1e-9)
    # pointwise: the mean stays, the sine's amplitude grows by the same factor
    interior = (slice(None), slice(margin, -margin))
    np.testing.assert_allclose((out - 128.0)[interior], factor * (image - 128.0)[interior], atol=1e-9)


@pytest.mark.parametrize("amount, kernel, sigma, frequency", [(0.8, 11, 1.5, 1 / 8), (1.0, 15, 2.0, 1 / 10)])
def test_the_gain_is_the_continuous_gaussians_when_the_kernel_covers_it(amount, kernel, sigma, frequency):
    # the Fourier transform of a Gaussian of sigma s is exp(-2 pi^2 s^2 f^2)
    expected = 1 + amount * (1 - math.exp(-2 * math.pi ** 2 * sigma ** 2 * frequency ** 2))
    image = grating(frequency)
    out = unsharp_mask(image, amount, kernel, sigma, 0.0)
    margin = kernel // 2 + 2
    assert math.sqrt(sharpness(out, margin) / sharpness(image, margin)) == pytest.approx(expected, rel=2e-3)


def test_a_blurred_edge_gets_steeper_with_overshoot_clipped_to_0_255():
    step = np.zeros((8, 64, 3))
    step[:, 32:] = 255.0
    soft = cv2.GaussianBlur(step, (9, 9), 2.0)
    out = unsharp_mask(soft, 2.0, 9, 2.0, 0.0)
    assert np.abs(np.diff(out[4, :, 0])).max() > 1.5 * np.abs(np.diff(soft[4, :, 0])).max()
    assert out.min() == 0.0 and out.max() == 255.0  # the overshoot either side is clipped
    np.testing.assert_array_equal(out[:, :20], soft[:, :20])  # far from the edge nothing moves


def test_threshold_leaves_flat_and_low_contrast_values_alone():
    image = np.full((24, 48, 3), 90.0)
    image[:, 24:] = 170.0
    image[3, 5] += 4.0  # a faint speck in the flat part
    image = cv2.GaussianBlur(image, (5, 5), 1.0)
    sharp = unsharp_mask(image, 1.0, 7, 1.5, 0.0)
    out = unsharp_mask(image, 1.0, 7, 1.5, 5.0)
    difference = np.abs(image - cv2.GaussianBlur(image, (7, 7), 1.5))
    keep = difference < 5.0
    assert keep.any() and (~keep).any()
    np.testing.assert_array_equal(out[keep], image[keep])  # below the threshold: the original value
    np.testing.assert_array_equal(out[~keep], sharp[~keep])  # at or above it: sharpened as without threshold
    assert not np.array_equal(sharp[:, :8], image[:, :8])  # threshold 0 sharpens the speck...
    np.testing.assert_array_equal(out[:, :16], image[:, :16])  # ...a threshold of 5 does not


KERNEL_TABLE = [(-3, 1), (0, 1), (0.9, 1), (1, 1), (2, 3), (3, 3), (3.5, 3), (4, 5), (4.4, 5), (5.9, 5), (6, 7),
                (6.9, 7), (254, 255), (255, 255), (1000, 255)]


@pytest.mark.parametrize("kernel, odd", KERNEL_TABLE)
def test_kernel_rounds_to_the_nearest_odd_size(kernel, odd):
    assert odd_kernel(kernel) == odd


def test_kernel_rounding_is_what_the_blur_uses():
    image = grating(1 / 6)
    np.testing.assert_array_equal(unsharp_mask(image, 0.7, 4, 1.2, 0.0), unsharp_mask(image, 0.7, 5, 1.2, 0.0))
    assert not np.array_equal(unsharp_mask(image, 0.7, 3, 1.2, 0.0), unsharp_mask(image, 0.7, 5, 1.2, 0.0))
    np.testing.assert_allclose(unsharp_mask(image, 0.7, 0.5, 1.2, 0.0), image, atol=1e-9)  # 1x1: removes nothing
    with pytest.raises(SettingsError, match="kernel_schedule"):
        unsharp_mask(image, 0.7, float("nan"), 1.2, 0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_amount_zero_is_the_identity(dtype):
    image = (grating(1 / 4) * 1.02).clip(0, 255).astype(dtype)
    out = unsharp_mask(image, 0.0, 9, 2.0, 0.0)
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, image)


def test_uint8_is_rounded_and_float_keeps_its_dtype():
    image = grating(1 / 8, amplitude=100.0)
    as_uint8 = np.rint(image).astype(np.uint8)
    out = unsharp_mask(as_uint8, 0.9, 7, 1.3, 0.0)
    exact = np.clip(as_uint8 * 1.9 - cv2.GaussianBlur(as_uint8.astype(np.float64), (7, 7), 1.3) * 0.9, 0, 255)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(exact).astype(np.uint8))
    assert unsharp_mask(image.astype(np.float32), 0.9, 7, 1.3, 0.0).dtype == np.float32


def test_anti_blur_step_uses_the_frames_four_schedules():
    settings = settings_for_test(animation_mode="2D", max_frames=3, amount_schedule="0: (0), 1: (0.8)",
                                 kernel_schedule="0: (6)", sigma_schedule="0: (1.5)", threshold_schedule="0: (2)")
    rows = make_plan(settings, 1).rows
    image = np.rint(grating(1 / 8)).astype(np.uint8)
    np.testing.assert_array_equal(steps.anti_blur(image, rows[0].values), image)  # amount 0 at frame 0
    values = rows[1].values
    assert (values.amount_schedule, values.kernel_schedule) == (0.8, 6)
    np.testing.assert_array_equal(steps.anti_blur(image, values), unsharp_mask(image, 0.8, 7, 1.5, 2.0))
    plain = dataclasses.replace(values, threshold_schedule=0.0, kernel_schedule=3)
    assert not np.array_equal(steps.anti_blur(image, plain), steps.anti_blur(image, values))
