"""The render plan: cadence roles against v0.6's traced frame schedule, seeds, prompts, CSV."""

import json
import random
from pathlib import Path

import pytest

from deforum.errors import DeforumError
from deforum.plan import cadence_role, interpolation_frames, make_plan, next_seed, rng_seed
from deforum.testing import settings_for_test

DATA = Path(__file__).parent / "data"

CADENCE = json.loads((DATA / "cadence.json").read_text())


BASE = dict(
    animation_mode="2D", max_frames=17, diffusion_cadence="1", angle="0:(0)", zoom="0:(1.04)",
    translation_x="0:(10*sin(2*3.14*t/10))", translation_y="0:(0)", translation_z="0:(10)",
    rotation_3d_x="0:(0)", rotation_3d_y="0:(0)", rotation_3d_z="0:(0)",
    perspective_flip_theta="0:(0)", perspective_flip_phi="0:(t%15)", perspective_flip_gamma="0:(0)",
    perspective_flip_fv="0:(53)", noise_schedule="0: (0.02)", strength_schedule="0: (0.65)",
    contrast_schedule="0: (1.0)", interpolate_x_frames=4, interpolate_key_frames=False, seed_behavior="iter",
    n_batch=1,
)


def plan_of(seed=1000, animation_prompts=None, **overrides):
    """The plan of the settings BASE with ``overrides``, from seed ``seed``."""
    return make_plan(settings_for_test(**{**BASE, **overrides}, animation_prompts=animation_prompts or {0: "a"}),
                     seed)


@pytest.mark.parametrize("case", CADENCE["cadences"], ids=lambda c: f"cadence{c['cadence']}")
def test_cadence_roles_match_v06_written_frames(case):
    n = case["cadence"]
    plan = plan_of(diffusion_cadence=str(n), max_frames=case["max_frames"])
    # v0.6 generated exactly these keys, with seed offsets 0, 1, 2, ...
    assert plan.diffused_frames == case["diffused_frames"]
    for offset, it in enumerate(case["iterations"]):
        assert plan.rows[it["frame_idx"]].seed == 1000 + it["seed_offset"] == 1000 + offset
    for written in case["written_frames"]:
        role = plan.rows[written["frame"]].cadence
        if written["kind"] == "diffused":  # cadence 1: the key itself is written
            assert role.diffused and role.next_key == written["frame"] and not role.blended
            continue
        assert role.tween == pytest.approx(written["tween"])
        assert role.blended == written["blended"]
        assert role.next_key == written["next"]["from_diffused_frame"]
        expected_prev = written["prev"]["from_diffused_frame"] if written["blended"] else None
        assert (role.prev_key if role.blended else None) == expected_prev
    # The frames v0.6 never wrote are planned (the tail fix): every frame has a role.
    assert len(plan.rows) == case["max_frames"]
    for frame in case["frames_not_written"]:
        role = plan.rows[frame].cadence
        assert role.next_key == (frame // n) * n


@pytest.mark.parametrize("frame, cadence, expected", [
    (0, 1, (True, 0, None, 1.0)),
    (5, 1, (True, 5, 4, 1.0)),
    (3, 3, (True, 3, 0, 1 / 3)),
    (4, 3, (False, 3, 0, 2 / 3)),
    (5, 3, (False, 3, 0, 1.0)),
    (2, 3, (False, 0, None, 1.0)),
])
def test_cadence_role_table(frame, cadence, expected):
    role = cadence_role(frame, cadence)
    assert (role.diffused, role.next_key, role.prev_key, pytest.approx(role.tween)) == expected


def test_seed_behaviors():
    assert next_seed(5, "iter") == 6
    assert next_seed(5, "fixed") == 5
    chained = random.Random(5).randint(0, 2**32 - 1)
    assert next_seed(5, "random") == chained
    assert next_seed(chained, "random") == random.Random(chained).randint(0, 2**32 - 1)
    assert rng_seed(2**32 + 3) == 3
    with pytest.raises(DeforumError, match="seed_behavior"):
        next_seed(5, "Iter")


def test_prompts_and_schedule_values_per_frame():
    plan = plan_of(max_frames=30, animation_prompts={0: "apple", 20: "banana", 25: "coconut"})
    assert [plan.rows[k].prompt for k in (0, 19, 20, 24, 25, 29)] == [
        "apple", "apple", "banana", "banana", "coconut", "coconut"]
    assert plan.rows[1].values.translation_x == pytest.approx(5.875275, abs=1e-6)
    assert plan.rows[5].values.perspective_flip_phi == 5.0
    assert plan.rows[16].values.perspective_flip_phi == 1.0


def test_an_unresolved_seed_is_an_error():
    with pytest.raises(DeforumError, match="seed"):
        plan_of(seed=-1)


@pytest.mark.parametrize("field, value", [("animation_mode", "4D"), ("zoom", "0:(1.04")])
def test_a_bad_mode_or_schedule_is_refused_before_planning_naming_the_field(field, value):
    with pytest.raises(DeforumError, match=field):
        plan_of(**{field: value})


def test_still_batch_plan():
    plan = make_plan(settings_for_test(**{**BASE, "n_batch": 3, "animation_mode": "None"}, prompts=["p1", "p2"]),
                     1000)
    assert [(r.frame, r.prompt, r.seed) for r in plan.rows] == [
        (i, "p1" if i < 3 else "p2", 1000 + i) for i in range(6)]


@pytest.mark.parametrize("n_prompts, keys, x, by_keys, count", [
    (4, [0, 20, 30, 40], 4, False, 16),  # v0.6: (P-1)(X+1)+1
    (2, [0, 20], 4, False, 6),
    (1, [0], 4, False, 1),  # v0.6 crashed on one prompt with key frames; one frame here
    (4, [0, 20, 30, 40], 4, True, 41),  # every pair rendered (v0.6 rendered only the last: 11)
    (1, [0], 4, True, 1),
])
def test_interpolation_frame_counts(n_prompts, keys, x, by_keys, count):
    assert len(interpolation_frames(n_prompts, keys, x, by_keys)) == count


def test_plan_csv_has_every_schedule(tmp_path):
    plan = plan_of(max_frames=5, diffusion_cadence="2")
    text = plan.to_csv(tmp_path / "plan.csv")
    header = text.splitlines()[0].split(",")
    assert header[:7] == ["frame", "role", "prompt", "seed", "next_key", "prev_key", "tween"]
    assert "strength_schedule" in header and len(text.splitlines()) == 6
    assert (tmp_path / "plan.csv").read_text() == text
