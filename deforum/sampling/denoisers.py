"""The model's discrete noise schedule and the denoiser wrappers around it (callables around callables).

`EpsDenoiser(model)` / `VDenoiser(model)` turn an LDM (`apply_model(x, t, cond)`, `alphas_cumprod`,
`parameterization`) into k-diffusion's D(x, sigma) (k-diffusion's CompVisDenoiser / CompVisVDenoiser
maths); `CFGDenoiser` mixes the conditional and unconditional predictions (``Conditioning`` values, or bare
cross-attention tensors); `MaskPin` is the per-step
callback that pins masked latent pixels to the noised init (spec 5.4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deforum.conditioning import CondLike
from deforum.conditioning import cat as cat_conditioning
from deforum.sampling.samplers import append_dims, append_zero, get_sigmas_karras


class DiscreteSchedule:
    """sigma_t = sqrt((1 - a_t) / a_t) for the 1000 training timesteps, with log-sigma interpolation between.

    The arithmetic runs in the dtype of `alphas_cumprod`: float32 is the correct choice (what the denoisers
    use); float16 reproduces v0.6's half-precision table (spec 3.1).
    """

    def __init__(self, alphas_cumprod: torch.Tensor):
        a = alphas_cumprod.detach()
        self.sigmas = ((1 - a) / a) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep whose interpolated log-sigma equals log(sigma) (clamped to [0, 999])."""
        log_sigma = sigma.log()
        table = self.log_sigmas.to(log_sigma.device)
        low_idx = torch.searchsorted(table.to(log_sigma.dtype), log_sigma.reshape(-1), right=True) - 1
        low_idx = low_idx.clamp(0, len(table) - 2).reshape(sigma.shape)
        low, high = table[low_idx], table[low_idx + 1]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return (1 - w) * low_idx + w * (low_idx + 1)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        table = self.log_sigmas.to(t.device)
        low_idx, high_idx, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * table[low_idx] + w * table[high_idx]).exp()

    def get_sigmas(self, n: int, *, karras: bool = False, integer_timesteps: bool = False,
                   start: float = 1.0) -> torch.Tensor:
        """n sigmas from sigma_max down, plus a final 0 (v0.6: t = linspace(999, 0, n), fractional).

        The first sigma sits at the last training timestep (t = 999), as "trailing" spacing requires for
        few-step distilled models: n = 1 gives t = [999], n = 2 [999, 0], n = 4 [999, 666, 333, 0] (diffusers'
        trailing spacing: [999], [999, 499], [999, 749, 499, 249]).
        `karras` uses Karras et al.'s rho=7 spacing between the same end points; `integer_timesteps` rounds
        t to whole training timesteps (ddim/plms). `start` (0-1] moves the first timestep to
        start * 999 (the one step a few-step img2img runs, see ``run.schedule_for``).
        """
        device = self.sigmas.device
        last = len(self.sigmas) - 1
        if karras:
            top = self.sigma_max if start == 1.0 else self.t_to_sigma(torch.tensor(start * last, device=device))
            return get_sigmas_karras(n, float(self.sigma_min), float(top), device=device)
        t = torch.linspace(last if start == 1.0 else start * last, 0, n, device=device)
        if integer_timesteps:
            t = t.round()
        return append_zero(self.t_to_sigma(t))


class EpsDenoiser:
    """D(x, sigma) = x - sigma * eps(x / sqrt(sigma^2 + 1), t(sigma), cond) for eps-prediction models."""

    def __init__(self, model):
        self.model = model
        self.schedule = DiscreteSchedule(model.alphas_cumprod.float())

    def get_sigmas(self, n: int, **kwargs) -> torch.Tensor:
        return self.schedule.get_sigmas(n, **kwargs)

    def get_scalings(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in)."""
        return torch.ones_like(sigma), -sigma, 1 / (sigma ** 2 + 1) ** 0.5

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: CondLike | None = None) -> torch.Tensor:
        c_skip, c_out, c_in = (append_dims(c, x.ndim) for c in self.get_scalings(sigma))
        dtype = getattr(self.model, "dtype", x.dtype)
        if cond is not None:
            cond = cond.to(dtype)
        out = self.model.apply_model((x * c_in).to(dtype), self.schedule.sigma_to_t(sigma), cond)
        return x * c_skip + out.to(x.dtype) * c_out


class VDenoiser(EpsDenoiser):
    """D(x, sigma) for v-prediction models (SD 2.x 768-v), sigma_data = 1."""

    def get_scalings(self, sigma: torch.Tensor):
        c_skip = 1 / (sigma ** 2 + 1)
        c_out = -sigma / (sigma ** 2 + 1) ** 0.5
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        return c_skip, c_out, c_in


def make_denoiser(model) -> EpsDenoiser:
    """The denoiser wrapper that matches `model.parameterization` ('eps' or 'v')."""
    kind = getattr(model, "parameterization", "eps")
    if kind == "eps":
        return EpsDenoiser(model)
    if kind == "v":
        return VDenoiser(model)
    from deforum.errors import ModelError
    raise ModelError(f"model parameterization {kind!r} is not supported; expected 'eps' or 'v'")


def dynamic_threshold_x0(x0: torch.Tensor, percentile: float) -> torch.Tensor:
    """v0.6's dynamic threshold: s = max(1, max per-sample `percentile` (0-100) of |x0|); clamp ±s, /s."""
    q = torch.quantile(x0.detach().abs().flatten(1).float(), percentile / 100, dim=1)
    s = max(1.0, float(q.max()))
    return x0.clamp(-s, s) / s


class CFGDenoiser:
    """Classifier-free guidance: D_u + (D_c - D_u) * cond_scale, batched as [uncond, cond] when in sync.

    `cond_uncond_sync=False` runs the two predictions one after the other (less memory, same result).
    With `cond_scale <= 1` or no uncond only the conditional prediction runs: one model call per step (at
    scale 1 the formula gives D_c anyway; v0.6 crashed there). A scale below 1 means "no guidance", as
    diffusers' and A1111's ``guidance_scale <= 1``: the result is D_c, not the mix D_u + (D_c - D_u) * scale
    (which would pull towards the unconditional/negative prediction). Distilled few-step models (SD-Turbo,
    SDXL-Turbo, LCM) are run this way, at scale 0 or 1.
    `dynamic_threshold` (a percentile, 0-100) and `static_threshold` (a bound) act on the guided x0.
    """

    def __init__(self, inner: Callable[..., torch.Tensor], cond_uncond_sync: bool = True,
                 dynamic_threshold: float | None = None, static_threshold: float | None = None):
        self.inner = inner
        self.cond_uncond_sync = cond_uncond_sync
        self.dynamic_threshold = dynamic_threshold
        self.static_threshold = static_threshold

    def get_sigmas(self, n: int, **kwargs) -> torch.Tensor:
        """The inner denoiser's schedule (so `run.sample` can take the wrapper directly)."""
        return self.inner.get_sigmas(n, **kwargs)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, uncond: CondLike | None = None,
                 cond: CondLike | None = None, cond_scale: float = 1.0) -> torch.Tensor:
        if uncond is None or cond_scale <= 1:
            denoised = self.inner(x, sigma, cond=cond)
        else:
            if self.cond_uncond_sync:
                both = self.inner(torch.cat([x] * 2), torch.cat([sigma] * 2), cond=cat_conditioning([uncond, cond]))
                d_uncond, d_cond = both.chunk(2)
            else:
                d_uncond = self.inner(x, sigma, cond=uncond)
                d_cond = self.inner(x, sigma, cond=cond)
            denoised = d_uncond + (d_cond - d_uncond) * cond_scale
        if self.dynamic_threshold is not None:
            denoised = dynamic_threshold_x0(denoised, self.dynamic_threshold)
        if self.static_threshold is not None:
            denoised = denoised.clamp(-self.static_threshold, self.static_threshold)
        return denoised


class MaskPin:
    """Per-step callback pinning masked latent pixels to the init noised to the current sigma (spec 5.4).

    At step i, pixels with m >= q_i and m != 0 are replaced in place by init_latent + noise * sigma_i,
    where q = ascending sort of sigmas / max(sigmas) (the run's sliced schedule). White (1) keeps the init,
    black (0) is regenerated, grey is pinned during the early, noisy steps only. `noise` is fixed per image.
    Samplers whose step index runs past the schedule (dpm_fast, dpm_adaptive) use its last threshold.
    """

    def __init__(self, init_latent: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor,
                 sigmas: torch.Tensor):
        self.init_latent = init_latent
        self.mask = mask
        self.noise = noise
        self.thresholds = (sigmas / sigmas.max()).sort().values.tolist()

    def __call__(self, info: dict) -> None:
        x, i = info["x"], min(int(info["i"]), len(self.thresholds) - 1)
        pinned = (self.mask >= self.thresholds[i]) & (self.mask != 0)
        sigma = torch.as_tensor(info["sigma"]).reshape(-1)[0]
        x.copy_(torch.where(pinned, self.init_latent + self.noise * sigma, x))
