"""Samplers (k-diffusion algorithms, ddim, plms), the model's sigma schedule and the denoiser wrappers.

Typical use by the generator::

    denoiser = CFGDenoiser(make_denoiser(model), cond_uncond_sync=True)
    latent = sample(denoiser, "euler", steps=50, strength=0.65, init_latent=z, generator=g,
                    extra_args={"cond": c, "uncond": uc, "cond_scale": 7.5})
"""

from deforum.sampling.denoisers import (
    CFGDenoiser,
    DiscreteSchedule,
    EpsDenoiser,
    MaskPin,
    VDenoiser,
    make_denoiser,
)
from deforum.sampling.run import SAMPLERS, get_sampler, sample, schedule_for, steps_to_run

__all__ = [
    "SAMPLERS", "CFGDenoiser", "DiscreteSchedule", "EpsDenoiser", "MaskPin", "VDenoiser", "get_sampler",
    "make_denoiser", "sample", "schedule_for", "steps_to_run",
]
