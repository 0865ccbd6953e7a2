"""Colour coherence against the v0.6 oracle (tests/data/colors.npz) and scikit-image's matching."""

import json

import cv2
import numpy as np
import pytest
from skimage.exposure import match_histograms

from deforum.errors import MediaError, SettingsError
from deforum.image import maintain_colors
from deforum.image.colors import _histogram, match_histograms_uint8

ORACLE = np.load("tests/data/colors.npz")
META = json.loads(str(ORACLE["meta_json"]))


def oracle_array(name):
    if name == "astronaut256_drift":  # recipe of oracle README section 5
        x = ORACLE["astronaut256"] / 255.0 * np.array([0.85, 1.05, 1.2]) + np.array([0.05, -0.02, 0.0])
        return np.clip(np.rint(np.clip(x, 0, 1) ** 0.8 * 255), 0, 255).astype(np.uint8)
    return ORACLE[name]


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: f"{c['index']:02}_{c['pair']}_{c['mode']}")
def test_matches_v06_oracle(case):
    out = maintain_colors(
        oracle_array(case["prev_img"]), oracle_array(case["color_match_sample"]), case["mode"]
    )
    expected = ORACLE[f"out_{case['index']:02}"]
    assert out.dtype == np.uint8 and out.shape == expected.shape
    close = float((np.abs(out.astype(int) - expected) <= 1).mean())
    assert close >= 0.999, f"only {close:.5f} of values within one level"
    assert (out == expected).mean() >= 0.999


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_matching_equals_scikit_image(channels):
    rng = np.random.default_rng(channels)
    image = rng.integers(10, 200, (40, 50, channels), dtype=np.uint8)
    reference = (rng.random((30, 20, channels)) ** 2 * 255).astype(np.uint8)
    expected = match_histograms(image, reference, channel_axis=-1)
    np.testing.assert_array_equal(match_histograms_uint8(image, reference), expected.astype(np.uint8))


def test_histogram_is_a_flat_count_on_every_opencv():
    # OpenCV 4's calcHist returns a 256x1 column, OpenCV 5's a flat array; both must give 256 exact counts.
    image = np.random.default_rng(7).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image[:5, :, 1] = 255  # the top value must be counted, not dropped by the [0, 256) range
    for channel in range(3):
        counts = _histogram(image, channel)
        assert counts.shape == (256,) and counts.dtype == np.int64
        np.testing.assert_array_equal(counts, np.bincount(image[..., channel].ravel(), minlength=256))


def test_matching_to_itself_is_identity():
    image = ORACLE["chelsea256"]
    for mode in ("Match Frame 0 RGB", "Match Frame 0 HSV", "Match Frame 0 LAB"):
        out = maintain_colors(image, image, mode)
        space = {"Match Frame 0 HSV": cv2.COLOR_RGB2HSV, "Match Frame 0 LAB": cv2.COLOR_RGB2LAB}.get(mode)
        if space is None:
            np.testing.assert_array_equal(out, image)
        else:  # only the 8-bit round trip through the colour space remains
            back = {cv2.COLOR_RGB2HSV: cv2.COLOR_HSV2RGB, cv2.COLOR_RGB2LAB: cv2.COLOR_LAB2RGB}[space]
            np.testing.assert_array_equal(out, cv2.cvtColor(cv2.cvtColor(image, space), back))


def test_match_pulls_a_colour_cast_back():
    reference = ORACLE["astronaut256"]
    drifted = oracle_array("astronaut256_drift")
    out = maintain_colors(drifted, reference, "Match Frame 0 LAB")
    before = np.abs(drifted.mean((0, 1)) - reference.mean((0, 1))).max()
    after = np.abs(out.mean((0, 1)) - reference.mean((0, 1))).max()
    assert after < before / 4


def test_none_returns_the_image_unchanged():
    image = ORACLE["astronaut256"]
    assert maintain_colors(image, ORACLE["chelsea256"], "None") is image


@pytest.mark.parametrize(
    "image, mode, error, match",
    [
        (ORACLE["astronaut256"], "Match Frame 0 XYZ", SettingsError, "color_coherence"),
        (ORACLE["astronaut256"], "lab", SettingsError, "Match Frame 0 LAB"),
        (ORACLE["astronaut256"].astype(np.float32), "Match Frame 0 LAB", MediaError, "uint8"),
    ],
)
def test_bad_input_is_a_clear_error(image, mode, error, match):
    with pytest.raises(error, match=match):
        maintain_colors(image, ORACLE["chelsea256"], mode)
