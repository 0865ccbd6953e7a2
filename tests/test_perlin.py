"""Perlin-shaped init noise (noise_type "perlin"): the noise against its definition, evaluated by hand."""

import math

import numpy as np
import pytest
import torch

from deforum.errors import SettingsError
from deforum.image.convert import image_to_sample
from deforum.image.noise import (
    PerlinParams,
    add_noise,
    lattice_shape,
    perlin_gradients,
    perlin_noise,
    perlin_octave,
)
from deforum.render import steps
from deforum.testing import settings_for_test


def by_hand(row, col, height, width, res_w, res_h, gradients):
    """One pixel of one octave from the definition, in plain Python floats."""
    x, y = col * res_w / width, row * res_h / height
    i, j = math.floor(x), math.floor(y)
    u, v = x - i, y - j

    def dot(dj, di):
        gx, gy = (float(g) for g in gradients[j + dj, i + di])
        return gx * (u - di) + gy * (v - dj)

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    def lerp(a, b, t):
        return a + (b - a) * t

    top = lerp(dot(0, 0), dot(0, 1), fade(u))
    bottom = lerp(dot(1, 0), dot(1, 1), fade(u))
    return lerp(top, bottom, fade(v))


# (height, width, res_w, res_h): sizes the lattice divides, sizes it does not, and non-integer cell counts
OCTAVE_CASES = [(64, 64, 8, 8), (37, 53, 2.5, 3.3), (48, 80, 0.7, 5), (16, 16, 16, 16), (20, 30, 7.25, 1)]
PIXELS = [(0, 0), (1, 2), (5, 13), (11, 3), (15, 15), (19, 29), (13, 7)]


@pytest.mark.parametrize("height, width, res_w, res_h", OCTAVE_CASES)
def test_one_octave_matches_the_definition(height, width, res_w, res_h):
    rows, cols = lattice_shape(res_w, res_h)
    assert (rows, cols) == (math.ceil(res_h) + 1, math.ceil(res_w) + 1)
    gradients = perlin_gradients(rows, cols, torch.Generator().manual_seed(3))
    assert gradients.shape == (rows, cols, 2)
    np.testing.assert_allclose(gradients.norm(dim=-1).numpy(), 1.0, rtol=1e-12)
    octave = perlin_octave(height, width, res_w, res_h, gradients)
    assert octave.shape == (height, width) and octave.dtype == torch.float64
    for row, col in PIXELS + [(height - 1, width - 1), (height // 2, width - 1)]:
        row, col = row % height, col % width
        expected = by_hand(row, col, height, width, res_w, res_h, gradients)
        assert octave[row, col].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_an_octave_is_zero_on_the_lattice_and_within_sqrt2_over_2():
    octave = perlin_octave(64, 64, 8, 8, perlin_gradients(9, 9, torch.Generator().manual_seed(1)))
    assert octave[::8, ::8].abs().max().item() == 0.0
    assert octave.abs().max().item() <= math.sqrt(2) / 2
    assert octave.abs().max().item() > 0.1  # and it is not flat between the lattice points


@pytest.mark.parametrize("octaves, persistence", [(1, 0.5), (3, 0.5), (4, 0.8), (2, 0.0)])
def test_octaves_sum_from_the_same_generator(octaves, persistence):
    height, width, res_w, res_h = 40, 56, 3.5, 2
    noise = perlin_noise(height, width, res_w, res_h, octaves, persistence, torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    grids = []
    for o in range(octaves):  # drawn coarsest first, one grid per octave
        grids.append(perlin_gradients(*lattice_shape(res_w * 2 ** o, res_h * 2 ** o), generator))
    for row, col in PIXELS:
        total = sum(persistence ** o * by_hand(row, col, height, width, res_w * 2 ** o, res_h * 2 ** o, grids[o])
                    for o in range(octaves))
        assert noise[row, col].item() == pytest.approx(max(-1.0, min(1.0, total)), rel=1e-12, abs=1e-15)


def test_the_sum_is_clamped_to_minus_one_one():
    height, width, res = 64, 64, 2
    noise = perlin_noise(height, width, res, res, 8, 1.0, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    raw = sum(perlin_octave(height, width, res * 2 ** o, res * 2 ** o,
                            perlin_gradients(*lattice_shape(res * 2 ** o, res * 2 ** o), generator))
              for o in range(8))
    assert raw.abs().max().item() > 1.0  # eight full-weight octaves overshoot somewhere...
    assert noise.min().item() >= -1.0 and noise.max().item() <= 1.0  # ...and the result does not
    torch.testing.assert_close(noise, raw.clamp(-1, 1), rtol=0, atol=1e-12)


def test_uniform_is_v06_noise_bit_for_bit():
    sample = (torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(1)) * 2).half()
    for amount in (0.0, 0.02, 0.7):
        expected = sample + torch.randn(sample.shape, generator=torch.Generator().manual_seed(9)) * amount
        assert torch.equal(add_noise(sample, amount, torch.Generator().manual_seed(9), "uniform"), expected)
        assert torch.equal(add_noise(sample, amount, torch.Generator().manual_seed(9), "uniform",
                                     PerlinParams(4, 4, 2, 0.5)), expected)  # perlin is ignored for uniform


def test_perlin_scales_each_pixel_of_the_same_normals_by_p_plus_one_over_two():
    sample = torch.zeros(1, 3, 32, 48)
    params = PerlinParams(res_w=3, res_h=2.5, octaves=3, persistence=0.6)
    generator = torch.Generator().manual_seed(21)
    noised = add_noise(sample, 0.5, generator, "perlin", params)
    check = torch.Generator().manual_seed(21)
    normals = torch.randn(sample.shape, generator=check)  # the normals come first, as in "uniform"...
    p = perlin_noise(32, 48, 3, 2.5, 3, 0.6, check)  # ...then the gradients
    assert torch.equal(torch.randn(4, generator=generator), torch.randn(4, generator=check))  # same draws used
    shape = noised / (normals * 0.5)
    for channel in range(3):  # one map for all three channels
        torch.testing.assert_close(shape[0, channel], ((p + 1) / 2).float(), rtol=1e-5, atol=1e-6)
    assert 0.0 <= shape.min().item() and shape.max().item() <= 1.0
    assert shape.std().item() > 0.05  # a real pattern, not a constant gain


def test_perlin_with_zero_amount_still_draws_and_changes_nothing():
    sample = torch.rand(1, 3, 8, 8).half()
    generator = torch.Generator().manual_seed(4)
    assert torch.equal(add_noise(sample, 0.0, generator, "perlin", PerlinParams(2, 2, 1, 0.5)), sample.float())
    check = torch.Generator().manual_seed(4)
    torch.randn(sample.shape, generator=check)
    perlin_gradients(*lattice_shape(2, 2), check)
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=check))


def test_bad_noise_type_and_huge_lattice_are_settings_errors():
    with pytest.raises(SettingsError, match="noise_type.*'gaussian'.*uniform, perlin"):
        add_noise(torch.zeros(1, 3, 4, 4), 0.1, None, "gaussian")
    with pytest.raises(SettingsError, match="perlin_w, perlin_h, perlin_octaves"):
        perlin_noise(8, 8, 8192, 8192, 8, 0.5, torch.Generator())
    with pytest.raises(TypeError, match="PerlinParams"):
        add_noise(torch.zeros(1, 3, 4, 4), 0.1, None, "perlin")


def test_init_sample_reads_the_noise_fields_from_settings():
    settings = settings_for_test(animation_mode="2D", max_frames=2, noise_type="perlin", perlin_w=3,
                                 perlin_h=5.5, perlin_octaves=2, perlin_persistence=0.25)
    c = settings.coherence
    params = PerlinParams(c.perlin_w, c.perlin_h, c.perlin_octaves, c.perlin_persistence)
    image = np.full((32, 40, 3), 128.0)
    uniform = steps.init_sample(image, 1.0, 0.3, torch.Generator().manual_seed(2))
    explicit = steps.init_sample(image, 1.0, 0.3, torch.Generator().manual_seed(2), "uniform")
    assert torch.equal(uniform, explicit)
    perlin = steps.init_sample(image, 1.0, 0.3, torch.Generator().manual_seed(2), c.noise_type, params)
    base = image_to_sample(image).float()
    generator = torch.Generator().manual_seed(2)
    normals = torch.randn(base.shape, generator=generator)
    mask = (perlin_noise(32, 40, 3, 5.5, 2, 0.25, generator) + 1) / 2
    torch.testing.assert_close(perlin - base, normals * 0.3 * mask.float(), rtol=0, atol=1e-5)
    assert not torch.allclose(perlin, uniform, atol=1e-3)
