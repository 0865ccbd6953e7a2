"""Seed modes beyond v0.6 with A1111 Deforum's names: iter every N, ladder, alternate and schedule."""

import pytest

from deforum.errors import DeforumError
from deforum.plan import make_plan, seed_sequence
from deforum.testing import settings_for_test


@pytest.mark.parametrize(("behavior", "n", "expected"), [
    ("iter", 1, [10, 11, 12, 13, 14, 15]),  # v0.6's
    ("iter", 2, [10, 10, 11, 11, 12, 12]),
    ("iter", 3, [10, 10, 10, 11, 11, 11]),
    ("fixed", 1, [10] * 6),
    ("ladder", 1, [10, 12, 11, 13, 12, 14]),  # +2, -1, +2, -1, ...
    ("alternate", 1, [10, 11, 10, 11, 10, 11]),  # +1, -1, ...
])
def test_seed_sequences_follow_a1111(behavior, n, expected):
    assert seed_sequence(10, behavior, range(6), seed_iter_n=n) == expected


def _plan(**overrides):
    values = dict(W=64, H=64, seed=7, animation_mode="2D", max_frames=6, animation_prompts={0: "a"})
    values.update(overrides)
    return make_plan(settings_for_test(**values), values["seed"])


def test_the_plan_gives_each_diffused_frame_the_next_seed_of_its_mode():
    plan = _plan(seed_behavior="ladder", diffusion_cadence="2")
    assert [(row.frame, row.seed) for row in plan.rows if row.seed is not None] == [(0, 7), (2, 9), (4, 8)]
    plan = _plan(seed_behavior="iter", seed_iter_N=2)
    assert [row.seed for row in plan.rows] == [7, 7, 8, 8, 9, 9]


def test_a1111s_default_seed_schedule_starts_and_ends_on_the_seed_with_random_seeds_between():
    plan = _plan(seed_behavior="schedule", seed_schedule='0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)')
    seeds = [row.seed for row in plan.rows]
    assert seeds[0] == seeds[-1] == 7
    middle = seeds[1:-1]
    assert len(set(middle)) == len(middle) and 7 not in middle
    assert all(0 <= s < 2**32 for s in middle)
    again = _plan(seed_behavior="schedule", seed_schedule='0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)')
    assert [row.seed for row in again.rows] == seeds  # reproducible from the run's seed


def test_a_seed_schedule_is_read_at_the_diffused_frames():
    plan = _plan(seed_behavior="schedule", seed_schedule="0:(s+t*10.7)", diffusion_cadence="3")
    assert [(row.frame, row.seed) for row in plan.rows if row.seed is not None] == [(0, 7), (3, 7 + 32)]


@pytest.mark.parametrize("schedule", ["0:(-2)", "0:(2**33)", "0:(1/0)"])
def test_a_seed_schedule_value_that_is_no_seed_names_the_field(schedule):
    with pytest.raises(DeforumError, match="seed_schedule"):
        _plan(seed_behavior="schedule", seed_schedule=schedule)


def test_still_batches_use_the_modes_too():
    plan = make_plan(settings_for_test(W=64, H=64, seed=3, animation_mode="None", n_batch=4,
                                       prompts=["a"], seed_behavior="alternate"), 3)
    assert [row.seed for row in plan.rows] == [3, 4, 3, 4]
