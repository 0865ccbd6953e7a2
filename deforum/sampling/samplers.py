"""k-diffusion-style samplers, written from their papers with k-diffusion's signatures and maths.

Every sampler is `sample_NAME(model, x, sigmas, extra_args=None, callback=None, disable=None, ...)` where
`model(x, sigma, **extra_args)` returns the denoised prediction D(x, sigma) and `sigmas` is a decreasing
noise schedule (usually ending in 0). `callback` gets k-diffusion's dict
{'x', 'i', 'sigma', 'sigma_hat', 'denoised'} once per step, after D is known and before x is updated, so
in-place edits of `x` (mask pinning) change the base of the step.

Randomness: every draw goes through `noise_sampler(sigma, sigma_next)`. The default draws from torch's
global CPU generator; `run.sample` passes one built on a seeded CPU `torch.Generator`, so the same seed gives
the same image on any device. v0.6's euler/heun/dpm2 drew an unused `randn_like` every step; here noise is
only drawn when it is used (s_churn > 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import trange

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dimensions so `x` broadcasts against a `target_dims`-d tensor."""
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """The noise schedule of Karras et al. (2022), eq. 5, with a final 0 appended."""
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return append_zero((hi + ramp * (lo - hi)) ** rho).to(device)


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dsigma = (x - D(x, sigma)) / sigma."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def get_ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step sigma_from -> sigma_to into a deterministic step to sigma_down plus noise sigma_up."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
    if isinstance(sigma_up, torch.Tensor):  # Python's min() would read a comparison back to the host (a GPU sync)
        sigma_up = torch.minimum(torch.as_tensor(sigma_to, dtype=sigma_up.dtype, device=sigma_up.device), sigma_up)
    else:
        sigma_up = min(sigma_to, sigma_up)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def default_noise_sampler(x: torch.Tensor, generator: torch.Generator | None = None) -> NoiseSampler:
    """Standard normal noise shaped like `x`, drawn on the CPU (from `generator` if given) then moved."""
    def noise(sigma, sigma_next):
        return draw_noise(x.shape, generator, x.device).to(x.dtype)
    return noise


def draw_noise(shape, generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Standard normal float32 noise drawn on the CPU, then moved to ``device``.

    On CUDA the draw goes to pinned memory and is copied without blocking, so the CPU does not wait for
    the GPU to finish its queued work (a plain ``.to('cuda')`` of pageable memory does).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32, pin_memory=True)
    return noise.to(device, non_blocking=True)


def nonzero_sigmas(sigmas: torch.Tensor) -> list[bool]:
    """``sigma != 0`` for every sigma, read to the host once (per-step ``if sigmas[i + 1] > 0`` would sync)."""
    return (sigmas != 0).tolist()


def _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler):
    """Karras et al. Algorithm 2 lines 5-7: raise sigma_i to sigma_hat by adding fresh noise."""
    # s_churn is tested first: the sigma range test reads a tensor back to the host.
    in_range = s_churn > 0 and s_tmin <= sigmas[i] <= s_tmax
    gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if in_range else 0.0
    sigma_hat = sigmas[i] * (gamma + 1)
    if gamma > 0:
        x = x + noise_sampler(sigmas[i], sigma_hat) * s_noise * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


def _report(callback, x, i, sigma, sigma_hat, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Karras et al. (2022) Algorithm 2 with Euler steps."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                           s_noise=1.0, noise_sampler=None):
    """Ancestral sampling with Euler steps (Song et al. 2021 reverse SDE, discretised as in k-diffusion)."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if nonzero[i + 1]:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """Karras et al. (2022) Algorithm 2 (Heun's 2nd-order method; Euler on the final step to 0)."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if not nonzero[i + 1]:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, disable=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0, noise_sampler=None):
    """DPM-Solver-2 (Lu et al. 2022) midpoint in log-sigma inside Karras et al. Algorithm 2."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise, noise_sampler)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _report(callback, x, i, sigmas[i], sigma_hat, denoised)
        if not nonzero[i + 1]:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                           s_noise=1.0, noise_sampler=None):
    """Ancestral sampling with DPM-Solver-2 steps to sigma_down, then noise sigma_up."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def linear_multistep_coeff(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial of node t_{i-j} on t_i..t_{i-order+1}.

    The integrand is a polynomial, so it is integrated exactly (k-diffusion uses scipy quad; same value).
    """
    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")
    others = [t[i - k] for k in range(order) if k != j]
    poly = np.polynomial.Polynomial.fromroots(others) if others else np.polynomial.Polynomial([1.0])
    poly = poly / np.prod([t[i - j] - o for o in others])
    antiderivative = poly.integ()
    return float(antiderivative(t[i + 1]) - antiderivative(t[i]))


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, disable=None, order=4):
    """Linear multistep (Adams-Bashforth on the non-uniform sigma grid), k-diffusion's 'lms'."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().double().numpy()
    ds: list[torch.Tensor] = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds = (ds + [to_d(x, sigmas[i], denoised)])[-order:]
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        cur_order = min(i + 1, order)
        coeffs = [linear_multistep_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=False))
    return x


class PIDStepSizeController:
    """PID step-size control in the form of Söderlind (2003), as used by DPM-Solver adaptive."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error] * 3
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


class DPMSolver:
    """DPM-Solver (Lu et al. 2022) in lambda = -log(sigma), with eps = (x - D(x, sigma)) / sigma."""

    def __init__(self, model, extra_args=None, eps_callback=None, info_callback=None):
        self.model = model
        self.extra_args = extra_args or {}
        self.eps_callback = eps_callback
        self.info_callback = info_callback
        self.nfe = 0

    @staticmethod
    def t(sigma):
        return -sigma.log()

    @staticmethod
    def sigma(t):
        return t.neg().exp()

    def eps(self, cache: dict, key: str, x, t):
        """The eps prediction at (x, t), memoised per step under `key` so a model call is never repeated."""
        if key not in cache:
            sigma = self.sigma(t)
            cache[key] = (x - self.model(x, sigma * x.new_ones([x.shape[0]]), **self.extra_args)) / sigma
            self.nfe += 1
            if self.eps_callback is not None:
                self.eps_callback()
        return cache[key]

    def dpm_solver_1_step(self, x, t, t_next, cache):
        h = t_next - t
        return x - self.sigma(t_next) * h.expm1() * self.eps(cache, "eps", x, t)

    def dpm_solver_2_step(self, x, t, t_next, cache, r1=1 / 2):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return (x - self.sigma(t_next) * h.expm1() * eps
                - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps))

    def dpm_solver_3_step(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return (x - self.sigma(t_next) * h.expm1() * eps
                - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps))

    def _step(self, order, x, t, t_next, cache):
        if order == 1:
            return self.dpm_solver_1_step(x, t, t_next, cache)
        if order == 2:
            return self.dpm_solver_2_step(x, t, t_next, cache)
        return self.dpm_solver_3_step(x, t, t_next, cache)

    def _ancestral(self, t, t_next, t_end, eta):
        """Target t_next' and noise sigma_up of an ancestral step (no noise when eta == 0)."""
        if not eta:
            return t_next, 0.0
        sd, _ = get_ancestral_step(self.sigma(t), self.sigma(t_next), eta)
        t_next_ = torch.minimum(t_end, self.t(sd))
        return t_next_, (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5

    def dpm_solver_fast(self, x, t_start, t_end, nfe, eta=0.0, s_noise=1.0, noise_sampler=None):
        """DPM-Solver-fast: nfe calls over m = nfe // 3 + 1 uniform lambda intervals, orders 3,..,3,2,1."""
        noise_sampler = noise_sampler or default_noise_sampler(x)
        if not t_end > t_start and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        m = nfe // 3 + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i, order in enumerate(orders):
            cache: dict = {}
            t, t_next = ts[i], ts[i + 1]
            t_next_, su = self._ancestral(t, t_next, t_end, eta)
            eps = self.eps(cache, "eps", x, t)
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t,
                                    "denoised": x - self.sigma(t) * eps})
            x = self._step(order, x, t, t_next_, cache)
            x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def dpm_solver_adaptive(self, x, t_start, t_end, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
                            icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0,
                            noise_sampler=None):
        """Adaptive DPM-Solver: embedded (1,2) or (2,3) pairs with a PID step-size controller."""
        noise_sampler = noise_sampler or default_noise_sampler(x)
        if order not in {2, 3}:
            raise ValueError("order should be 2 or 3")
        forward = t_end > t_start
        if not forward and eta:
            raise ValueError("eta must be 0 for reverse sampling")
        h_init = abs(h_init) * (1 if forward else -1)
        atol, rtol = torch.tensor(atol), torch.tensor(rtol)
        s, x_prev = t_start, x
        pid = PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        info = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        while s < t_end - 1e-5 if forward else s > t_end + 1e-5:
            cache: dict = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            t_, su = self._ancestral(s, t, t_end, eta)
            eps = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low = self.dpm_solver_1_step(x, s, t_, cache)
                x_high = self.dpm_solver_2_step(x, s, t_, cache)
            else:
                x_low = self.dpm_solver_2_step(x, s, t_, cache, r1=1 / 3)
                x_high = self.dpm_solver_3_step(x, s, t_, cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t))
                s = t
                info["n_accept"] += 1
            else:
                info["n_reject"] += 1
            info["nfe"] = self.nfe
            info["steps"] += 1
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": info["steps"] - 1, "t": s, "t_up": s, "denoised": denoised,
                                    "error": error, "h": pid.h, **info})
        return x, info


def _solver(model, extra_args, callback):
    solver = DPMSolver(model, extra_args)
    if callback is not None:
        solver.info_callback = lambda info: callback(
            {"sigma": solver.sigma(info["t"]), "sigma_hat": solver.sigma(info["t_up"]), **info})
    return solver


def _as_tensor(value) -> torch.Tensor:
    return value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(value)


@torch.no_grad()
def sample_dpm_fast(model, x, sigma_min, sigma_max, n, extra_args=None, callback=None, disable=None, eta=0.0,
                    s_noise=1.0, noise_sampler=None):
    """DPM-Solver-fast (Lu et al. 2022, section 3.4) from sigma_max to sigma_min with n model calls."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    solver = _solver(model, extra_args, callback)
    return solver.dpm_solver_fast(x, solver.t(_as_tensor(sigma_max)), solver.t(_as_tensor(sigma_min)), n, eta,
                                  s_noise, noise_sampler)


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigma_min, sigma_max, extra_args=None, callback=None, disable=None, order=3,
                        rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0,
                        accept_safety=0.81, eta=0.0, s_noise=1.0, noise_sampler=None, return_info=False):
    """DPM-Solver-12 / DPM-Solver-23 with adaptive step size (Lu et al. 2022, section 3.4)."""
    if sigma_min <= 0 or sigma_max <= 0:
        raise ValueError("sigma_min and sigma_max must not be 0")
    solver = _solver(model, extra_args, callback)
    x, info = solver.dpm_solver_adaptive(x, solver.t(_as_tensor(sigma_max)), solver.t(_as_tensor(sigma_min)),
                                         order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety,
                                         eta, s_noise, noise_sampler)
    return (x, info) if return_info else x


def _t(sigma):
    return sigma.log().neg()


def _sigma(t):
    return t.neg().exp()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0,
                              s_noise=1.0, noise_sampler=None):
    """Ancestral sampling with DPM-Solver++(2S) steps (Lu et al. 2022b, Algorithm 1 with r = 1/2)."""
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_2 = model(x_2, _sigma(s) * s_in, **extra_args)
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if nonzero[i + 1]:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                     noise_sampler=None, r=1 / 2):
    """DPM-Solver++ (stochastic, 2 stages per step).

    k-diffusion draws this noise from a torchsde BrownianTree; here it comes from `noise_sampler` (a seeded
    CPU generator), so the maths is identical but a given seed gives different noise than k-diffusion.
    """
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if not nonzero[i + 1]:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        # Stage 1: an ancestral first-order step to the intermediate time s.
        sd, su = get_ancestral_step(_sigma(t), _sigma(s), eta)
        s_ = _t(sd)
        x_2 = (_sigma(s_) / _sigma(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise_sampler(_sigma(t), _sigma(s)) * s_noise * su
        denoised_2 = model(x_2, _sigma(s) * s_in, **extra_args)
        # Stage 2: the full step with the two predictions mixed, plus its own ancestral noise.
        sd, su = get_ancestral_step(_sigma(t), _sigma(t_next), eta)
        t_next_ = _t(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (_sigma(t_next_) / _sigma(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise_sampler(_sigma(t), _sigma(t_next)) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or not nonzero[i + 1]:
            denoised_d = denoised
        else:
            r = (t - _t(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE; noise from `noise_sampler` instead of k-diffusion's BrownianTree default."""
    if solver_type not in {"heun", "midpoint"}:
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h_last, h = None, None, None
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if not nonzero[i + 1]:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = eta * h
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + (-h - eta_h).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    coeff = (-h - eta_h).expm1().neg() / (-h - eta_h) + 1
                else:
                    coeff = 0.5 * (-h - eta_h).expm1().neg()
                x = x + coeff * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + (noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * eta_h).expm1().neg().sqrt() * s_noise)
        old_denoised, h_last = denoised, h
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise_sampler=None):
    """The Latent Consistency Model multistep sampler (Luo et al. 2023, Algorithm 1) on the sigma schedule.

    Each step takes the model's prediction of the clean latent, D(x, sigma_i), as the new x, then re-noises it
    to the next sigma with fresh noise: x = D + sigma_{i+1} * z (in the variance-exploding coordinates used
    here, the forward process q(x_t | x_0)). The last step (sigma_{i+1} = 0) returns D itself. One model call
    per step; the noise comes from `noise_sampler` (the run's seeded generator). This is the multistep
    consistency sampling that LCM, LCM-LoRA, SD-Turbo and SDXL-Turbo were distilled for (1-8 steps). LCM's
    boundary-condition scalings (c_skip, c_out) are not applied: at every timestep t >= 1 they are within
    3e-3 of (0, 1), and at t = 0 (sigma_min, about 0.03) D(x) differs from x by less than the noise left.
    """
    extra_args = extra_args or {}
    noise_sampler = noise_sampler or default_noise_sampler(x)
    s_in = x.new_ones([x.shape[0]])
    nonzero = nonzero_sigmas(sigmas)
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _report(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if nonzero[i + 1]:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigmas[i + 1]
    return x
