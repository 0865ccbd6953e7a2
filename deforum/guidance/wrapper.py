"""Gradient conditioning as a denoiser wrapper (spec generation 4.2, 6.10-6.13).

``GradientGuide`` holds the losses and knobs (built once per run by ``make_denoiser_wrapper``); the
Generator calls it with its CFG denoiser for every image and gets a ``ConditionedDenoiser``, then calls
``begin(sigmas, sampler=..., prompt=...)`` with the sigma schedule that image actually runs.

On a conditioning step the summed loss ``sum_k scale_k * loss_k(decode(D))`` is differentiated with respect
to the x0 prediction D (``gradient_wrt='x0_pred'``, one UNet pass) or to x (``'x'``, one pass plus its
backward through the frozen UNet), the negative gradient g is thresholded, and the step is nudged by
sigma * g: x moves to x + sigma g and the returned prediction is D + sigma g (``x0_pred``) or D(x + sigma g)
(``x``). These are v0.6's magnitudes (mean-reduced losses, the effective +-1 clamp of 'dynamic', the
sigma-scaled addition), so tuned scales keep their strength.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from deforum.conditioning import CondLike
from deforum.errors import SettingsError
from deforum.sampling.samplers import append_dims

GRADIENT_WRT = ("x", "x0_pred")
GRADIENT_ADD_TO = ("cond", "uncond", "both")
DECODE_METHODS = ("autoencoder", "linear")
THRESHOLD_TYPES = ("dynamic", "static", "mean", "schedule")
# Samplers whose corrector evaluates the model at the *next* step's sigma: that call belongs to this step
# (heun on every step but the last, plms on its first step only).
_CORRECTS_AT_NEXT_SIGMA: dict[str, Callable[[int], bool]] = {"heun": lambda i: True, "plms": lambda i: i == 0}
_SIGMA_RTOL = 1e-5


class Applied(NamedTuple):
    """One conditioned model evaluation: its run step, sigma, and the thresholded gradient's max |g| and RMS."""

    step: int
    sigma: float
    absmax: float
    rms: float


@dataclass
class GuideLoss:
    """One active loss: ``scale * fn(x_dec)``; ``name`` is its ``*_scale`` field."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    scale: float


# ------------------------------------------------------------------------------- grad_inject_timing


def check_inject_timing(timing: Any) -> None:
    """SettingsError unless ``grad_inject_timing`` has one of its four forms (the rule lives in deforum.settings)."""
    from deforum.settings.resolve import inject_timing_problem

    problem = inject_timing_problem(list(timing) if isinstance(timing, tuple) else timing)
    if problem:
        raise SettingsError(f"grad_inject_timing: {problem}; got {timing!r}")


def inject_steps(timing: Any, n_steps: int) -> frozenset[int] | None:
    """0-based indices, among the ``n_steps`` steps a run actually takes, that get the gradient; None = all.

    int n: steps n, 2n, ... (1-based); list of ints: those 1-based step numbers (past n_steps: never);
    list of floats f: index int(f * n_steps), and the last step for 1.0 (v0.6's 0-based rounding).
    """
    check_inject_timing(timing)
    if timing is None:
        return None
    if isinstance(timing, int):
        return frozenset(i for i in range(n_steps) if (i + 1) % timing == 0)
    if all(isinstance(v, int) for v in timing):
        return frozenset(v - 1 for v in timing if v <= n_steps)
    return frozenset(min(int(f * n_steps), n_steps - 1) for f in timing)


# ---------------------------------------------------------------------------------------- thresholds


def threshold_gradient(g: torch.Tensor, kind: str, threshold: float, *, step: int = 0, n_steps: int = 1,
                       clamp_start: float = 0.2, clamp_stop: float = 0.01) -> torch.Tensor:
    """The summed gradient after ``grad_threshold_type`` (spec 6.11), never in place.

    dynamic: s = max(1, max_b percentile_threshold(|g_b|)) (a 0-100 percentile), clamp to +-s, divide by s;
    static: clamp to +-threshold; mean: per sample, scale down to RMS <= threshold; schedule: scale the whole
    tensor down to RMS <= clamp_start + (clamp_stop - clamp_start) * step / n_steps (a zero gradient stays 0).
    """
    if kind == "dynamic":
        q = torch.quantile(g.detach().abs().flatten(1).float(), min(max(threshold, 0.0), 100.0) / 100, dim=1)
        s = max(1.0, float(q.max()))
        return g.clamp(-s, s) / s
    if kind == "static":
        return g.clamp(-threshold, threshold)
    if kind == "mean":
        rms = g.pow(2).flatten(1).mean(1).sqrt()
        factor = torch.where(rms > threshold, threshold / rms.clamp_min(1e-30), torch.ones_like(rms))
        return g * append_dims(factor, g.ndim)
    if kind == "schedule":
        tau = schedule_threshold(step, n_steps, clamp_start, clamp_stop)
        rms = float(g.pow(2).mean().sqrt())
        return g if rms <= tau or rms == 0 else g * (tau / rms)
    raise SettingsError(f"grad_threshold_type: {kind!r} is not one of {', '.join(map(repr, THRESHOLD_TYPES))}")


def schedule_threshold(step: int, n_steps: int, clamp_start: float, clamp_stop: float) -> float:
    """The 'schedule' threshold at 0-based run step ``step``: linear from clamp_start (v0.6: i / steps)."""
    return clamp_start + (clamp_stop - clamp_start) * step / max(n_steps, 1)


# ------------------------------------------------------------------------------------------ the guide


class GradientGuide:
    """The ``denoiser_wrapper`` of gradient conditioning: ``guide(cfg_denoiser) -> ConditionedDenoiser``.

    ``decode(latent) -> image`` maps the x0 prediction to [-1, 1] RGB for the losses. ``prompt`` is the
    default CLIP prompt when an image's ``begin`` names none. ``shift_x=False`` leaves the sampler's x
    untouched and only returns the shifted prediction: the effect is then about |dsigma| / sigma times
    weaker than v0.6's, so old scales no longer match (hence not the default).
    """

    def __init__(self, losses: Sequence[GuideLoss], decode: Callable[[torch.Tensor], torch.Tensor], *,
                 gradient_wrt: str = "x0_pred", gradient_add_to: str = "both",
                 grad_threshold_type: str = "dynamic", clamp_grad_threshold: float = 0.2,
                 clamp_start: float = 0.2, clamp_stop: float = 0.01, grad_inject_timing: Any = None,
                 prompt: str | None = None, shift_x: bool = True):
        for name, value, allowed in (("gradient_wrt", gradient_wrt, GRADIENT_WRT),
                                     ("gradient_add_to", gradient_add_to, GRADIENT_ADD_TO),
                                     ("grad_threshold_type", grad_threshold_type, THRESHOLD_TYPES)):
            if value not in allowed:
                raise SettingsError(f"{name}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        for name, value in (("clamp_grad_threshold", clamp_grad_threshold), ("clamp_start", clamp_start),
                            ("clamp_stop", clamp_stop)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise SettingsError(f"{name}: {value!r} must be a number >= 0")
        check_inject_timing(grad_inject_timing)
        self.losses = [loss for loss in losses if loss.scale != 0]
        self.decode = decode
        self.gradient_wrt = gradient_wrt
        self.gradient_add_to = gradient_add_to
        self.grad_threshold_type = grad_threshold_type
        self.clamp_grad_threshold = float(clamp_grad_threshold)
        self.clamp_start = float(clamp_start)
        self.clamp_stop = float(clamp_stop)
        self.grad_inject_timing = grad_inject_timing
        self.prompt = prompt
        self.shift_x = shift_x
        self.last: ConditionedDenoiser | None = None  # the latest image's denoiser (its ``applied`` record)

    def __call__(self, denoiser: Callable[..., torch.Tensor]) -> ConditionedDenoiser:
        self.last = ConditionedDenoiser(self, denoiser)
        return self.last

    def loss(self, latent: torch.Tensor) -> torch.Tensor:
        """sum_k scale_k * loss_k(decode(latent)), the quantity whose gradient guides the step."""
        x_dec = self.decode(latent).float()
        return sum((loss.scale * loss.fn(x_dec) for loss in self.losses), latent.new_zeros([]).float())

    def start_image(self, prompt: str | None) -> None:
        """Per-image reset of the losses that keep state (the CLIP prompt and cutout RNG)."""
        for loss in self.losses:
            set_prompt = getattr(loss.fn, "set_prompt", None)
            if set_prompt is not None:
                set_prompt(prompt if prompt else self.prompt)


class ConditionedDenoiser:
    """``D(x, sigma, uncond=, cond=, cond_scale=)`` with the guide's gradient on the chosen steps.

    ``applied`` lists an ``Applied`` record for every conditioned model evaluation (or branch), in order;
    steps are 0-based among the steps this image runs. ``uncond`` / ``cond`` (``Conditioning`` values, or
    bare tensors) pass through to the CFG denoiser and its inner denoiser unchanged.
    """

    def __init__(self, guide: GradientGuide, denoiser: Callable[..., torch.Tensor]):
        self.guide = guide
        self.denoiser = denoiser
        self.sigmas: list[float] | None = None
        self.sampler: str | None = None
        self.n_steps = 0
        self.active: frozenset[int] | None = None
        self.applied: list[Applied] = []
        self._correction_of: int | None = None

    def begin(self, sigmas: torch.Tensor | Sequence[float], *, sampler: str | None = None,
              prompt: str | None = None) -> None:
        """Start an image: the sigma schedule it runs (``schedule_for``'s slice), its sampler and prompt."""
        self.sigmas = [float(s) for s in sigmas]
        self.sampler = sampler
        self.n_steps = max(len(self.sigmas) - 1, 0)
        self.active = inject_steps(self.guide.grad_inject_timing, self.n_steps)
        self.applied = []
        self._correction_of = None
        self.guide.start_image(prompt)

    def get_sigmas(self, n: int, **kwargs) -> torch.Tensor:
        return self.denoiser.get_sigmas(n, **kwargs)

    # -- which step is this call? ------------------------------------------------------------------------

    def step_of(self, sigma: float) -> int:
        """The run step a model evaluation at ``sigma`` belongs to: i with sigmas[i] >= sigma > sigmas[i+1]
        (midpoints and adaptive solvers fall between schedule points); a heun/plms corrector at sigmas[i+1]
        right after step i's evaluation belongs to step i."""
        if self.sigmas is None:
            raise RuntimeError("ConditionedDenoiser.begin(sigmas, ...) must be called before sampling "
                               "(the Generator does this for every image)")
        s = self.sigmas
        tol = _SIGMA_RTOL * max(abs(sigma), 1e-12)
        step = sum(1 for v in s[1:-1] if v >= sigma - tol)
        at_point = abs(s[step] - sigma) <= tol
        if self._correction_of is not None and step == self._correction_of + 1 and at_point:
            step, self._correction_of = self._correction_of, None
            return step
        corrects = _CORRECTS_AT_NEXT_SIGMA.get(self.sampler or "")
        self._correction_of = step if (corrects is not None and corrects(step) and at_point
                                       and step + 1 < len(s) and s[step + 1] > 0) else None
        return step

    def is_active(self, step: int) -> bool:
        return bool(self.guide.losses) and (self.active is None or step in self.active)

    # -- one model evaluation ----------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, uncond: CondLike | None = None,
                 cond: CondLike | None = None, cond_scale: float = 1.0) -> torch.Tensor:
        sigma_value = float(torch.as_tensor(sigma).reshape(-1)[0])
        step = self.step_of(sigma_value)
        if not self.is_active(step):
            return self.denoiser(x, sigma, uncond=uncond, cond=cond, cond_scale=cond_scale)
        scale_sigma = append_dims(torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1), x.ndim)
        wrt_x = self.guide.gradient_wrt == "x"
        inner = getattr(self.denoiser, "inner", None)
        split = (uncond is not None and cond_scale != 1 and inner is not None
                 and not getattr(self.denoiser, "cond_uncond_sync", True))

        if not split:  # the gradient of the guided (CFG) prediction, added to it (gradient_add_to unused)
            def guided(z: torch.Tensor) -> torch.Tensor:
                return self.denoiser(z, sigma, uncond=uncond, cond=cond, cond_scale=cond_scale)

            denoised, g = self._gradient(guided, x, step, sigma_value)
            shift = scale_sigma * g
            x_new = x + shift
            if wrt_x:
                with torch.no_grad():
                    denoised = guided(x_new)
            else:
                denoised = denoised + shift
        else:  # cond_uncond_sync False: each chosen branch gets its own gradient, all from the same x
            def branch(c: CondLike | None) -> Callable[[torch.Tensor], torch.Tensor]:
                return lambda z: inner(z, sigma, cond=c)

            fns = {"uncond": branch(uncond), "cond": branch(cond)}
            chosen = ("uncond", "cond") if self.guide.gradient_add_to == "both" else (self.guide.gradient_add_to,)
            preds, shifts = {}, {}
            for name, fn in fns.items():
                if name in chosen:
                    preds[name], g = self._gradient(fn, x, step, sigma_value)
                    shifts[name] = scale_sigma * g
                else:
                    with torch.no_grad():
                        preds[name] = fn(x)
            x_new = x + sum(shifts.values())
            with torch.no_grad():
                for name, fn in fns.items():
                    preds[name] = fn(x_new) if wrt_x else preds[name] + shifts.get(name, 0)
            denoised = preds["uncond"] + (preds["cond"] - preds["uncond"]) * cond_scale
            denoised = _cfg_thresholds(self.denoiser, denoised)
        if self.guide.shift_x:
            x.copy_(x_new)  # the sigma-scaled nudge of the trajectory (v0.6's strength); see the module doc
        return denoised

    def _gradient(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: int,
                  sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, thresholded -d loss / d wrt) for one prediction function; the sampler's x is not touched."""
        guide = self.guide
        with torch.enable_grad():
            if guide.gradient_wrt == "x":
                leaf = x.detach().clone().requires_grad_(True)
                denoised = fn(leaf)
                loss = guide.loss(denoised)
            else:
                with torch.no_grad():
                    denoised = fn(x)
                leaf = denoised.detach().clone().requires_grad_(True)
                loss = guide.loss(leaf)
            (grad,) = torch.autograd.grad(loss, leaf, allow_unused=True)
        g = torch.zeros_like(x) if grad is None else -grad.detach().to(x.dtype)
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        g = threshold_gradient(g, guide.grad_threshold_type, guide.clamp_grad_threshold, step=step,
                               n_steps=max(self.n_steps, 1), clamp_start=guide.clamp_start,
                               clamp_stop=guide.clamp_stop)
        self.applied.append(Applied(step, sigma, float(g.abs().max()), float(g.pow(2).mean().sqrt())))
        return denoised.detach(), g


def _cfg_thresholds(denoiser: Any, denoised: torch.Tensor) -> torch.Tensor:
    """The CFG denoiser's own x0 thresholds (dynamic_threshold / static_threshold), when it has them."""
    from deforum.sampling.denoisers import dynamic_threshold_x0

    dynamic = getattr(denoiser, "dynamic_threshold", None)
    static = getattr(denoiser, "static_threshold", None)
    if dynamic is not None:
        denoised = dynamic_threshold_x0(denoised, dynamic)
    if static is not None:
        denoised = denoised.clamp(-static, static)
    return denoised


__all__ = [
    "DECODE_METHODS", "GRADIENT_ADD_TO", "GRADIENT_WRT", "THRESHOLD_TYPES", "Applied", "ConditionedDenoiser",
    "GradientGuide", "GuideLoss", "check_inject_timing", "inject_steps", "schedule_threshold",
    "threshold_gradient",
]
