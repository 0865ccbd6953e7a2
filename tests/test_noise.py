"""Contrast, sample conversion and init noise against the v0.6 oracle (tests/data/noise_contrast.npz)."""

import json

import numpy as np
import pytest
import torch

from deforum.image import add_noise, apply_contrast, image_to_sample, sample_to_image, sample_to_uint8

ORACLE = np.load("tests/data/noise_contrast.npz")
META = json.loads(str(ORACLE["meta_json"]))


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: f"c{c['contrast']}_n{c['noise']}")
def test_matches_v06_oracle_bit_for_bit(case):
    k = f"{case['index']:02}"
    contrasted = apply_contrast(ORACLE["prev_img"], case["contrast"])
    assert contrasted.dtype == np.float64
    np.testing.assert_array_equal(contrasted, ORACLE[f"contrast_sample_{k}"])

    sample = image_to_sample(contrasted)
    assert sample.dtype == torch.float16 and sample.shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(sample.numpy(), ORACLE[f"sample_{k}"])

    noised = add_noise(sample, case["noise"], torch.Generator().manual_seed(case["seed"]))
    assert noised.dtype == torch.float32
    np.testing.assert_array_equal(noised.numpy(), ORACLE[f"noised_{k}"])
    np.testing.assert_array_equal(sample_to_image(noised), ORACLE[f"noised_to_cv2_{k}"])


def test_noise_comes_from_the_default_cpu_generator_like_v06():
    torch.manual_seed(42)
    noised = add_noise(torch.zeros(1, 3, 64, 64), 1.0)
    np.testing.assert_array_equal(noised.numpy(), ORACLE["randn_seed42"])


def test_zero_noise_still_draws_so_the_stream_is_unchanged():
    generator = torch.Generator().manual_seed(7)
    sample = torch.zeros(1, 3, 4, 4, dtype=torch.float16)
    assert torch.equal(add_noise(sample, 0.0, generator), sample.float())
    after_zero = torch.randn(3, generator=generator)
    generator.manual_seed(7)
    add_noise(sample, 0.5, generator)
    assert torch.equal(torch.randn(3, generator=generator), after_zero)


def test_contrast_is_a_gain_about_black_and_not_clipped():
    image = np.array([[[0, 100, 255]]], np.uint8)
    np.testing.assert_array_equal(apply_contrast(image, 1.25), [[[0.0, 125.0, 318.75]]])
    sample = image_to_sample(apply_contrast(image, 1.25), dtype=torch.float32)
    assert sample.max().item() == pytest.approx(318.75 / 127.5 - 1)


# (sample value, uint8): trunc(clip(x/2 + 1/2, 0, 1) * 255), spec 10.2
PIXEL_TABLE = [(-1.5, 0), (-1.0, 0), (0.0, 127), (0.5, 191), (0.999, 254), (1.0, 255), (3.0, 255)]


@pytest.mark.parametrize("value, expected", PIXEL_TABLE)
def test_sample_to_uint8_truncates(value, expected):
    sample = torch.full((1, 3, 2, 2), value)
    out = sample_to_uint8(sample)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8 and (out == expected).all()


def test_uint8_round_trip_only_ever_truncates_down():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    back = sample_to_image(image_to_sample(image)).astype(int)
    assert set(np.unique(image.astype(int) - back)) <= {0, 1}


def test_png_path_computes_in_float16_like_v06():
    # v0.6 saved frames from the float16 decoded sample: ((x + 1)/2).clamp(0, 1) * 255.0 in float16, truncated
    x = torch.linspace(-1, 1, 3 * 64 * 64, dtype=torch.float16).reshape(1, 3, 64, 64)
    x16 = x[0].numpy().transpose(1, 2, 0)
    expected = (np.clip((x16 + np.float16(1)) / np.float16(2), 0, 1) * np.float16(255)).astype(np.uint8)
    half = sample_to_uint8(x, compute_dtype=None)
    np.testing.assert_array_equal(half, expected)
    assert (np.abs(half.astype(int) - sample_to_uint8(x).astype(int)) <= 1).all()


@pytest.mark.parametrize("amount", [0.02, 0.1, 0.3333, 1e-3, 0.07, 2.5])
def test_cpu_fast_path_equals_torch_promotion(amount):
    generator = torch.Generator()
    sample = (torch.randn(1, 3, 32, 48, generator=generator.manual_seed(1)) * 2).half()
    expected = sample + torch.randn(sample.shape, generator=generator.manual_seed(2)) * amount
    assert torch.equal(add_noise(sample, amount, generator.manual_seed(2)), expected)
