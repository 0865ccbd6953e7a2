"""Gradient-conditioning losses, decode, palette, thresholds and inject timing as pure functions (spec 6)."""

import math

import pytest
import torch

from deforum.errors import SettingsError
from deforum.guidance import losses
from deforum.guidance.clip import make_cutouts, spherical_distance
from deforum.guidance.wrapper import check_inject_timing, inject_steps, schedule_threshold, threshold_gradient


def const(value: float, shape=(1, 3, 4, 4)) -> torch.Tensor:
    return torch.full(shape, float(value))


@pytest.mark.parametrize("fn, x, expected", [
    (losses.mean_loss, const(-0.5), 0.5),
    (losses.mean_loss, const(0.0), 0.0),
    (lambda x: losses.exposure_loss(x, 0.8), const(0.5), 0.3),
    (lambda x: losses.exposure_loss(x, -1.0), const(0.5), 1.5),
    (losses.blue_loss, torch.cat([const(0.0, (1, 2, 4, 4)), const(0.4, (1, 1, 4, 4))], 1), 0.5),
    (losses.var_loss, torch.tensor([[[[0.0, 2.0]]]]), 2.0),  # unbiased: ((1)^2 + (1)^2) / 1
    (lambda x: losses.init_mse_loss(x, const(0.5)), const(-0.5), 1.0),
    (lambda x: losses.init_mse_loss(x, const(0.5, (1, 3, 8, 8))), const(0.0), 0.25),  # target resized
])
def test_loss_values(fn, x, expected):
    assert float(fn(x)) == pytest.approx(expected, abs=1e-6)


def test_linear_decode_is_v06_matrix():
    latent = torch.zeros(1, 4, 2, 2)
    latent[0, 0] = 1.0  # L1 alone gives row 1 of the matrix
    latent[0, 3, 1, 1] = 1.0
    rgb = losses.linear_decode(latent)
    assert rgb.shape == (1, 3, 2, 2)
    assert rgb[0, :, 0, 0].tolist() == pytest.approx([0.298, 0.207, 0.208])
    assert rgb[0, :, 1, 1].tolist() == pytest.approx([0.298 - 0.184, 0.207 - 0.271, 0.208 - 0.473])


@pytest.mark.parametrize("weight, expected_saturated", [(None, True), (1.0, True), (0.0, False)])
def test_desaturate(weight, expected_saturated):
    x = torch.tensor([0.8, -0.6, 0.1]).view(1, 3, 1, 1)
    y = losses.desaturate(x, weight)
    spread = float(y.max() - y.min())
    assert (spread > 0.5) is expected_saturated
    if weight == 0.0:
        assert float(y[0, 0]) == pytest.approx(0.2989 * 0.8 - 0.587 * 0.6 + 0.114 * 0.1)


def test_kmeans_finds_the_clusters_and_counts():
    colors = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    points = torch.cat([colors[0].expand(50, 3), colors[1].expand(30, 3), colors[2].expand(20, 3)])
    points = points + 0.01 * torch.randn(points.shape, generator=torch.Generator().manual_seed(0))
    centres, counts = losses.kmeans(points, 3)
    found = {tuple(round(v) for v in c.tolist()): int(n) for c, n in zip(centres, counts, strict=True)}
    assert found == {(-1, -1, -1): 50, (1, 0, 0): 30, (0, 0, 1): 20}
    again, _ = losses.kmeans(points, 3)
    assert torch.equal(centres, again)  # deterministic


def test_colormatch_target_and_zero_loss_for_a_perfect_palette_image():
    palette = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    loss = losses.ColorMatchLoss(palette, torch.tensor([3, 1]))
    target = loss.target(4)
    d = math.sqrt(12)
    assert torch.allclose(target, torch.tensor([[0, 0, 0, d], [0, d, d, d]]))
    image = torch.tensor([-1.0, -1.0, -1.0, 1.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert float(loss(image)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(-image)) > 1.0  # wrong proportions: 3 white, 1 black
    # counts rescaled to 10 pixels: floor(30/4) = 7 and floor(10/4) = 2, the shortfall of one is a 0
    assert (loss.target(10)[0] == 0).sum() == 7 + 1 and loss.target(10).shape == (2, 10)


def test_palette_distance_metric():
    palette = torch.tensor([[0.0, 0.0, 0.0]])
    assert float(losses.palette_distance(const(0.5), palette)) == pytest.approx(math.sqrt(0.75))


def test_spherical_distance_and_cutouts():
    u = torch.tensor([[1.0, 0.0]])
    assert float(spherical_distance(u, u)) == pytest.approx(0.0, abs=1e-6)
    assert float(spherical_distance(u, torch.tensor([[0.0, 3.0]]))) == pytest.approx(2 * (math.pi / 4) ** 2)
    images = torch.rand(1, 3, 20, 30)
    cuts = make_cutouts(images, 8, cutn=3, cut_pow=1e-4, generator=torch.Generator().manual_seed(0))
    assert cuts.shape == (3, 3, 8, 8)
    small = torch.rand(2, 3, 8, 8)  # the image is CLIP-sized already: every cutout is the whole image
    cuts = make_cutouts(small, 8, cutn=2, cut_pow=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cuts, torch.cat([small, small]))


# ----------------------------------------------------------------------------------------- thresholds


def test_threshold_types():
    g = torch.tensor([[-3.0, 0.5, 2.0, 0.0]]).view(1, 1, 2, 2)
    assert threshold_gradient(g, "static", 1.0).flatten().tolist() == [-1.0, 0.5, 1.0, 0.0]
    # dynamic with v0.6's default 0.2: the 0.2nd percentile of |g| is < 1, so a plain +-1 clamp
    assert threshold_gradient(g, "dynamic", 0.2).flatten().tolist() == [-1.0, 0.5, 1.0, 0.0]
    # dynamic with the 100th percentile: s = max |g| = 3, everything divided by 3
    assert threshold_gradient(g, "dynamic", 100).flatten().tolist() == pytest.approx([-1.0, 0.5 / 3, 2 / 3, 0.0])
    rms = float(g.pow(2).mean().sqrt())
    assert float(threshold_gradient(g, "mean", 0.5).pow(2).mean().sqrt()) == pytest.approx(0.5)
    assert torch.equal(threshold_gradient(g, "mean", 10.0), g)  # under the threshold: unchanged
    tau = schedule_threshold(1, 4, 0.2, 0.01)
    assert tau == pytest.approx(0.2 - 0.19 / 4)
    assert float(threshold_gradient(g, "schedule", 0, step=1, n_steps=4).pow(2).mean().sqrt()) == pytest.approx(tau)
    assert rms > tau
    zero = torch.zeros(1, 1, 2, 2)
    for kind in ("dynamic", "static", "mean", "schedule"):
        out = threshold_gradient(zero, kind, 0.2)
        assert torch.equal(out, zero)  # no NaN for a zero gradient (v0.6's schedule divided by 0)
    with pytest.raises(SettingsError, match="grad_threshold_type"):
        threshold_gradient(g, "imagen", 0.2)


def test_mean_threshold_is_per_sample():
    g = torch.stack([torch.full((1, 2, 2), 4.0), torch.full((1, 2, 2), 0.1)])
    out = threshold_gradient(g, "mean", 1.0)
    assert out[0].flatten().tolist() == pytest.approx([1.0] * 4)
    assert out[1].flatten().tolist() == pytest.approx([0.1] * 4)


# ---------------------------------------------------------------------------------------- inject timing


@pytest.mark.parametrize("timing, n_steps, expected", [
    (None, 5, None),
    (1, 4, {0, 1, 2, 3}),
    (2, 5, {1, 3}),
    (3, 9, {2, 5, 8}),
    ([1, 3, 20], 5, {0, 2}),  # 1-based step numbers; past the run's steps: never
    ([0.5, 1.0], 50, {25, 49}),  # v0.6: int(f * steps), and the last step for 1.0
    ([0.0, 0.25], 8, {0, 2}),
    ((1, 2), 3, {0, 1}),  # a tuple counts as a list
])
def test_inject_steps(timing, n_steps, expected):
    got = inject_steps(timing, n_steps)
    assert (got is None and expected is None) or set(got) == expected


@pytest.mark.parametrize("timing", [0, -2, True, [], [0, 1], [1, 0.5], [1.5], "1,2", [-0.1]])
def test_inject_timing_rejects(timing):
    with pytest.raises(SettingsError, match="grad_inject_timing"):
        check_inject_timing(timing)


def test_inject_timing_past_the_steps_that_run_never_applies():
    check_inject_timing(51)  # accepted: a frame that runs fewer steps simply never reaches it (v0.6)
    assert inject_steps(51, 50) == frozenset()
    assert inject_steps([3, 99], 5) == {2}


