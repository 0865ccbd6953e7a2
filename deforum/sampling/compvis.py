"""DDIM and PLMS in k-diffusion's terms: the same denoiser D(x, sigma), the same sigma schedule.

In the variance-exploding coordinates x = x_ddpm / sqrt(a_t) used by every sampler here, eps = (x - D) / sigma
and sigma = sqrt((1 - a) / a), so DDIM's update (Song et al. 2021, eq. 12)
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z,
    s = eta sqrt((1-a_prev)/(1-a)) sqrt(1 - a/a_prev)
becomes x_prev = D + sigma_down * eps + sigma_up * z with (sigma_down, sigma_up) = get_ancestral_step(sigma,
sigma_prev, eta). PLMS (Liu et al. 2022) is the same step with eps replaced by its Adams-Bashforth
combination (a Heun-like step first). `run.sample` runs both on whole training timesteps
(`get_sigmas(..., integer_timesteps=True)`), so img2img and masks work exactly as for the k-samplers.
"""

from __future__ import annotations

import torch
from tqdm.auto import trange

from deforum.sampling.samplers import _report, default_noise_sampler, get_ancestral_step, nonzero_sigmas, to_d


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                noise_sampler=None):
    """DDIM (Song et al. 2021) with `eta` (0 = deterministic), one model call per step."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised + to_d(x, sigmas[i], denoised) * sigma_down
        if nonzero[i + 1] and eta:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


_ADAMS_BASHFORTH = {1: [1.0], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12],
                    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}


@torch.no_grad()
def sample_plms(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Pseudo linear multistep (Liu et al. 2022): a Heun-like first step, then 2nd-4th order
    Adams-Bashforth on eps with constant (timestep-uniform) coefficients, each followed by a DDIM step."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    old_eps: list[torch.Tensor] = []
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        eps = to_d(x, sigmas[i], denoised)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if not old_eps and nonzero[i + 1]:
            x_next = x + eps * dt
            eps_next = to_d(x_next, sigmas[i + 1], model(x_next, sigmas[i + 1] * s_in, **extra_args))
            eps_prime = (eps + eps_next) / 2
        else:
            history = [eps] + old_eps[::-1]
            eps_prime = sum(c * e for c, e in zip(_ADAMS_BASHFORTH[len(history)], history, strict=True))
        x = x + eps_prime * dt
        old_eps = (old_eps + [eps])[-3:]
    return x
