"""One entry point for every sampler: strength -> steps bookkeeping, the start latent, noise and masks.

v0.6 (spec 3.2, 3.3): t_enc = int((1 - strength) * steps) steps run, from the full schedule's sigma index
steps - t_enc; x = init_latent + noise * sigmas[0] (VE formulation, noise not scaled with the init).
strength 0 is txt2img, strength 1 returns the init latent without a model call.

Few steps: where v0.6's truncation gives 0 steps for 0 < strength < 1 (strength > 1 - 1/steps, e.g. any
strength > 0 at 1 step, strength > 0.75 at 4) v0.6 returned the init latent untouched (no model call, the
frame is the VAE round trip of its init). Here one step runs instead, from the sigma at timestep
(1 - strength) * 999 down to 0, so the strength still sets how much of the init is kept. Every case where
v0.6 ran >= 1 step is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deforum.errors import SettingsError
from deforum.sampling import registry, samplers
from deforum.sampling.denoisers import MaskPin

# name -> function, a live view of the registry (deforum/sampling/registry.py holds the one table).
SAMPLERS = registry.FUNCTIONS


def get_sampler(name: str) -> Callable:
    """The sampler function for a guide name; a SettingsError listing the valid names otherwise."""
    return registry.get(name).load()


def _v06_steps(steps: int, strength: float) -> int:
    return int((1.0 - strength) * steps)


def steps_to_run(steps: int, strength: float) -> int:
    """t_enc = int((1 - strength) * steps), v0.6's truncation (strength 0.8 of 50 steps runs 9, not 10);
    at least 1 when steps >= 1 and strength < 1 (v0.6 ran none where the truncation gave 0)."""
    t_enc = _v06_steps(steps, strength)
    if t_enc == 0 and steps >= 1 and strength < 1:
        return 1
    return t_enc


def schedule_for(denoiser, sampler_name: str, steps: int, strength: float,
                 karras: bool = False) -> torch.Tensor:
    """The sliced sigma sequence a run passes to its sampler: the last t_enc + 1 of get_sigmas(steps).

    Where v0.6's t_enc is 0 but a step runs (see ``steps_to_run``): [sigma(t = (1 - strength) * 999), 0].
    """
    spec = registry.get(sampler_name)
    t_enc = steps_to_run(steps, strength)
    if t_enc and not _v06_steps(steps, strength):
        return denoiser.get_sigmas(1, karras=karras, integer_timesteps=spec.integer_timesteps,
                                   start=1.0 - strength)
    sigmas = denoiser.get_sigmas(steps, karras=karras, integer_timesteps=spec.integer_timesteps)
    return sigmas[len(sigmas) - t_enc - 1:]


def sample(denoiser, sampler_name: str, steps: int, strength: float = 0.0, *,
           shape: tuple[int, ...] | None = None, init_latent: torch.Tensor | None = None,
           mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
           extra_args: dict | None = None, callback: Callable[[dict], None] | None = None,
           karras: bool = False, eta: float | None = None, device: torch.device | str | None = None,
           disable: bool | None = True, **sampler_kwargs) -> torch.Tensor:
    """Sample one latent with `sampler_name` (a guide name) through `denoiser` (usually a CFGDenoiser).

    `denoiser(x, sigma, **extra_args)` returns D(x, sigma) and has
    `get_sigmas(n, karras=..., integer_timesteps=...)`.
    Every random draw (start noise, mask-pin noise, per-step noise, in that order) comes from `generator`,
    a CPU torch.Generator, so a seed gives the same latent on any device. `mask` (latent-sized, 1 = keep
    the init) needs `init_latent`. `eta` is the ancestral/ddim eta (None = the sampler's default).
    """
    spec = registry.get(sampler_name)
    fn = spec.load()
    if init_latent is None and shape is None:
        raise SettingsError("sample() needs either init_latent or shape")
    if mask is not None and init_latent is None:
        raise SettingsError("a mask needs an init image (use_init)")
    if init_latent is not None:
        shape, device = tuple(init_latent.shape), init_latent.device if device is None else device
    device = torch.device(device or "cpu")

    def randn() -> torch.Tensor:
        return samplers.draw_noise(shape, generator, device)

    sigmas = schedule_for(denoiser, sampler_name, steps, strength, karras).to(device)
    start = (init_latent.to(device, torch.float32) if init_latent is not None
             else torch.zeros(shape, device=device))
    if len(sigmas) <= 1:
        return start
    x = start + randn() * sigmas[0]

    callbacks = [cb for cb in (MaskPin(start, mask.to(device), randn(), sigmas) if mask is not None else None,
                               callback) if cb is not None]

    def chained(info: dict) -> None:
        for cb in callbacks:
            cb(info)

    kwargs = dict(sampler_kwargs)
    if spec.takes_noise_sampler:
        kwargs["noise_sampler"] = lambda sigma, sigma_next: randn()
    if eta is not None and spec.takes_eta:
        kwargs["eta"] = eta
    if spec.call != "sigmas":
        return _dpm_solver(fn, denoiser, x, sigmas, steps, spec.call, extra_args, chained, disable, randn,
                           kwargs)
    return fn(denoiser, x, sigmas, extra_args=extra_args, callback=chained if callbacks else None,
              disable=disable, **kwargs)


def _dpm_solver(fn, denoiser, x, sigmas, steps, call, extra_args, callback, disable, randn, kwargs):
    """v0.6's dpm_fast/dpm_adaptive call: from sigmas[0] to the smallest non-zero sigma (nfe = steps).

    The run ends at sigma_min (v0.6 keeps that residual noise). When the range is empty (one step from the
    last non-zero sigma, where v0.6 produced NaNs) a single Euler step to 0 is taken instead.
    """
    sigma_max, sigma_min = sigmas[0], sigmas[sigmas > 0].min()
    if not sigma_max > sigma_min:
        return samplers.sample_euler(denoiser, x, sigmas[-2:], extra_args=extra_args, callback=callback,
                                     disable=disable)
    kwargs.setdefault("noise_sampler", lambda sigma, sigma_next: randn())
    if call == "dpm_solver_n":
        return fn(denoiser, x, sigma_min, sigma_max, steps, extra_args=extra_args, callback=callback,
                  disable=disable, **kwargs)
    return fn(denoiser, x, sigma_min, sigma_max, extra_args=extra_args, callback=callback, disable=disable,
              **kwargs)
