"""Prompt text -> the (uc, c) conditioning pair of classifier-free guidance, as v0.6 builds it.

Spec: generation 2.2 and animation 3.4.

* ``prompt_weighting`` on: the prompt is split into weighted sub-prompts (``deforum.prompts``);
  ``c = sum(w_i * E(p_i))`` over the positive list, ``uc = sum(w_j * E(n_j))`` over the negative list, which
  replaces the usual ``E("")``. An empty positive list encodes the whole raw prompt, as v0.6 did.
* ``prompt_weighting`` off: ``c = E(prompt)`` and ``uc = E("")``.
* A negative prompt (the text after ``--neg``, A1111 Deforum's syntax) replaces the empty unconditional:
  with weighting on its weighted sub-prompts join the negative list (``a cat --neg dog`` is
  ``a cat:1 dog:-1``); with weighting off ``c = E(positive part)`` and ``uc = E(negative part)``.

A ``Conditioning`` is what a model family's ``encode_prompt`` returns and what the denoisers take: the
cross-attention states (1 x 77 x C), an optional pooled embedding (None for SD 1.x / 2.x) and named extras
(e.g. SDXL's time ids). ``cat`` (the CFG batch), ``lerp`` / ``slerp`` (prompt interpolation) and
``weighted_sum`` act on every tensor of it with exactly the arithmetic they used on bare tensors; extras
describe the image rather than the text, so combinations keep the first operand's extras (``cat`` batches
them). The module functions also accept bare tensors (the older form, still passed by some callers) and
then return a bare tensor.

Encodings are cached per text (an LRU dictionary), so the same prompt over many frames is encoded once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

import torch

from deforum.errors import SettingsError

log = logging.getLogger(__name__)

INTERPOLATIONS = ("linear", "slerp")


@dataclass(frozen=True, eq=False)
class Conditioning:
    """One prompt's conditioning: ``cross_attn`` (B x 77 x C), ``pooled`` (B x P or None), ``extras``."""

    cross_attn: torch.Tensor
    pooled: torch.Tensor | None = None
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.cross_attn, torch.Tensor):
            raise TypeError(f"Conditioning.cross_attn must be a tensor, not {type(self.cross_attn).__name__}")
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))

    @classmethod
    def of(cls, value: CondLike) -> Conditioning:
        """A Conditioning as is; a bare tensor as its cross-attention states."""
        return value if isinstance(value, Conditioning) else cls(value)

    @property
    def batch(self) -> int:
        return int(self.cross_attn.shape[0])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        """The same fields with ``fn`` applied to every tensor."""
        return Conditioning(fn(self.cross_attn), None if self.pooled is None else fn(self.pooled),
                            {k: fn(v) for k, v in self.extras.items()})

    def to(self, *args: Any, **kwargs: Any) -> Conditioning:
        """``Tensor.to`` on every tensor (device, dtype, or both)."""
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Conditioning:
        return self.map(torch.Tensor.detach)

    def __repr__(self) -> str:
        pooled = None if self.pooled is None else tuple(self.pooled.shape)
        return (f"Conditioning(cross_attn={tuple(self.cross_attn.shape)}, pooled={pooled}, "
                f"extras={sorted(self.extras)})")


CondLike = Union[Conditioning, torch.Tensor]  # noqa: UP007 (a runtime alias)


def _combine(parts: Sequence[CondLike], fn: Callable[..., torch.Tensor], what: str,
             extras_fn: Callable[..., torch.Tensor] | None = None) -> CondLike:
    """``fn`` over the matching tensors of several conditionings (bare tensors in, a bare tensor out)."""
    if not any(isinstance(p, Conditioning) for p in parts):
        return fn(*parts)
    items = [Conditioning.of(p) for p in parts]
    pooled_set = {p.pooled is None for p in items}
    if len(pooled_set) > 1:
        raise ValueError(f"{what}: some conditionings have a pooled embedding and some do not")
    keys = set(items[0].extras)
    if any(set(p.extras) != keys for p in items[1:]):
        raise ValueError(f"{what}: the conditionings have different extras "
                         f"({', '.join(sorted({k for p in items for k in p.extras}))})")
    pooled = None if items[0].pooled is None else fn(*[p.pooled for p in items])
    if extras_fn is None:
        extras = dict(items[0].extras)
    else:
        extras = {k: extras_fn(*[p.extras[k] for p in items]) for k in items[0].extras}
    return Conditioning(fn(*[p.cross_attn for p in items]), pooled, extras)


def cat(parts: Sequence[CondLike]) -> CondLike:
    """Batch concatenation (CFG's [uncond, cond] batch), extras included."""
    def join(*tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(list(tensors))
    return _combine(list(parts), join, "cat", extras_fn=join)


def lerp(a: CondLike, b: CondLike, t: float) -> CondLike:
    """v0.6's linear blend ``a + (b - a) * t`` (exactly a at t = 0)."""
    return _combine([a, b], lambda x, y: x + (y - x) * t, "lerp")


def _slerp_tensor(c1: torch.Tensor, c2: torch.Tensor, t: float) -> torch.Tensor:
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


def slerp(a: CondLike, b: CondLike, t: float) -> CondLike:
    """Each token vector along the great circle, its norm interpolated linearly (linear where parallel)."""
    return _combine([a, b], lambda x, y: _slerp_tensor(x, y, t), "slerp")


def weighted(terms: Iterable[tuple[CondLike, float]]) -> CondLike:
    """``sum(w * c)`` over (conditioning, weight) pairs, summed left to right as v0.6 did."""
    total: CondLike | None = None
    for value, weight in terms:
        term = _combine([value], lambda x, w=float(weight): x * w, "weighted sum")
        total = term if total is None else _combine([total, term], torch.add, "weighted sum")
    if total is None:
        raise ValueError("weighted sum needs at least one (conditioning, weight) pair")
    return total


def _encode_with_text_encoder(model: Any, text: str) -> Conditioning:
    """SD's encoding, for a model that names no family: its text encoder's hidden states."""
    return Conditioning(model.get_learned_conditioning([text]))


class ConditioningCache:
    """Text -> the model family's ``Conditioning``, least recently used entries dropped beyond ``maxsize``.

    ``encode_prompt(model, text) -> Conditioning`` is the family's (``model.family``; SD's when the model has
    none). Calling the cache gives the cross-attention tensor (1 x 77 x C), the older form;
    ``conditioning(text)`` gives the whole value.
    """

    def __init__(self, model: Any, maxsize: int = 64,
                 encode_prompt: Callable[[Any, str], Conditioning] | None = None):
        self.model = model
        self.maxsize = maxsize
        if encode_prompt is None:
            family = getattr(model, "family", None)
            encode_prompt = family.encode_prompt if family is not None else _encode_with_text_encoder
        self.encode_prompt = encode_prompt
        self._cache: OrderedDict[str, Conditioning] = OrderedDict()
        self.encode_count = 0  # texts actually sent to the encoder (tests and logs read it)

    def conditioning(self, text: str) -> Conditioning:
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        with torch.no_grad():
            encoded = self.encode_prompt(self.model, text)
        if not isinstance(encoded, Conditioning):
            raise TypeError(f"encode_prompt returned {type(encoded).__name__}; a Conditioning is needed")
        self.encode_count += 1
        self._cache[text] = encoded
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return encoded

    def __call__(self, text: str) -> torch.Tensor:
        return self.conditioning(text).cross_attn

    def clear(self) -> None:
        self._cache.clear()


def weighted_sum(encode: Callable[[str], CondLike], weighted_texts: list[tuple[str, float]]) -> CondLike:
    """``sum(w * E(text))`` over (text, weight) pairs: a weighted sum of whole token-embedding sequences."""
    if not weighted_texts:
        raise ValueError("weighted_sum needs at least one (text, weight) pair")
    return weighted((encode(text), weight) for text, weight in weighted_texts)


def prompt_conditioning(prompt: str, encode: Callable[[str], CondLike], *, frame: int = 0,
                        prompt_weighting: bool = True, normalize_prompt_weights: bool = True,
                        log_weighted_subprompts: bool = False) -> tuple[CondLike, CondLike]:
    """(uc, c) for one prompt; ``encode`` maps a text to its conditioning (``ConditioningCache.conditioning``
    gives ``Conditioning`` values, a tensor encoder gives tensors).

    ``frame`` is the value of ``t`` in back-ticked weight expressions (0 outside animations).
    """
    from deforum.prompts import split_negative, split_weighted_subprompts

    positive_text, negative_text = split_negative(prompt)  # raises SettingsError on two --neg
    if not prompt_weighting:
        return encode(negative_text), encode(positive_text)

    negative, positive = split_weighted_subprompts(prompt, frame, not normalize_prompt_weights)
    # the negative list holds magnitudes; abs() keeps this true whichever sign convention the parser uses
    negative = [(text, abs(float(weight))) for text, weight in negative]
    positive = [(text, float(weight)) for text, weight in positive]
    if log_weighted_subprompts:
        log_subprompts(prompt, positive, negative)

    # v0.6: the raw text when there is no positive sub-prompt (here the raw positive part, before any --neg)
    c = weighted_sum(encode, positive) if positive else encode(positive_text)
    uc = weighted_sum(encode, negative) if negative else encode("")
    return uc, c


def get_uc_and_c(prompt: str, encode: Callable[[str], CondLike], *, frame: int = 0, prompt_weighting: bool = True,
                 normalize_prompt_weights: bool = True,
                 log_weighted_subprompts: bool = False) -> tuple[CondLike, CondLike]:
    """``prompt_conditioning`` under its older name (a ``ConditioningCache`` called as is gives tensors)."""
    return prompt_conditioning(prompt, encode, frame=frame, prompt_weighting=prompt_weighting,
                               normalize_prompt_weights=normalize_prompt_weights,
                               log_weighted_subprompts=log_weighted_subprompts)


def log_subprompts(prompt: str, positive: list[tuple[str, float]], negative: list[tuple[str, float]]) -> None:
    """``log_weighted_subprompts``: sub-prompts and weights at INFO level (v0.6 printed them in colour)."""
    log.info("prompt %r", prompt)
    for text, weight in positive:
        log.info("  positive %.4f  %r", weight, text)
    for text, weight in negative:
        log.info("  negative %.4f  %r", weight, text)
    if not positive:
        log.info("  no positive sub-prompt: the whole prompt text is encoded (as v0.6)")


def interpolate_conditioning(c1: CondLike, c2: CondLike, t: float, method: str = "linear") -> CondLike:
    """A conditioning between ``c1`` (t=0) and ``c2`` (t=1) for the Interpolation mode (spec 8).

    ``linear`` is v0.6's ``c1 + (c2 - c1) * t``. ``slerp`` interpolates each token vector along the great
    circle (its norm interpolated linearly), falling back to linear where the two are nearly parallel.
    ``Conditioning`` values in give a ``Conditioning``; bare tensors give a tensor.
    """
    if method == "linear":
        return lerp(c1, c2, t)
    if method != "slerp":
        raise SettingsError(
            f"interpolation method: {method!r} is not allowed; choose one of {', '.join(INTERPOLATIONS)}"
        )
    return slerp(c1, c2, t)


__all__ = ["INTERPOLATIONS", "CondLike", "Conditioning", "ConditioningCache", "cat", "get_uc_and_c",
           "interpolate_conditioning", "lerp", "log_subprompts", "prompt_conditioning", "slerp", "weighted",
           "weighted_sum"]
