"""Weighted sub-prompts: ``a cat:2 a dog:-1`` -> positive and negative (text, weight) lists (spec §3.2-3.3).

A prompt is split left to right into sub-prompts. Each ends at one or more ``:`` followed by an optional
weight, or at the end of the text. A weight is a number (``2``, ``-0.5``) or a back-ticked numexpr
expression in ``t`` (the frame index), checked by the same allow-list as keyframe schedules.
``\\:`` is a literal colon. Missing weights are 1; negative weights move the sub-prompt to the negative
list with weight |w|; zero weights drop it. Each list is then normalised to sum to 1.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np

from deforum.errors import ScheduleError
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


def split_weighted_subprompts(text: str, frame: int = 0, skip_normalize: bool = False, *,
                              field: str | None = None) -> tuple[Weighted, Weighted]:
    """(negative, positive) lists of (sub-prompt, weight) for ``text`` at ``frame``, as v0.6.

    Back-ticked weights are evaluated with ``t = frame``; a bad one raises ScheduleError with its
    position in ``text`` (and ``field``, when given). With ``skip_normalize`` the raw magnitudes are
    returned, otherwise each list sums to 1.
    """
    negative: Weighted = []
    positive: Weighted = []
    for match in _SUBPROMPT.finditer(text):
        weight = _weight(match, text, frame, field)
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
    with), as messages with the character position in ``text``; nothing is generated.

    The same checks as ``split_weighted_subprompts`` (the expression allow-list, a finite value), made once
    over all the frames, so a settings check finds what a render would stop at.
    """
    found = []
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
