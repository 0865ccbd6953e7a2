"""Latent and overlay masks (spec 5.3, 5.6): polarity, un-swapped adjustments, binarise + blur, overlay."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from deforum.errors import MediaError
from deforum.image.masks import check_alpha_mask, mask_array, overlay, overlay_mask, prepare_mask


def grey(value: int, size=(16, 16)) -> Image.Image:
    return Image.new("L", size, value)


def halves(W=64, H=64) -> Image.Image:
    """White left half (keep), black right half (regenerate)."""
    array = np.zeros((H, W), np.uint8)
    array[:, : W // 2] = 255
    return Image.fromarray(array)


# (pixel value, brightness, contrast, invert, expected mask value)
ADJUST_CASES = [
    (200, 1.0, 1.0, False, 200 / 255),
    (200, 0.5, 1.0, False, 100 / 255),  # brightness scales the value
    (200, 1.0, 0.5, False, 200 / 255),  # contrast of a flat image leaves it unchanged
    (100, 2.0, 1.0, False, 200 / 255),
    (200, 2.0, 1.0, False, 1.0),  # clipped at white
    (200, 1.0, 1.0, True, 1 - 200 / 255),
    (0, 1.0, 1.0, True, 1.0),
]


@pytest.mark.parametrize("value, brightness, contrast, invert, expected", ADJUST_CASES)
def test_mask_adjustments_each_do_what_their_name_says(value, brightness, contrast, invert, expected):
    out = mask_array(grey(value), 8, 8, mask_brightness_adjust=brightness, mask_contrast_adjust=contrast,
                     invert_mask=invert)
    assert out.shape == (8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1 / 255)


def test_contrast_spreads_values_around_the_mean():
    array = np.array([[64, 192]] * 2, np.uint8)
    out = mask_array(Image.fromarray(array), 2, 2, mask_contrast_adjust=2.0) * 255
    assert out[0, 0] < 64 - 30 and out[0, 1] > 192 + 30


def test_rgb_mask_is_read_as_luma():
    rgb = Image.new("RGB", (8, 8), (255, 0, 0))
    np.testing.assert_allclose(mask_array(rgb, 8, 8), round(255 * 0.299) / 255, atol=1 / 255)


def test_prepare_mask_is_latent_sized_and_tiled():
    m = prepare_mask(halves(), 64, 64)
    assert m.shape == (1, 4, 8, 8) and m.dtype == torch.float32
    assert torch.equal(m[:, 0], m[:, 3])
    assert float(m[0, 0, 0, 0]) == 1.0 and float(m[0, 0, 0, -1]) == 0.0


def test_overlay_mask_binarises_below_the_maximum():
    array = np.full((32, 32), 128, np.uint8)
    array[:8, :8] = 255
    m = overlay_mask(Image.fromarray(array), 32, 32, mask_overlay_blur=0)
    assert m.shape == (1, 1, 32, 32)
    assert float(m[0, 0, 0, 0]) == 1.0 and float(m[0, 0, 20, 20]) == 0.0  # grey became black


def test_overlay_mask_blur_is_a_gaussian_with_reflect_borders():
    m = overlay_mask(halves(), 64, 64, mask_overlay_blur=3)[0, 0].numpy()
    binary = np.zeros((64, 64), np.float32)
    binary[:, :32] = 1
    np.testing.assert_allclose(m, gaussian_filter(binary, 3, mode="reflect", truncate=4.0), atol=1e-6)
    assert m[10, 0] == pytest.approx(1.0, abs=1e-6) and m[10, 63] == pytest.approx(0.0, abs=1e-6)
    assert 0.3 < m[10, 31] < 0.7


def test_overlay_white_keeps_the_original_black_the_generated():
    original = torch.full((1, 3, 64, 64), 0.5)
    generated = torch.full((1, 3, 64, 64), -0.25)
    out = overlay(original, generated, overlay_mask(halves(), 64, 64, mask_overlay_blur=0))
    assert torch.equal(out[..., :32], original[..., :32])
    assert torch.equal(out[..., 32:], generated[..., 32:])


@pytest.mark.parametrize("value", [0, 255])
def test_flat_alpha_mask_is_an_error(value):
    with pytest.raises(MediaError, match="use_alpha_as_mask"):
        check_alpha_mask(grey(value))


def test_alpha_mask_with_transparency_is_accepted():
    check_alpha_mask(halves())
