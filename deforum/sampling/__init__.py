"""Samplers (k-diffusion algorithms, ddim, plms), the model's sigma schedule and the denoiser wrappers.

Typical use by the generator::

    denoiser = CFGDenoiser(make_denoiser(model), cond_uncond_sync=True)
    latent = sample(denoiser, "euler", steps=50, strength=0.65, init_latent=z, generator=g,
                    extra_args={"cond": c, "uncond": uc, "cond_scale": 7.5})

The names below are imported on first use (PEP 562), so ``deforum.sampling.registry`` (which
``deforum.settings`` reads for the sampler dropdown) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CFGDenoiser": "denoisers", "DiscreteSchedule": "denoisers", "EpsDenoiser": "denoisers",
    "MaskPin": "denoisers", "VDenoiser": "denoisers", "make_denoiser": "denoisers",
    "SAMPLERS": "run", "get_sampler": "run", "sample": "run", "schedule_for": "run", "steps_to_run": "run",
    "SamplerSpec": "registry", "register": "registry", "unregister": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = sorted(_WHERE)
