"""Weighted sub-prompts: v0.6 parity (oracle), the spec's examples and expression safety."""

from __future__ import annotations

import json
import warnings

import pytest

from deforum.errors import ScheduleError
from deforum.prompts import (
    PromptWeightWarning,
    normalize_prompt_weights,
    sanitize,
    split_weighted_subprompts,
)


@pytest.fixture(scope="module")
def oracle(data_dir):
    return json.loads((data_dir / "prompts.json").read_text())


def _assert_weighted(weighted, expected: list[list], label) -> None:
    assert [text for text, _ in weighted] == [text for text, _ in expected], label
    assert [weight for _, weight in weighted] == pytest.approx([w for _, w in expected], rel=1e-12), label


def _run(function, *args):
    """Call ``function`` and return (result, what v0.6 would have printed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args)
    printed = "".join(f"{w.message}\n" for w in caught if issubclass(w.category, PromptWeightWarning))
    return result, printed


def test_oracle_split_cases(oracle):
    assert len(oracle["cases"]) >= 10
    for case in oracle["cases"]:
        for key, skip_normalize in (("normalized", False), ("unnormalized", True)):
            (negative, positive), printed = _run(split_weighted_subprompts, case["prompt"], case["frame"],
                                                 skip_normalize)
            expected = case[key]
            label = f"case {case['id']} {key}: {case['prompt']!r}"
            _assert_weighted(negative, expected["negative"], label)
            _assert_weighted(positive, expected["positive"], label)
            assert printed == expected.get("stdout", ""), label


def test_oracle_normalize_cases(oracle):
    for case in oracle["normalize_prompt_weights"]:
        result, printed = _run(normalize_prompt_weights, [tuple(pair) for pair in case["input"]])
        _assert_weighted(result, case["output"], case["input"])
        assert printed == case.get("stdout", "")


def test_oracle_sanitize_cases(oracle):
    for case in oracle["sanitize"]:
        assert sanitize(case["input"]) == case["output"]


# Spec §3.2/§3.3 examples: (prompt, frame, negative, positive), normalised.
SPEC_EXAMPLES = [
    ("a cat:2 a dog:1", 0, [], [("a cat", 2 / 3), ("a dog", 1 / 3)]),
    ("a:1 b:1 c:-0.5 d:-0.5", 0, [("c", 0.5), ("d", 0.5)], [("a", 0.5), ("b", 0.5)]),
    ("this prompt has weights if prompt weighting enabled:2 can also do negative:-2", 0,
     [("can also do negative", 1.0)], [("this prompt has weights if prompt weighting enabled", 1.0)]),
    ("a cat:`t/10` a dog:`1-t/10`", 0, [], [("a dog", 1.0)]),
    ("a cat:`t/10` a dog:`1-t/10`", 5, [], [("a cat", 0.5), ("a dog", 0.5)]),
    ("a cat :2", 0, [], [("a cat ", 1.0)]),  # text keeps its trailing space
    ("a cat:1, a dog:-1", 0, [(", a dog", 1.0)], [("a cat", 1.0)]),  # and its leading comma
    ("a: -1", 0, [], [("a", 0.5), ("-1", 0.5)]),  # the weight must follow the colon
    ("a cat:.5 dog", 0, [], [("a cat", 0.5), (".5 dog", 0.5)]),
    ("a::2 b", 0, [], [("a", 2 / 3), ("b", 1 / 3)]),  # several colons
    ("time 12\\:30 clock", 0, [], [("time 12:30 clock", 1.0)]),
    ("a cat:`t*2` a dog:0", 0, [], []),  # every weight zero at this frame
    ("a cat:`where(t>2, -1, 1)`", 3, [("a cat", 1.0)], []),
]


@pytest.mark.parametrize(("prompt", "frame", "negative", "positive"), SPEC_EXAMPLES)
def test_spec_examples(prompt, frame, negative, positive):
    got_negative, got_positive = split_weighted_subprompts(prompt, frame)
    assert [t for t, _ in got_negative] == [t for t, _ in negative]
    assert [t for t, _ in got_positive] == [t for t, _ in positive]
    assert [w for _, w in got_negative] == pytest.approx([w for _, w in negative])
    assert [w for _, w in got_positive] == pytest.approx([w for _, w in positive])


def test_unnormalised_weights_keep_their_magnitude():
    negative, positive = split_weighted_subprompts("a:3 b:-0.25 c", 0, skip_normalize=True)
    assert negative == [("b", 0.25)]
    assert positive == [("a", 3.0), ("c", 1.0)]


def test_empty_backticks_warn_and_weigh_one():
    with pytest.warns(PromptWeightWarning, match="cannot represent a math function"):
        _, positive = split_weighted_subprompts("a:`` b:3", 0, skip_normalize=True)
    assert positive == [("a", 1.0), ("b", 3.0)]


def test_zero_sum_warns_and_uses_even_weights():
    with pytest.warns(PromptWeightWarning, match="add up to zero"):
        assert normalize_prompt_weights([("a", 2.0), ("b", -2.0)]) == [("a", 0.5), ("b", 0.5)]


@pytest.mark.parametrize(("prompt", "position"), [
    ("a cat:`__import__('os').system('echo x')` a dog", 7),
    ("a cat:`t.real`", 8),
    ("a cat:`lambda: 1`", 13),
    ("a cat:`open('x')`", 12),
    ("a cat:`10**10**10`", 9),
    ("a cat:`1/(t-2)`", 7),  # inf at this frame
    ("a cat:`max_f`", 7),  # no max_frames here
    ("a cat:` `", 8),
])
def test_backtick_expressions_are_checked(prompt, position):
    with pytest.raises(ScheduleError) as info:
        split_weighted_subprompts(prompt, 2, field="animation_prompts")
    assert info.value.position == position
    assert info.value.field == "animation_prompts"
    assert info.value.text == prompt


def test_backtick_payload_never_runs(tmp_path):
    sentinel = tmp_path / "sentinel"
    with pytest.raises(ScheduleError):
        split_weighted_subprompts(f"a:`__import__('pathlib').Path('{sentinel}').touch()`", 0)
    assert not sentinel.exists()


def test_weight_problems_check_every_weight_at_every_frame_without_running_code(tmp_path):
    from deforum.prompts import weight_problems

    sentinel = tmp_path / "sentinel"
    text = f"a cat:`__import__('pathlib').Path('{sentinel}').touch()` a dog:`1/(t-3)` a fish:`sin(t)` a bird:2"
    found = weight_problems(text, range(0, 10))
    assert len(found) == 2
    assert found[0].startswith("at character 7: name '__import__' is not allowed")
    at = text.index("1/(t-3)")
    assert found[1].startswith(f"at character {at}: the expression is inf at t=3")
    assert found[1].splitlines()[1:] == ["  " + text, "  " + " " * at + "^"]
    unused = weight_problems(text, [])  # no frame uses it: still checked, and nothing is evaluated
    assert [p.splitlines()[0] for p in unused] == [found[0].splitlines()[0]]
    assert weight_problems("a dog:`1/(t-3)`", [0, 1, 2, 4]) == []
    assert weight_problems("plain prompt, a:2 b:-1 c: d", [0]) == []
    assert not sentinel.exists()
