"""Few-step distilled models (SD-Turbo, SDXL-Turbo, LCM): the lcm sampler, the schedule's first timestep,
one UNet call per step at cfg <= 1, and at least one step wherever v0.6's truncation ran none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CountingDenoiser, oracle_alphas_cumprod

from deforum.sampling import CFGDenoiser, DiscreteSchedule, sample, schedule_for, steps_to_run
from deforum.sampling.samplers import sample_lcm

ALPHAS = oracle_alphas_cumprod()


# -- the tiny model, its UNet calls counted ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_generator():
    from deforum.generate import Generator
    from deforum.models import load_model
    from deforum.testing import oracle_checkpoint, oracle_config

    return Generator(load_model(oracle_checkpoint(), oracle_config()))


@pytest.fixture
def unet_calls(tiny_generator):
    """The batch size of every real forward call of the tiny model's UNet during the test."""
    calls: list[int] = []
    handle = tiny_generator.model.unet.register_forward_hook(lambda module, args, kwargs, out: calls.append(
        int(args[0].shape[0])), with_kwargs=True)
    yield calls
    handle.remove()


def request(steps: int, scale: float, sampler: str = "euler", **overrides):
    from deforum.generate import GenerationRequest

    fields = dict(seed=7, W=64, H=64, prompt="a red cat", steps=steps, scale=scale, sampler=sampler)
    return GenerationRequest(**{**fields, **overrides})


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "lcm"])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_cfg_one_makes_one_unet_call_per_step_and_cfg_above_one_a_pair(tiny_generator, unet_calls, sampler,
                                                                       steps):
    image = tiny_generator.generate(request(steps, 1.0, sampler))
    assert torch.isfinite(image).all()
    assert unet_calls == [1] * steps                      # one call of batch 1 per step, no unconditional pass
    unet_calls.clear()
    tiny_generator.generate(request(steps, 7.5, sampler))
    assert unet_calls == [2] * steps                      # [uncond, cond] batched: one call of batch 2 per step
    unet_calls.clear()
    tiny_generator.generate(request(steps, 7.5, sampler, cond_uncond_sync=False))
    assert unet_calls == [1] * (2 * steps)                # or the two passes one after the other


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_cfg_below_one_means_no_guidance(tiny_generator, unet_calls, scale):
    """scale < 1 is "no CFG" (diffusers' / A1111's guidance_scale <= 1): the conditional prediction alone,
    one call per step, the same image as scale 1 (not the uncond + s * (cond - uncond) mix)."""
    image = tiny_generator.generate(request(2, scale, "lcm"))
    assert unet_calls == [1, 1]
    assert torch.equal(image, tiny_generator.generate(request(2, 1.0, "lcm")))
    assert not torch.equal(image, tiny_generator.generate(request(2, 7.5, "lcm")))


def test_cfg_denoiser_skips_the_unconditional_pass_at_and_below_one():
    calls = []

    def inner(x, sigma, cond=None):
        calls.append(cond)
        return x * 0 + cond

    cfg = CFGDenoiser(inner)
    x, sigma = torch.zeros(1, 1, 1, 1), torch.ones(1)
    cond, uncond = torch.full((1, 1, 1, 1), 2.0), torch.full((1, 1, 1, 1), -1.0)
    for scale in (0.0, 0.3, 1.0):
        calls.clear()
        assert float(cfg(x, sigma, uncond=uncond, cond=cond, cond_scale=scale)) == 2.0
        assert len(calls) == 1
    calls.clear()
    assert float(cfg(x, sigma, uncond=uncond, cond=cond, cond_scale=1.5)) == pytest.approx(-1 + 1.5 * 3)
    assert len(calls) == 1 and calls[0].shape[0] == 2       # one batched [uncond, cond] pass


# -- at least one step -------------------------------------------------------------------------------------

def test_one_step_at_strength_0_3_runs_one_step(tiny_generator, unet_calls):
    """v0.6: int(1 * (1 - 0.3)) = 0 steps, the init latent came back untouched. Now one step runs, from the
    sigma at timestep 0.7 * 999."""
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for sampler in ("euler", "euler_ancestral", "lcm"):
        unet_calls.clear()
        image = tiny_generator.generate(request(1, 1.0, sampler, init_latent=init, strength=0.3))
        assert unet_calls == [1]
        assert torch.isfinite(image).all()
    unet_calls.clear()
    tiny_generator.generate(request(1, 7.5, "euler", init_latent=init, strength=0.3))
    assert unet_calls == [2]

    denoiser = CountingDenoiser()
    out = sample(denoiser, "euler", 1, 0.3, init_latent=init, generator=torch.Generator().manual_seed(1))
    expected = float(DiscreteSchedule(ALPHAS).t_to_sigma(torch.tensor(0.7 * 999)))
    assert denoiser.sigmas == [pytest.approx(expected, rel=1e-6)]
    assert not torch.equal(out, init) and torch.isfinite(out).all()


def test_the_step_start_follows_the_strength():
    """More strength keeps more of the init: the one step starts lower, and strength 1 still runs none."""
    starts = [float(schedule_for(CountingDenoiser(), "euler", 2, s)[0]) for s in (0.55, 0.7, 0.9, 0.99)]
    assert starts == sorted(starts, reverse=True)
    assert steps_to_run(1, 1.0) == 0
    assert len(schedule_for(CountingDenoiser(), "euler", 1, 1.0)) == 1
    for name in ("ddim", "plms", "dpm_fast", "dpm_adaptive", "dpmpp_2m", "heun"):
        denoiser = CountingDenoiser()
        out = sample(denoiser, name, 1, 0.5, init_latent=torch.ones(1, 4, 8, 8),
                     generator=torch.Generator().manual_seed(1))
        assert torch.isfinite(out).all() and 1 <= len(denoiser.sigmas) <= 3, name


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6, 8, 20, 50])
def test_v06_step_counts_stay_wherever_they_were_at_least_one(steps):
    sched = CountingDenoiser()
    for strength in np.round(np.linspace(0, 1, 101), 2).tolist():
        v06 = int((1.0 - strength) * steps)
        if v06 >= 1 or strength == 1.0:
            assert steps_to_run(steps, strength) == v06
            full = sched.get_sigmas(steps)
            assert torch.equal(schedule_for(sched, "euler", steps, strength), full[len(full) - v06 - 1:])
        else:
            assert steps_to_run(steps, strength) == 1
            sigmas = schedule_for(sched, "euler", steps, strength)
            assert len(sigmas) == 2 and float(sigmas[-1]) == 0


# -- the schedule: the first timestep is the last training timestep ("trailing") ----------------------------

@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_few_step_schedules_start_at_the_last_timestep(n, karras):
    schedule = DiscreteSchedule(ALPHAS)
    sigmas = schedule.get_sigmas(n, karras=karras)
    assert len(sigmas) == n + 1 and float(sigmas[-1]) == 0
    assert float(sigmas[0]) == pytest.approx(float(schedule.sigmas[-1]), rel=1e-6)
    assert float(schedule.sigma_to_t(sigmas[:1])) == pytest.approx(999, abs=1e-3)


# -- the lcm sampler ---------------------------------------------------------------------------------------

def test_lcm_is_denoise_then_renoise_with_the_runs_noise():
    denoiser = CountingDenoiser()
    sigmas = denoiser.get_sigmas(4)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    draws = torch.randn(3, 1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    it = iter(draws)
    out = sample_lcm(denoiser, x0, sigmas, noise_sampler=lambda s, s_next: next(it), disable=True)
    x = x0
    for i in range(4):
        x = x / (1 + sigmas[i] ** 2)
        if i < 3:
            x = x + draws[i] * sigmas[i + 1]
    torch.testing.assert_close(out, x)
    assert len(denoiser.sigmas) == 4


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_lcm_renders_finite_images_on_the_tiny_model(tiny_generator, steps):
    image = tiny_generator.generate(request(steps, 1.0, "lcm"))
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    again = tiny_generator.generate(request(steps, 1.0, "lcm"))
    assert torch.equal(image, again)                       # the noise comes from the request's seed
    other = tiny_generator.generate(request(steps, 1.0, "lcm", seed=8))
    assert not torch.equal(image, other)


def test_lcm_with_init_and_mask():
    model_out = sample(CountingDenoiser(), "lcm", 4, 0.5, init_latent=torch.ones(1, 4, 8, 8),
                       mask=torch.ones(1, 1, 8, 8), generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(model_out).all()


def test_lcm_is_in_the_sampler_dropdown_docs_and_notebook():
    from deforum.settings import FIELDS, SAMPLERS
    from deforum.settings import docs as settings_docs

    assert "lcm" in SAMPLERS and "lcm" in FIELDS["args"]["sampler"].choices
    assert "'lcm'" in settings_docs.settings_markdown()
    root = Path(__file__).resolve().parents[1]
    assert "lcm" in (root / "docs/settings.md").read_text()
    assert '\\"lcm\\"]' in (root / "Deforum_Stable_Diffusion.ipynb").read_text()   # the sampler form line
