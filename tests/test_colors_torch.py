"""Colour coherence on tensors (issue 27) is ``maintain_colors``'s: the same tables, OpenCV's 8-bit HSV/LAB."""

import cv2
import numpy as np
import pytest
import torch

from deforum.errors import MediaError, SettingsError
from deforum.image.colors import maintain_colors, match_histograms_uint8
from deforum.image.colors_torch import convert, maintain_colors_torch, match_histograms_torch

MODES = ["Match Frame 0 RGB", "Match Frame 0 HSV", "Match Frame 0 LAB"]


def pair(kind, seed=0, size=(40, 56)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    reference = np.clip(rng.normal(120, 40, (*size, 3)), 0, 255).astype(np.uint8)
    if kind == "sparse":  # few values present: the interpolation's ends and flat runs
        image = (image // 37 * 37).astype(np.uint8)
        reference = (reference // 16 * 16).astype(np.uint8)
    elif kind == "flat":  # one value in a channel of the reference, one in the image
        reference[..., 1] = 90
        image[..., 2] = 200
    elif kind == "smooth":
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
        image = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    return image, reference


@pytest.mark.parametrize("kind", ["random", "sparse", "flat", "smooth"])
@pytest.mark.parametrize("mode", MODES)
def test_the_tensor_match_is_the_numpy_match(mode, kind):
    image, reference = pair(kind)
    expected = maintain_colors(image, reference, mode)
    got = maintain_colors_torch(torch.from_numpy(image), torch.from_numpy(reference), mode)
    assert got.dtype == torch.uint8 and got.shape == image.shape
    difference = np.abs(got.numpy().astype(int) - expected.astype(int))
    assert difference.max() <= 1
    if mode != "Match Frame 0 HSV":
        assert difference.max() == 0  # the same numbers (OpenCV's own HSV -> RGB varies by a level with width)


def test_histogram_matching_of_every_channel_count():
    rng = np.random.default_rng(3)
    for channels in (1, 2, 3, 4):
        image = rng.integers(0, 256, (16, 24, channels), dtype=np.uint8)
        reference = rng.integers(40, 180, (16, 24, channels), dtype=np.uint8)
        got = match_histograms_torch(torch.from_numpy(image), torch.from_numpy(reference)).numpy()
        assert np.array_equal(got, match_histograms_uint8(image, reference))


@pytest.mark.parametrize("code", [cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB])
def test_colour_conversions_are_opencvs(code):
    image = np.random.default_rng(code).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    if code == cv2.COLOR_HSV2RGB:
        image[..., 0] %= 180
    assert np.array_equal(convert(torch.from_numpy(image), code).numpy(), cv2.cvtColor(image, code))
    # OpenCV's 8-bit HSV -> RGB itself differs by one level between images of other widths
    narrow = image[:, :57].copy()
    difference = np.abs(convert(torch.from_numpy(narrow), code).numpy().astype(int) - cv2.cvtColor(narrow, code))
    assert difference.max() <= 1


def test_none_returns_the_image_and_bad_input_is_named():
    image = torch.zeros(4, 4, 3, dtype=torch.uint8)
    assert maintain_colors_torch(image, image, "None") is image
    with pytest.raises(SettingsError, match="color_coherence='Match Frame 0 XYZ'"):
        maintain_colors_torch(image, image, "Match Frame 0 XYZ")
    with pytest.raises(MediaError, match="reference"):
        maintain_colors_torch(image, image.float(), "Match Frame 0 RGB")
