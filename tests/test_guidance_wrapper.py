"""The conditioning denoiser wrapper with a fake model: which steps get the gradient (every timing form,
every sampler), each threshold type, the cond_uncond_sync=False branches and the sigma-scaled nudge
(spec 4.2, 6.11-6.13)."""

import pytest
import torch

from deforum.guidance import losses
from deforum.guidance.wrapper import GradientGuide, GuideLoss, schedule_threshold
from deforum.models import linear_alphas_cumprod
from deforum.sampling import SAMPLERS, CFGDenoiser, DiscreteSchedule, sample, schedule_for
from deforum.sampling.samplers import append_dims

SHAPE = (1, 3, 4, 4)


class FakeModel:
    """D(x, sigma, cond) = 0.5 x / sqrt(1 + sigma^2) + mean(cond); counts its calls."""

    def __init__(self):
        self.schedule = DiscreteSchedule(linear_alphas_cumprod(0.00085, 0.012, 1000))
        self.calls = 0

    def get_sigmas(self, n, **kwargs):
        return self.schedule.get_sigmas(n, **kwargs)

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        bias = cond.flatten(1).mean(1)
        return 0.5 * x / append_dims((1 + sigma ** 2) ** 0.5, x.ndim) + append_dims(bias, x.ndim)


def make_guide(scale=1e3, fn=losses.mean_loss, **kwargs) -> GradientGuide:
    return GradientGuide([GuideLoss("mean_scale", fn, scale)], decode=lambda z: z, **kwargs)


EXTRA = {"cond": torch.full((1, 2, 3), 0.3), "uncond": torch.full((1, 2, 3), -0.1), "cond_scale": 3.0}


def run(guide, sampler="euler", steps=10, strength=0.0, sync=True, seed=0):
    model = FakeModel()
    denoiser = guide(CFGDenoiser(model, cond_uncond_sync=sync))
    denoiser.begin(schedule_for(denoiser, sampler, steps, strength), sampler=sampler)
    init = torch.zeros(SHAPE) if strength > 0 else None
    out = sample(denoiser, sampler, steps, strength, shape=SHAPE, init_latent=init,
                 generator=torch.Generator().manual_seed(seed), extra_args=EXTRA)
    return denoiser, out, model


def applied_steps(denoiser):
    return sorted({a.step for a in denoiser.applied})


@pytest.mark.parametrize("timing, steps, strength, expected", [
    (None, 6, 0.0, [0, 1, 2, 3, 4, 5]),
    (2, 6, 0.0, [1, 3, 5]),  # int: every 2nd step
    ([0.5, 1.0], 10, 0.0, [5, 9]),  # fractions
    ([1, 4], 6, 0.0, [0, 3]),  # 1-based step numbers
    # img2img runs 5 of 10 steps; the default 1..9 counts those (v0.6 counted full-schedule steps: none fired)
    (list(range(1, 10)), 10, 0.5, [0, 1, 2, 3, 4]),
    ([0.5], 10, 0.5, [2]),  # fractions of the 5 steps that run
    (3, 10, 0.5, [2]),
])
def test_inject_timing_forms_pick_the_steps_that_run(timing, steps, strength, expected):
    denoiser, out, _ = run(make_guide(grad_inject_timing=timing), steps=steps, strength=strength)
    assert applied_steps(denoiser) == expected
    assert len(denoiser.applied) == len(expected)  # euler: one evaluation per step
    assert torch.isfinite(out).all()


# evaluations of the model per step (the last step to sigma 0 may take fewer)
EVALS_PER_STEP = {"klms": 1, "euler": 1, "euler_ancestral": 1, "dpmpp_2m": 1, "dpmpp_2m_sde": 1, "ddim": 1,
                  "heun": 2, "dpm2": 2, "dpm2_ancestral": 2, "dpmpp_2s_a": 2, "dpmpp_sde": 2, "plms": 1}


@pytest.mark.parametrize("sampler", sorted(EVALS_PER_STEP))
def test_every_evaluation_of_a_step_is_counted_to_that_step(sampler):
    """Midpoints (dpm2, dpmpp_2s_a, dpmpp_sde) and heun's corrector at the next sigma belong to their step;
    v0.6 never conditioned midpoints and conditioned heun's next sigma twice."""
    denoiser, _, _ = run(make_guide(grad_inject_timing=[2]), sampler=sampler, steps=5)
    assert applied_steps(denoiser) == [1]
    assert len(denoiser.applied) == EVALS_PER_STEP[sampler]


def test_plms_first_step_corrector_belongs_to_step_0():
    denoiser, _, _ = run(make_guide(grad_inject_timing=[1]), sampler="plms", steps=5)
    assert [a.step for a in denoiser.applied] == [0, 0]


@pytest.mark.parametrize("sampler", ["dpm_fast", "dpm_adaptive"])
def test_dpm_solvers_map_their_own_sigmas_onto_the_run_steps(sampler):
    all_steps, _, _ = run(make_guide(), sampler=sampler, steps=6)
    assert all_steps.applied and all(0 <= a.step <= 5 for a in all_steps.applied)
    late, _, _ = run(make_guide(grad_inject_timing=[5, 6]), sampler=sampler, steps=6)
    assert {a.step for a in late.applied} <= {4, 5}
    assert len(late.applied) < len(all_steps.applied)


def test_every_sampler_runs_conditioned_without_error():
    for sampler in SAMPLERS:
        denoiser, out, _ = run(make_guide(grad_threshold_type="schedule"), sampler=sampler, steps=4)
        assert torch.isfinite(out).all(), sampler
        assert denoiser.applied, sampler


@pytest.mark.parametrize("kind, tau, bound", [
    ("static", 0.05, lambda a, n: a.absmax <= 0.05 + 1e-6 and a.absmax == pytest.approx(0.05)),
    ("dynamic", 0.2, lambda a, n: a.absmax <= 1 + 1e-6 and a.absmax == pytest.approx(1.0)),
    ("mean", 0.1, lambda a, n: a.rms == pytest.approx(0.1, rel=1e-4)),
    ("schedule", 0.2, lambda a, n: a.rms == pytest.approx(schedule_threshold(a.step, n, 0.3, 0.02), rel=1e-4)),
])
@pytest.mark.parametrize("sampler", ["euler", "dpm2"])
def test_threshold_types_bound_the_gradient_at_each_applied_step(kind, tau, bound, sampler):
    guide = make_guide(scale=1e6, grad_threshold_type=kind, clamp_grad_threshold=tau, clamp_start=0.3,
                       clamp_stop=0.02, grad_inject_timing=[1, 3, 4])
    denoiser, out, _ = run(guide, sampler=sampler, steps=5)
    assert applied_steps(denoiser) == [0, 2, 3]
    for record in denoiser.applied:
        assert bound(record, 5), (kind, record)
    assert torch.isfinite(out).all()


def test_schedule_threshold_zero_gradient_is_not_nan():
    guide = make_guide(fn=lambda x: x.sum() * 0, grad_threshold_type="schedule")
    denoiser, out, _ = run(guide, sampler="dpm2", steps=4)
    assert denoiser.applied and all(a.rms == 0 for a in denoiser.applied)
    assert torch.isfinite(out).all()


def test_sigma_scaled_nudge_x0_pred():
    """x moves to x + sigma g and the prediction to D + sigma g (v0.6's consolidation, strength kept)."""
    model = FakeModel()
    cfg = CFGDenoiser(model)
    denoiser = make_guide()(cfg)
    denoiser.begin([2.0, 1.0, 0.0])
    x = torch.ones(SHAPE)
    plain = cfg(x, torch.tensor([2.0]), **EXTRA)
    x_run = x.clone()
    out = denoiser(x_run, torch.tensor([2.0]), **EXTRA)
    # D > 0 everywhere, so the mean loss pulls every pixel down; g is clamped to -1 by 'dynamic'
    assert torch.allclose(out, plain - 2.0)
    assert torch.allclose(x_run, x - 2.0)
    kept = x.clone()
    d = make_guide(shift_x=False)(cfg)
    d.begin([2.0, 1.0, 0.0])
    assert torch.allclose(d(kept, torch.tensor([2.0]), **EXTRA), plain - 2.0)
    assert torch.equal(kept, x)


def test_negative_scale_pushes_the_other_way():
    model = FakeModel()
    cfg = CFGDenoiser(model)
    x = torch.ones(SHAPE)
    plain = cfg(x, torch.tensor([2.0]), **EXTRA)
    d = make_guide(scale=-1e3)(cfg)
    d.begin([2.0, 1.0, 0.0])
    assert torch.allclose(d(x.clone(), torch.tensor([2.0]), **EXTRA), plain + 2.0)


def test_x_mode_reevaluates_at_the_nudged_x():
    model = FakeModel()
    cfg = CFGDenoiser(model)
    d = make_guide(gradient_wrt="x")(cfg)
    d.begin([2.0, 1.0, 0.0])
    x = torch.ones(SHAPE)
    x_run = x.clone()
    out = d(x_run, torch.tensor([2.0]), **EXTRA)
    assert torch.allclose(x_run, x - 2.0)  # dD/dx > 0 here, so the gradient w.r.t. x also points down
    assert torch.allclose(out, cfg(x_run, torch.tensor([2.0]), **EXTRA))
    assert model.calls == 1 + 1 + 1  # forward with grad, re-evaluation, and the reference call


@pytest.mark.parametrize("add_to, records", [("cond", 1), ("uncond", 1), ("both", 2)])
@pytest.mark.parametrize("wrt", ["x0_pred", "x"])
def test_unsynced_branches(add_to, records, wrt):
    model = FakeModel()
    cfg = CFGDenoiser(model, cond_uncond_sync=False)
    d = make_guide(gradient_add_to=add_to, gradient_wrt=wrt)(cfg)
    d.begin([2.0, 1.0, 0.0])
    x = torch.ones(SHAPE)
    x_run = x.clone()
    out = d(x_run, torch.tensor([2.0]), **EXTRA)
    assert len(d.applied) == records
    # each branch's gradient is computed at the same, unshifted x; x moves by the sum of the shifts
    assert torch.allclose(x_run, x - 2.0 * records)
    assert torch.isfinite(out).all()
    if wrt == "x0_pred":
        plain_u = model(x, torch.tensor([2.0]), cond=EXTRA["uncond"])
        plain_c = model(x, torch.tensor([2.0]), cond=EXTRA["cond"])
        u = plain_u - 2.0 if add_to in ("uncond", "both") else plain_u
        c = plain_c - 2.0 if add_to in ("cond", "both") else plain_c
        assert torch.allclose(out, u + (c - u) * EXTRA["cond_scale"])


def test_sync_ignores_gradient_add_to():
    a, out_a, _ = run(make_guide(gradient_add_to="cond"), steps=4)
    b, out_b, _ = run(make_guide(gradient_add_to="uncond"), steps=4)
    assert torch.equal(out_a, out_b) and len(a.applied) == len(b.applied) == 4


def test_no_losses_or_inactive_steps_leave_the_sample_unchanged():
    plain_model = FakeModel()
    reference = sample(CFGDenoiser(plain_model), "euler", 5, shape=SHAPE,
                       generator=torch.Generator().manual_seed(0), extra_args=EXTRA)
    denoiser, out, _ = run(make_guide(grad_inject_timing=[99]), steps=5)
    assert not denoiser.applied
    assert torch.equal(out, reference)
    guided, out_guided, _ = run(make_guide(), steps=5)
    assert not torch.allclose(out_guided, reference)


def test_begin_is_required():
    d = make_guide()(CFGDenoiser(FakeModel()))
    with pytest.raises(RuntimeError, match="begin"):
        d(torch.ones(SHAPE), torch.tensor([2.0]), **EXTRA)
