"""Weighted sub-prompts: ``a cat:2 a dog:-1`` -> positive and negative (text, weight) lists (spec §3.2-3.3).

A prompt is split left to right into sub-prompts. Each ends at one or more ``:`` followed by an optional
weight, or at the end of the text. A weight is a number (``2``, ``-0.5``) or a back-ticked numexpr
expression in ``t`` (the frame index), checked by the same allow-list as keyframe schedules.
``\\:`` is a literal colon. Missing weights are 1; negative weights move the sub-prompt to the negative
list with weight |w|; zero weights drop it. Each list is then normalised to sum to 1.

Negative prompts (A1111 Deforum's syntax): the text after ``--neg`` is the negative prompt, with the same
sub-prompt grammar: ``a cat:2 --neg dog:1 bird:`t/10``` puts ``dog`` and ``bird`` in the negative list (a
negative weight after ``--neg`` moves a sub-prompt to the positive list), so ``a cat --neg dog`` is
``a cat:1 dog:-1``. A prompt has at most one ``--neg``. ``compose_prompt`` adds the run's
``animation_prompts_positive`` before the positive part and ``animation_prompts_negative`` after the
negative part, as A1111 Deforum does.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np

from deforum.errors import ScheduleError, SettingsError
from deforum.keyframes import evaluate_expression, is_number

# The v0.6 grammar (spec §3.2), restated:
#   subprompt := TEXT ( ":"+ WEIGHT? WS* | end-of-text )
_SUBPROMPT = re.compile(
    r"""
    (?P<prompt>(?:\\:|[^:])+)                 # text: characters other than ':', or an escaped '\:'
    (?:
        :+                                    # one or more colons end the text
        (?P<weight>-?\d+(?:\.\d+)?|`[\s\S]*?`)?  # optional weight: a number or a `math expression`
        \s*                                   # whitespace after the weight belongs to nobody
      | $                                     # or the text runs to the end
    )
    """,
    re.VERBOSE,
)

NEG = "--neg"  # the marker that starts a prompt's negative part

EMPTY_EXPRESSION_WARNING = "the value inside `-characters cannot represent a math function"
ZERO_SUM_WARNING = "Warning: Subprompt weights add up to zero. Discarding and using even weights instead."

Weighted = list[tuple[str, float]]


class PromptWeightWarning(UserWarning):
    """A prompt weight that v0.6 accepted with a printed warning."""


def _weight(match: re.Match, text: str, frame: int, field: str | None) -> float:
    raw = match.group("weight")
    if raw is None:
        return 1.0
    if is_number(raw):
        return float(raw)
    if len(raw) < 3:
        warnings.warn(EMPTY_EXPRESSION_WARNING, PromptWeightWarning, stacklevel=3)
        return 1.0
    value = evaluate_expression(raw[1:-1], frame, field=field, source=text, offset=match.start("weight") + 1)
    return float(value)


def _neg_bounds(text: str, field: str | None = None) -> tuple[int, int] | None:
    """(end of the positive part, start of the negative part) around the ``--neg`` of ``text``, the
    whitespace on either side of the marker excluded; None without a marker. Two markers: SettingsError."""
    count = text.count(NEG)
    if count == 0:
        return None
    if count > 1:
        raise SettingsError(neg_count_message(text, field))
    at = text.index(NEG)
    end = len(text[:at].rstrip())
    start = at + len(NEG)
    while start < len(text) and text[start].isspace():
        start += 1
    return end, start


def neg_count_message(text: str, field: str | None = None) -> str:
    where = f"{field}: " if field else ""
    return (f"{where}the prompt {text!r} has {text.count(NEG)} {NEG!r} markers; a prompt has at most one "
            f"(the negative prompt is the text after it)")


def split_negative(text: str, *, field: str | None = None) -> tuple[str, str]:
    """(positive, negative) texts of a prompt: the parts before and after its ``--neg``, stripped at the marker.

    Without ``--neg`` the positive is ``text`` unchanged and the negative is ''. Two markers raise a
    SettingsError naming the prompt (and ``field`` when given).
    """
    bounds = _neg_bounds(text, field)
    if bounds is None:
        return text, ""
    end, start = bounds
    return text[:end], text[start:]


def compose_prompt(text: str, positive: str = "", negative: str = "", *, field: str | None = None) -> str:
    """A frame's full prompt ``positive_part --neg negative_part`` with a run's appended texts (A1111 Deforum's
    ``animation_prompts_positive`` / ``animation_prompts_negative``).

    ``positive`` goes before the prompt's positive part and ``negative`` after its negative part, each joined
    with one space (A1111 Deforum prepends the positive and appends the negative after ``--neg``, adding the
    marker when the prompt has none). A ``--neg`` inside ``negative`` is dropped, as A1111 Deforum does; one
    inside ``positive`` is a SettingsError. With both empty the prompt is returned unchanged.
    """
    positive, negative = positive.strip(), negative.replace(NEG, "").strip()
    pos, neg = split_negative(text, field=field)  # two --neg: a SettingsError, appended texts or not
    if not positive and not negative:
        return text
    if NEG in positive:
        raise SettingsError(f"animation_prompts_positive: {positive!r} contains {NEG!r}; it is added to every "
                            f"prompt's positive part (put negatives in animation_prompts_negative)")
    pos = " ".join(part for part in (positive, pos.strip()) if part)
    neg = " ".join(part for part in (neg.strip(), negative) if part)
    return f"{pos} {NEG} {neg}".strip() if neg else pos


def split_weighted_subprompts(text: str, frame: int = 0, skip_normalize: bool = False, *,
                              field: str | None = None) -> tuple[Weighted, Weighted]:
    """(negative, positive) lists of (sub-prompt, weight) for ``text`` at ``frame``, as v0.6.

    Back-ticked weights are evaluated with ``t = frame``; a bad one raises ScheduleError with its
    position in ``text`` (and ``field``, when given). With ``skip_normalize`` the raw magnitudes are
    returned, otherwise each list sums to 1. The sub-prompts after ``--neg`` go to the negative list (those
    with a negative weight there to the positive list); two ``--neg`` raise SettingsError.
    """
    negative: Weighted = []
    positive: Weighted = []
    bounds = _neg_bounds(text, field)
    parts = [(0, len(text), False)] if bounds is None else [(0, bounds[0], False), (bounds[1], len(text), True)]
    for start, end, after_neg in parts:
        for match in _SUBPROMPT.finditer(text, start, end):
            weight = _weight(match, text, frame, field)
            if after_neg:
                weight = -weight
            subprompt = match.group("prompt").replace("\\:", ":")
            if weight < 0:
                negative.append((subprompt, -weight))
            elif weight > 0:
                positive.append((subprompt, weight))
    if skip_normalize:
        return negative, positive
    return normalize_prompt_weights(negative), normalize_prompt_weights(positive)


def weight_problems(text: str, frames: Sequence[int]) -> list[str]:
    """Every back-ticked weight of ``text`` that fails at one of ``frames`` (the values of ``t`` it is used
    with), as messages with the character position in ``text``, and more than one ``--neg``; nothing is
    generated.

    The same checks as ``split_weighted_subprompts`` (the expression allow-list, a finite value), made once
    over all the frames, so a settings check finds what a render would stop at.
    """
    found = []
    if text.count(NEG) > 1:
        found.append(neg_count_message(text))
    t = np.asarray(list(frames), dtype=np.int64)
    for match in _SUBPROMPT.finditer(text):
        raw = match.group("weight")
        if raw is None or is_number(raw) or len(raw) < 3:
            continue
        try:
            evaluate_expression(raw[1:-1], t, source=text, offset=match.start("weight") + 1)
        except ScheduleError as exc:
            found.append(str(exc))
    return found


def normalize_prompt_weights(parsed: Weighted) -> Weighted:
    """Scale the weights to sum to 1; equal weights (and a warning) when they sum to 0."""
    if not parsed:
        return []
    total = sum(weight for _, weight in parsed)
    if total == 0:
        warnings.warn(ZERO_SUM_WARNING, PromptWeightWarning, stacklevel=2)
        return [(subprompt, 1 / len(parsed)) for subprompt, _ in parsed]
    return [(subprompt, weight / total) for subprompt, weight in parsed]


_FILENAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def sanitize(prompt: str) -> str:
    """The prompt as v0.6 put it in file names: ASCII letters only, spaces as underscores."""
    return "".join(c for c in prompt if c in _FILENAME_CHARACTERS).replace(" ", "_")
