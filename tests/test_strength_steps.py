"""strength -> steps bookkeeping and the discrete sigma schedule against v0.6 (oracle strength_steps.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CountingDenoiser, oracle_alphas_cumprod

from deforum.sampling import DiscreteSchedule, sample, schedule_for, steps_to_run

ORACLE = json.loads((Path(__file__).parent / "data/strength_steps.json").read_text())
ALPHAS = oracle_alphas_cumprod()
ROWS = ORACLE["table"]


@pytest.mark.parametrize(("strength", "steps", "t_enc"), [
    (0.65, 80, 28), (0.65, 50, 17), (0.8, 50, 9), (0.9, 50, 4), (0.7, 50, 15), (0.9, 20, 1), (0.9, 80, 7),
    (0.0, 50, 50), (1.0, 50, 0), (0.3, 20, 14),
])
def test_steps_to_run_truncates_like_v06(strength, steps, t_enc):
    assert steps_to_run(steps, strength) == t_enc


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['steps']}-{r['strength']}")
def test_table_bookkeeping(row):
    assert steps_to_run(row["steps"], row["strength"]) == row["t_enc"]
    sigmas = schedule_for(CountingDenoiser(), "euler", row["steps"], row["strength"])
    assert len(sigmas) == row["num_sigmas_passed_to_sampler"]
    assert float(sigmas[0]) == pytest.approx(row["first_sigma_fp32_schedule"], rel=1e-6)
    sigmas16 = schedule_for(CountingDenoiser(ALPHAS.half()), "euler", row["steps"], row["strength"])
    assert float(sigmas16[0]) == pytest.approx(row["first_sigma_fp16_schedule"], rel=1e-6)


@pytest.mark.parametrize("variant", ["fp32", "fp16"])
def test_discrete_sigmas_match_v06(variant):
    alphas = ALPHAS if variant == "fp32" else ALPHAS.half()
    schedule = DiscreteSchedule(alphas)
    np.testing.assert_allclose(schedule.sigmas.float().numpy(), ORACLE[f"sigmas_{variant}"], rtol=1e-6)
    for n, expected in ORACLE[f"get_sigmas_{variant}"].items():
        np.testing.assert_allclose(schedule.get_sigmas(int(n)).numpy(), expected, rtol=1e-6, atol=0)


def test_sigma_to_t_inverts_t_to_sigma():
    schedule = DiscreteSchedule(ALPHAS)
    t = torch.tensor([0.0, 0.25, 17.5, 353.89, 998.5, 999.0])
    np.testing.assert_allclose(schedule.sigma_to_t(schedule.t_to_sigma(t)).numpy(), t.numpy(), atol=2e-3)
    # Outside the table the timestep clamps to its ends.
    assert schedule.sigma_to_t(torch.tensor([1e-3, 100.0])).tolist() == [0.0, 999.0]


SAMPLER_ROWS = [(row, name, spec) for row in ROWS for name, spec in row["samplers"].items()]


@pytest.mark.parametrize(("row", "name", "spec"), SAMPLER_ROWS,
                         ids=[f"{r['steps']}-{r['strength']}-{n}" for r, n, _ in SAMPLER_ROWS])
def test_model_calls_match_v06(row, name, spec):
    denoiser = CountingDenoiser()
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = sample(denoiser, name, row["steps"], row["strength"], init_latent=init,
                 generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out).all()
    if row["t_enc"] == 0:
        # v0.6's dpm_fast raised here (sigma_min = 0); every sampler now returns the init latent untouched.
        assert denoiser.sigmas == []
        assert torch.equal(out, init)
    elif name == "dpm_fast" and row["t_enc"] == 1:
        # v0.6 ran 20 calls over an empty range (sigma_max == sigma_min) and produced NaN; we take one step.
        assert len(denoiser.sigmas) == 1
    else:
        assert len(denoiser.sigmas) == spec["model_calls"]
        if "sigmas_at_calls" in spec:
            np.testing.assert_allclose(denoiser.sigmas, spec["sigmas_at_calls"], rtol=1e-5)
