"""Prompt text -> the (uc, c) conditioning pair of classifier-free guidance, as v0.6 builds it.

Spec: generation 2.2 and animation 3.4.

* ``prompt_weighting`` on: the prompt is split into weighted sub-prompts (``deforum.prompts``);
  ``c = sum(w_i * E(p_i))`` over the positive list, ``uc = sum(w_j * E(n_j))`` over the negative list, which
  replaces the usual ``E("")``. An empty positive list encodes the whole raw prompt, as v0.6 did.
* ``prompt_weighting`` off: ``c = E(prompt)`` and ``uc = E("")``.

Encodings are cached per text (an LRU dictionary), so the same prompt over many frames is encoded once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import torch

from deforum.errors import SettingsError

log = logging.getLogger(__name__)

INTERPOLATIONS = ("linear", "slerp")


class ConditioningCache:
    """Text -> text-encoder output (1 x 77 x C), least recently used entries dropped beyond ``maxsize``."""

    def __init__(self, model: Any, maxsize: int = 64):
        self.model = model
        self.maxsize = maxsize
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encode_count = 0  # texts actually sent to the encoder (tests and logs read it)

    def __call__(self, text: str) -> torch.Tensor:
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        with torch.no_grad():
            encoded = self.model.get_learned_conditioning([text])
        self.encode_count += 1
        self._cache[text] = encoded
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return encoded

    def clear(self) -> None:
        self._cache.clear()


def weighted_sum(encode: Any, weighted: list[tuple[str, float]]) -> torch.Tensor:
    """``sum(w * E(text))`` over (text, weight) pairs: a weighted sum of whole token-embedding sequences."""
    total = None
    for text, weight in weighted:
        term = encode(text) * float(weight)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("weighted_sum needs at least one (text, weight) pair")
    return total


def get_uc_and_c(prompt: str, encode: Any, *, frame: int = 0, prompt_weighting: bool = True,
                 normalize_prompt_weights: bool = True,
                 log_weighted_subprompts: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(uc, c) for one prompt; ``encode`` maps a text to its embedding (a ``ConditioningCache``).

    ``frame`` is the value of ``t`` in back-ticked weight expressions (0 outside animations).
    """
    if not prompt_weighting:
        return encode(""), encode(prompt)

    from deforum.prompts import split_weighted_subprompts

    negative, positive = split_weighted_subprompts(prompt, frame, not normalize_prompt_weights)
    # the negative list holds magnitudes; abs() keeps this true whichever sign convention the parser uses
    negative = [(text, abs(float(weight))) for text, weight in negative]
    positive = [(text, float(weight)) for text, weight in positive]
    if log_weighted_subprompts:
        log_subprompts(prompt, positive, negative)

    c = weighted_sum(encode, positive) if positive else encode(prompt)  # v0.6: raw text when no positives
    uc = weighted_sum(encode, negative) if negative else encode("")
    return uc, c


def log_subprompts(prompt: str, positive: list[tuple[str, float]], negative: list[tuple[str, float]]) -> None:
    """``log_weighted_subprompts``: sub-prompts and weights at INFO level (v0.6 printed them in colour)."""
    log.info("prompt %r", prompt)
    for text, weight in positive:
        log.info("  positive %.4f  %r", weight, text)
    for text, weight in negative:
        log.info("  negative %.4f  %r", weight, text)
    if not positive:
        log.info("  no positive sub-prompt: the whole prompt text is encoded (as v0.6)")


def interpolate_conditioning(c1: torch.Tensor, c2: torch.Tensor, t: float,
                             method: str = "linear") -> torch.Tensor:
    """A conditioning between ``c1`` (t=0) and ``c2`` (t=1) for the Interpolation mode (spec 8).

    ``linear`` is v0.6's ``c1 + (c2 - c1) * t``. ``slerp`` interpolates each token vector along the great
    circle (its norm interpolated linearly), falling back to linear where the two are nearly parallel.
    """
    if method == "linear":
        return c1 + (c2 - c1) * t
    if method != "slerp":
        raise SettingsError(
            f"interpolation method: {method!r} is not allowed; choose one of {', '.join(INTERPOLATIONS)}"
        )
    a, b = c1.float(), c2.float()
    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = a / norm_a.clamp_min(1e-12)
    unit_b = b / norm_b.clamp_min(1e-12)
    cos = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    parallel = sin.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * omega) / safe_sin)
    wb = torch.where(parallel, torch.full_like(sin, float(t)), torch.sin(t * omega) / safe_sin)
    direction = wa * unit_a + wb * unit_b
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    norm = norm_a + (norm_b - norm_a) * t
    out = torch.where(parallel, a + (b - a) * t, direction * norm)
    return out.to(c1.dtype)


__all__ = ["INTERPOLATIONS", "ConditioningCache", "get_uc_and_c", "interpolate_conditioning",
           "log_subprompts", "weighted_sum"]
