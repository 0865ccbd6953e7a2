"""Keyframe schedules: v0.6 parity (oracle), the fixed defects, safety and the prompt schedule."""

from __future__ import annotations

import json
import math
import re
import string

import numexpr
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deforum import keyframes
from deforum.errors import DeforumError, ScheduleError, SettingsError
from deforum.keyframes import (
    SCHEDULE_FIELDS,
    is_number,
    parse_keyframes,
    parse_schedule,
    parse_schedules,
    prompt_schedule,
)


@pytest.fixture(scope="module")
def oracle(data_dir):
    return json.loads((data_dir / "keyframes.json").read_text())


def _values(raw: list) -> np.ndarray:
    return np.array([float(v) for v in raw], dtype=np.float64)


# --- v0.6 parity -----------------------------------------------------------------------------------

N = 120
FRAMES = np.arange(N, dtype=np.float64)

# What we do for every oracle case that v0.6 could not evaluate. ("values", array) or
# ("error", position of the ScheduleError).
FIXED = {
    36: ("error", 6),  # "0:(1) 50:(2)": missing comma, reported at "50"
    60: ("values", np.interp(FRAMES, [10, 50], [1.0, 3.0])),  # no key 0: first key held backwards
    63: ("values", np.arctan2(np.sin(FRAMES), np.cos(FRAMES))),  # "),"-inside-expression now parses
}


def test_oracle_cases_where_v06_produced_values(oracle):
    assert oracle["max_frames"] == N
    checked = 0
    for case in oracle["cases"]:
        if case["values"] is None:
            continue
        ours = parse_schedule(case["schedule"], N)
        assert ours.dtype == np.float64 and ours.shape == (N,)
        np.testing.assert_allclose(ours, _values(case["values"]), rtol=0, atol=1e-9,
                                   err_msg=f"case {case['id']}: {case['schedule']!r}")
        checked += 1
    assert checked >= 15


def test_oracle_cases_where_v06_failed_have_a_documented_outcome(oracle):
    failed = [case for case in oracle["cases"] if case["values"] is None]
    assert failed, "the oracle should contain failing cases"
    for case in failed:
        assert case["id"] in FIXED, f"no documented outcome for case {case['id']}: {case['schedule']!r}"
        kind, expected = FIXED[case["id"]]
        if kind == "error":
            with pytest.raises(ScheduleError) as info:
                parse_schedule(case["schedule"], N, field="zoom")
            assert info.value.position == expected
            assert info.value.field == "zoom"
            assert info.value.text == case["schedule"]
        else:
            np.testing.assert_allclose(parse_schedule(case["schedule"], N), expected, rtol=0, atol=1e-9)


def test_oracle_parsed_keys_match(oracle):
    for case in oracle["cases"]:
        if case["parsed"] is None or case["values"] is None:
            continue
        ours = {key.frame: key.value for key in parse_keyframes(case["schedule"])}
        assert ours == {frame: value for frame, value in case["parsed"]}, case["schedule"]


def test_notebook_default_series(oracle):
    defaults = oracle["deform_anim_keys_notebook_defaults"]
    anim_args = defaults["anim_args"]
    series = parse_schedules(anim_args, anim_args["max_frames"])
    assert tuple(series) == SCHEDULE_FIELDS
    assert set(defaults["series"]) == set(SCHEDULE_FIELDS)
    for name in SCHEDULE_FIELDS:
        np.testing.assert_allclose(series[name], _values(defaults["series"][name]), rtol=0, atol=1e-9,
                                   err_msg=name)


# Spec §2.5 worked examples: (schedule, max_frames, {frame: value}).
WORKED_EXAMPLES = [
    ("0:(0), 50:(10)", 100, {0: 0, 5: 1.0, 25: 5.0, 50: 10, 99: 10}),
    ("0:(-2), 100:(4)", 101, {0: -2, 5: -1.7, 50: 1.0, 100: 4}),
    ("0:(-2), 100:(4)", 100, {0: -2, 50: -2, 99: -2}),
    ("0:(10*sin(2*3.14*t/10))", 100, {0: 0, 1: 5.875275, 5: 0.015927, 50: -0.159259, 99: -6.130008}),
    ("0:(sin(t)), 50:(4)", 100, {0: 0, 5: -0.958924, 49: -0.953753, 50: 4, 99: 4}),
    ("0:(0), 50:(sin(t))", 100, {0: 0, 5: -0.026237, 25: -0.131187, 50: -0.262375, 51: 0.670229}),
    ("0:(5), 10:(t), 20:(0)", 30, {0: 5, 5: 7.5, 9: 9.5, 10: 10, 15: 15, 19: 19, 20: 0, 29: 0}),
    ("0:(t%15)", 100, {0: 0, 5: 5, 14: 14, 15: 0, 50: 5}),
    ("0:(0.65), 50:(0.4), 80:(0.65)", 100, {0: 0.65, 5: 0.625, 25: 0.525, 50: 0.4, 65: 0.525, 80: 0.65,
                                            99: 0.65}),
    ("0:(-0.35*(cos(3.141*t/25)**100)+0.8)", 100, {0: 0.45, 25: 0.450006, 50: 0.450025}),
    ("0:(0.375*(t%5)+15)", 7, {0: 15, 1: 15.375, 2: 15.75, 3: 16.125, 4: 16.5, 5: 15, 6: 15.375}),
    ("0:(1e1), 20:(0)", 60, {0: 10, 10: 10, 19: 10, 20: 0, 59: 0}),  # an expression: held, not tweened
    ("0:(.5), 20:(0)", 60, {0: 0.5, 1: 0.475, 10: 0.25, 20: 0}),  # a number: tweened
    ("0:(1), 70:(100)", 60, {0: 1, 30: 1, 59: 1}),
]


@pytest.mark.parametrize(("schedule", "max_frames", "expected"), WORKED_EXAMPLES)
def test_worked_examples(schedule, max_frames, expected):
    values = parse_schedule(schedule, max_frames)
    assert values.shape == (max_frames,)
    for frame, value in expected.items():
        assert values[frame] == pytest.approx(value, abs=1e-6), (schedule, frame)


# Spellings that v0.6 parses (spec §2.1): each must mean exactly "0:(0), 10:(10)".
@pytest.mark.parametrize("schedule", [
    "0:(0), 10:(10)", "0:(0),10:(10)", "0:(0),  10:(10)", "0:(0),\n10:(10)", "0:(0), 10:(10) ",
    "0:(0), 10:(10)\n", "0:   (0), 10: (10)", "00:(0), 010:(10)", "10:(10), 0:(0)", "0:(0), 10:(10),",
    "0:(5), 10:(10), 0:(0)",  # a later duplicate wins
])
def test_spellings_v06_accepts(schedule):
    np.testing.assert_array_equal(parse_schedule(schedule, 20), np.minimum(np.arange(20), 10.0))


# Spellings that v0.6 got wrong, with the fixed meaning "0:(0), 10:(10)".
@pytest.mark.parametrize("schedule", [
    "0:(0) , 10:(10)",  # v0.6: first value swallowed the rest -> SyntaxError
    "0 :(0), 10 :(10)",  # v0.6: no key 0 -> crash
    "0:(0), 10:(10)  ",  # v0.6: two trailing spaces silently dropped the last key
    " 0:(0), 10:(10)",
    "0:(0)\t,\t10:(10)",
])
def test_whitespace_is_tolerated(schedule):
    np.testing.assert_array_equal(parse_schedule(schedule, 20), np.minimum(np.arange(20), 10.0))


@pytest.mark.parametrize(("schedule", "max_frames", "expected"), [
    # balanced parentheses: ")," inside an expression no longer ends the value
    ("0:(where(t>5,(t),0))", 8, [0, 0, 0, 0, 0, 0, 6, 7]),
    ("0:((1+2)), 3:(0)", 4, [3, 3, 3, 0]),
    # leading space inside the parentheses (numexpr said "unexpected indent"): an expression, held
    ("0:( 2), 4:(6)", 5, [2, 2, 2, 2, 6]),
    ("0:(2 ), 4:(6)", 5, [2, 2, 2, 2, 6]),  # v0.6: trailing space = expression, held
    ("0:(2), 4:(6)", 5, [2, 3, 4, 5, 6]),
    # no key 0: hold the first key backwards (numbers and expressions)
    ("3:(6)", 5, [6, 6, 6, 6, 6]),
    ("2:(t*10)", 5, [20, 20, 20, 30, 40]),
    ("2:(4), 4:(8)", 6, [4, 4, 4, 6, 8, 8]),
    # every key beyond the end: the first key's value everywhere (an expression at its own frame)
    ("200:(7), 300:(9)", 3, [7, 7, 7]),
    ("200:(t)", 3, [200, 200, 200]),
    # number -> expression ramps to the expression's value at its own key
    ("0:(0), 4:(t*2)", 6, [0, 2, 4, 6, 8, 10]),
])
def test_fixed_and_kept_semantics(schedule, max_frames, expected):
    np.testing.assert_allclose(parse_schedule(schedule, max_frames), expected, rtol=0, atol=1e-12)


# Integer and numexpr semantics of v0.6 (spec §2.4), evaluated per frame there and vectorised here.
@pytest.mark.parametrize(("expression", "frame", "expected"), [
    ("(t-10)%5", 3, -2),  # integer % has C semantics (sign of the dividend)
    ("(t-10)%-3", 4, 0),
    ("(t-10)%-4", 4, -2),
    ("(t+1)%-4", 2, 3),
    ("t%(t-5)", 5, 0),  # integer modulo by zero gives 0 instead of crashing
    ("(t-10.0)%5", 3, 3.0),  # float % is floored
    ("-2.5%2", 0, 1.5),
    ("(-7)%5", 0, 3),  # constant arithmetic is Python's
    ("abs(t-10)%-3", 4, 0.0),  # abs() of an integer is a float in numexpr 2.8
    ("abs(t-11)%-3", 4, -2.0),
    ("t/10", 3, 0.3),  # true division
    ("2**t", 9, 512),
    ("t/max_frames", 5, 0.5),
    ("t/max_f", 5, 0.5),
    ("i*2", 4, 8),
    ("pi", 0, math.pi),
    ("e", 0, math.e),
    ("sum(t)+prod(t)", 3, 6),  # one-value reductions are the identity, as per frame in v0.6
    ("max(t)*min(t)", 3, 9),
    ("where((t%2)==0, 1, 0)", 4, 1),
    ("(t>2) & (t<5)", 3, 1),
    ("~(t>2)", 3, 0),
    ("floor(t/3)+ceil(t/3)", 4, 3),
    ("arctan2(1, 1)*4", 0, math.pi),
    ("fmod(t-10, 3)", 3, -1),
    ("real(complex(t*1.0, 1.0))", 2, 2),
    ("-2**2", 0, -4),
    ("2**-1", 0, 0.5),
    ("True+t", 1, 2),
    ("007*t", 2, 14),
])
def test_expression_semantics(expression, frame, expected):
    values = parse_schedule(f"0:({expression})", 10)
    assert values[frame] == pytest.approx(expected, abs=1e-12)


def test_vectorised_matches_per_frame_numexpr():
    # The v0.6 way: numexpr at one frame at a time with t a Python int. Expressions where the
    # integer semantics of this numexpr and v0.6's agree for t >= 0.
    for expression in ["10*sin(2*3.14*t/10)", "t%15", "0.375*(t%5)+15", "sqrt(t)*2-t/3", "2**(t%20)",
                       "where(t>50, 1, 0)", "-0.35*(cos(3.141*t/25)**100)+0.8", "(t*t)%7 + t/7"]:
        ours = parse_schedule(f"0:({expression})", 100)
        per_frame = [float(numexpr.evaluate(expression, local_dict={"t": t}, global_dict={}))
                     for t in range(100)]
        np.testing.assert_allclose(ours, per_frame, rtol=0, atol=1e-12, err_msg=expression)


def test_number_classification():
    for text in ["5", "-2", "+5", ".5", "0.65", "-.25"]:
        assert is_number(text), text
    for text in ["5.", "1e-3", " 5", "5 ", "(5)", "", "t", "5x"]:
        assert not is_number(text), text


# --- errors with positions -------------------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "position", "fragment"), [
    ("", 0, "empty schedule"),
    ("   ", 0, "empty schedule"),
    ("-5:(3), 0:(1)", 0, "sign"),  # v0.6 read key 5
    ("0:(1), -5:(3)", 7, "sign"),
    ("0.5:(1), 0:(0)", 0, "whole number"),  # v0.6 read key 5
    ("0:(1),10:(2)x", 12, "unexpected 'x'"),  # v0.6 dropped the key silently
    ("garbage 0:(1)", 0, "frame number"),  # v0.6 skipped the garbage
    ("0:(1) 50:(2)", 6, "missing ','"),
    ("0:(1)10:(2)", 5, "missing ','"),
    ("0:(1),,", 6, "frame number"),
    ("0(1)", 1, "':'"),
    ("0:1", 2, "'('"),
    ("0:(1", 2, "never closed"),
    ("0:(sin(t)", 2, "never closed"),
    ("0:()", 3, "empty expression"),
    ("0:(+)", 3, "not a number"),
    ("0:(1), 5:(foo)", 10, "unknown name 'foo'"),
    ("0:(1), 5:(sin(t) +)", 18, "ends too early"),
    ("0:(t<1<2)", 6, "chained comparison"),
    ("0:(min(t, 2))", 3, "where(a<b, a, b)"),
    ("0:(t//2)", 4, "floor(a/b)"),
    ("0:(t and 1)", 5, "use &"),
    ("0:(1/(t-3))", 3, "at t=3"),  # non-finite value names the frame
    ("0:(0), 5:(sqrt(t-7))", 10, "at t=5"),
    ("0:(1e999)", 3, "too large"),
    ("0:(t**-1)", 3, "negative integer powers"),
    ("0:(complex(t*1.0, 1.0))", 3, "complex"),
    ("123456789012345:(1)", 0, "too large"),
])
def test_errors_name_the_position(schedule, position, fragment):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(schedule, 10, field="angle")
    error = info.value
    assert error.position == position, str(error)
    assert error.field == "angle"
    assert fragment in str(error)
    assert "'angle'" in str(error)


def test_out_of_range_keys_are_not_evaluated():
    # v0.6 never looked at keys >= max_frames; neither do we (their values stay unchecked).
    np.testing.assert_array_equal(parse_schedule("0:(1), 50:(1/0)", 10), np.ones(10))


def test_a_non_string_schedule_is_an_error():
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_schedule(1.04, 10, field="zoom")


@pytest.mark.parametrize("max_frames", [0, -1, 10**6 + 1, 2.5, True, "10"])
def test_max_frames_is_bounded(max_frames):
    with pytest.raises(SettingsError, match="max_frames"):
        parse_schedule("0:(0)", max_frames)


# --- safety ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "__import__('os').system('echo hacked')",
    "__builtins__",
    "t.__class__",
    "t.real",
    "(t).real",
    "os.system",
    "lambda x: x",
    "'abc'",
    '"abc"',
    "[t]",
    "{1: 2}",
    "t if t else 1",
    "exec",
    "eval(t)",
    "globals()",
    "getattr(t, 'x')",
    "x = 1",
    "t; 1",
    "t\\",
    "10**10**10",
    "9**9**9**9",
    "(2**62)*8",
    "2**64",
    "t*" + "1" * 30,
    "(" * 10000 + "t" + ")" * 10000,
    "(" * 33 + "t" + ")" * 33,
    "t+" * 150 + "t",
    "-" * 400 + "t",
    "2**" * 300 + "2",
    "~" * 900 + "t",
    "t" * 1_000_000,
    "1/0",
    "1%0",
])
def test_unsafe_or_unbounded_expressions_are_refused(expression):
    with pytest.raises(ScheduleError):
        parse_schedule(f"0:({expression})", 10)


def test_a_schedule_past_the_length_limit_is_refused():
    """The limit allows a keyframe on every frame of the longest run; past it (megabytes) is refused unread."""
    assert keyframes.MAX_SCHEDULE_LENGTH >= 30 * keyframes.MAX_FRAMES
    with pytest.raises(ScheduleError, match="longer than"):
        parse_schedule("0:(0), " * (keyframes.MAX_SCHEDULE_LENGTH // 7 + 1), 10)


def test_deep_but_allowed_expressions_evaluate():
    nested = "(" * keyframes.MAX_NESTING + "t" + ")" * keyframes.MAX_NESTING
    np.testing.assert_array_equal(parse_schedule(f"0:({nested})", 4), np.arange(4.0))
    chain = "+".join(["1"] * 60 + ["t"])
    np.testing.assert_array_equal(parse_schedule(f"0:({chain})", 4), np.arange(4.0) + 60)


def test_integer_overflow_wraps_like_v06_instead_of_hanging():
    values = parse_schedule("0:((t*0+10)**10**10)", 3)
    assert values.shape == (3,) and np.isfinite(values).all()


_SAFE_NUMEXPR_TEXT = set(string.ascii_letters + string.digits + "_ .+-*/%<>=!&|~(),e")


@pytest.fixture
def numexpr_spy(monkeypatch):
    """Record every text handed to numexpr and check that it only holds checked tokens."""
    seen: list[str] = []
    real = numexpr.evaluate

    def spy(text, *args, **kwargs):
        assert set(text) <= _SAFE_NUMEXPR_TEXT and "__" not in text and "'" not in text, text
        seen.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(keyframes.numexpr, "evaluate", spy)
    return seen


SCHEDULE_ALPHABET = st.sampled_from(
    list("0123456789:(),. t+-*/%<>=&|~'\"[]_;\n") + [
        "t", "sin", "where", "__import__", "os", "system", "lambda", ".", "__class__", "max_f", "pi",
        "**", "e", "1e3", ", ", "0:(", "10:(", ")", "max", "min(", "sum(", "__", "eval", "exec", "x"])


@st.composite
def schedule_like(draw):
    pieces = draw(st.lists(SCHEDULE_ALPHABET, max_size=30))
    return "".join(pieces)


PAYLOADS = [
    "0:(__import__('os').system('touch {path}'))",
    "0:(__import__(\"pathlib\").Path(\"{path}\").touch())",
    "0:(open('{path}', 'w'))",
    "0:(t), 5:([x for x in ().__class__.__bases__[0].__subclasses__()])",
    "0:(lambda: open('{path}','w'))",
    "0:(exec(\"open('{path}','w')\"))",
]


def test_code_payloads_never_run(tmp_path, numexpr_spy):
    sentinel = tmp_path / "sentinel"
    for payload in PAYLOADS:
        with pytest.raises(ScheduleError):
            parse_schedule(payload.format(path=sentinel), 10)
    assert not sentinel.exists()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=60), schedule_like()), max_frames=st.integers(1, 40))
def test_any_text_gives_finite_values_or_a_deforum_error(text, max_frames, numexpr_spy):
    try:
        values = parse_schedule(text, max_frames)
    except DeforumError as error:
        assert isinstance(error, ScheduleError)
        assert error.position is None or 0 <= error.position <= len(text)
        return
    assert values.dtype == np.float64 and values.shape == (max_frames,)
    assert np.isfinite(values).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.dictionaries(st.integers(0, 60), st.one_of(
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.4f}"),
    st.sampled_from(["t", "sin(t)", "t%7", "(t-30)%4", "2*t+1", "where(t>10, t, -t)"]))),
    max_frames=st.integers(1, 50))
def test_valid_schedules_follow_the_keyframe_rules(keys, max_frames, numexpr_spy):
    if not keys:
        return
    text = ", ".join(f"{frame}:({value})" for frame, value in keys.items())
    values = parse_schedule(text, max_frames)
    inside = sorted(k for k in keys if k < max_frames)
    for frame in inside:
        value = keys[frame]
        if is_number(value):
            assert values[frame] == pytest.approx(float(value))
    if inside and is_number(keys[inside[-1]]):  # hold after the last number key
        assert (values[inside[-1]:] == values[inside[-1]]).all()
    if inside:  # hold before the first key
        assert (values[:inside[0]] == values[inside[0]]).all()


# --- all 15 fields at once -------------------------------------------------------------------------

def _defaults() -> dict[str, str]:
    values = dict.fromkeys(SCHEDULE_FIELDS, "0:(0)")
    values.update(zoom="0:(1.04)", translation_x="0:(10*sin(2*3.14*t/10))", perspective_flip_phi="0:(t%15)")
    return values


def test_schedule_fields_in_v06_order():
    assert len(SCHEDULE_FIELDS) == 15
    assert SCHEDULE_FIELDS[0] == "angle" and SCHEDULE_FIELDS[-1] == "contrast_schedule"


def test_parse_schedules_accepts_a_namespace():
    from types import SimpleNamespace

    series = parse_schedules(SimpleNamespace(**_defaults(), max_frames=5), 5)
    np.testing.assert_array_equal(series["perspective_flip_phi"], np.arange(5.0))


def test_parse_schedules_reports_every_error_at_once():
    values = _defaults()
    values["zoom"] = "0:(1.04) 10:(1)"
    values["angle"] = "0:(foo)"
    del values["contrast_schedule"]
    with pytest.raises(ScheduleError) as info:
        parse_schedules(values, 20)
    error = info.value
    assert [(e.field, e.position) for e in error.errors] == [
        ("angle", 3), ("zoom", 9), ("contrast_schedule", None)]
    message = str(error)
    assert "3 schedules have errors" in message
    assert "'zoom'" in message and "'angle'" in message and "'contrast_schedule'" in message


def test_parse_schedules_raises_the_single_error_itself():
    values = _defaults()
    values["noise_schedule"] = "0:(0.02"
    with pytest.raises(ScheduleError) as info:
        parse_schedules(values, 20)
    assert info.value.field == "noise_schedule" and info.value.position == 2
    assert info.value.errors == [info.value]


# --- prompt schedule -------------------------------------------------------------------------------

@pytest.mark.parametrize(("prompts", "max_frames", "expected"), [
    ({0: "a", 2: "b"}, 4, ["a", "a", "b", "b"]),
    ({2: "b", 0: "a"}, 4, ["a", "a", "b", "b"]),
    ({"0": "a", "2": "b"}, 4, ["a", "a", "b", "b"]),  # JSON keys (v0.6 gave every frame "a")
    ({1: "a", 3: "b"}, 5, ["a", "a", "a", "b", "b"]),  # before the first key: the first prompt
    ({0: "a", 10: "b"}, 3, ["a", "a", "a"]),  # keys >= max_frames ignored
    ({20: "b", 10: "a"}, 2, ["a", "a"]),  # all beyond the end: the smallest key's prompt
    ({0: "a", "0": "b"}, 2, ["b", "b"]),  # a later duplicate wins
    ({0: "a", 2.0: "b"}, 3, ["a", "a", "b"]),
])
def test_prompt_schedule(prompts, max_frames, expected):
    assert prompt_schedule(prompts, max_frames) == expected


def test_default_animation_prompts():
    prompts = {0: "apple", 20: "banana", 30: "coconut", 40: "durian"}
    frames = prompt_schedule(prompts, 50)
    assert frames[19] == "apple" and frames[20] == "banana" and frames[39] == "coconut"
    assert frames[49] == "durian" and len(frames) == 50


@pytest.mark.parametrize(("prompts", "fragment"), [
    ({"ten": "a"}, "'ten'"),
    ({"1.5": "a"}, "'1.5'"),
    ({1.5: "a"}, "1.5"),
    ({-1: "a"}, "negative"),
    ({True: "a"}, "True"),
    ({0: 5}, "must be a string"),
    ({}, "non-empty"),
])
def test_prompt_schedule_errors(prompts, fragment):
    with pytest.raises(ScheduleError) as info:
        prompt_schedule(prompts, 5)
    assert info.value.field == "animation_prompts"
    assert fragment in str(info.value)


@pytest.mark.parametrize("schedule", ["0:(foo)", "0:(foo(t))"])
def test_messages_list_only_the_functions_an_artist_uses(schedule):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(schedule, 10, field="zoom")
    message = str(info.value)
    listed = message.split("sin, ")[-1] if "sin, " in message else ""
    for internal in ("real", "imag", "conj", "copy", "ones_like", "complex", "sum", "prod", "min", "max"):
        assert not re.search(rf"\b{internal}\b", listed), (internal, message)
    if "allowed" in message:
        for useful in ("sin", "cos", "where", "floor", "arctan2", "fmod"):
            assert useful in message
    if "allowed names" in message:
        assert "allowed names: t, max_f, pi, e and the functions" in message


def test_unlisted_v06_functions_still_work():
    np.testing.assert_allclose(parse_schedule("0:(real(t) + copy(t) + max(2) + ones_like(t))", 3), [3, 5, 7])
    np.testing.assert_allclose(parse_schedule("0:(i + max_frames)", 3), [3, 4, 5])


# --- names and limits are arguments (keyframes imports nothing of the settings) -----------------------

def test_parse_schedules_takes_the_field_names():
    values = {"a": "0:(1), 2:(3)", "b": "0:(t)", "not_parsed": "0:(foo)"}
    series = parse_schedules(values, 3, names=("b", "a"))
    assert list(series) == ["b", "a"]
    np.testing.assert_array_equal(series["a"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(series["b"], [0.0, 1.0, 2.0])
    with pytest.raises(ScheduleError, match="missing schedule field") as info:
        parse_schedules(values, 3, names=("a", "c"))
    assert info.value.field == "c"


def test_the_frame_limit_is_an_argument():
    assert keyframes.MAX_FRAMES == 100_000  # the default limit
    keyframes.parse_schedule("0:(1)", 10, frame_limit=10)
    with pytest.raises(SettingsError, match="from 1 to 9, got 10"):
        keyframes.parse_schedule("0:(1)", 10, frame_limit=9)
    with pytest.raises(SettingsError, match="from 1 to 4"):
        parse_schedules(_defaults(), 5, frame_limit=4)
    with pytest.raises(SettingsError, match="from 1 to 4"):
        prompt_schedule({0: "a"}, 5, frame_limit=4)
    assert prompt_schedule({0: "a"}, 4, frame_limit=4) == ["a"] * 4


def test_a_schedule_with_a_keyframe_on_every_frame_of_a_long_music_video_parses():
    """A Parseq or audio schedule has one keyframe a frame: 5,400 frames (3 minutes at 30 fps) and more."""
    import numpy as np

    from deforum.keyframes import parse_schedule

    written = [f"{v:.6g}" for v in np.sin(np.arange(6000) * 0.01) * 1.2345678]
    text = ", ".join(f"{i}:({v})" for i, v in enumerate(written))
    assert len(text) > 100_000
    np.testing.assert_array_equal(parse_schedule(text, 6000), np.array([float(v) for v in written]))


# --- A1111 Deforum's quoted frame expressions ------------------------------------------------------

def test_a_quoted_frame_is_an_expression_of_max_f():
    np.testing.assert_array_equal(parse_schedule('0:(0), "max_f/2":(10)', 11), [0, 2, 4, 6, 8, 10, 10, 10, 10, 10, 10])
    np.testing.assert_array_equal(parse_schedule("0:(1), 'max_f-1':(3)", 3), [1, 2, 3])


@pytest.mark.parametrize(("text", "message"), [
    ('0:(0), "max_f-9":(1)', "frame 'max_f-9' is -4 for max_f=5"),
    ('0:(0), "max_f:(1)', "never closed"),
    ('0:(0), "t+1":(1)', "t"),
])
def test_a_bad_quoted_frame_is_a_schedule_error(text, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(text, 5, field="zoom")
