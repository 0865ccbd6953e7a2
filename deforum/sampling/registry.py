"""The one table of samplers: each guide name with its function and the facts the sampling code needs.

The sampler dropdown, ``--set sampler=`` validation, docs/settings.md and the notebook form read the names
from here (through ``deforum.settings``); ``deforum.sampling.run`` dispatches through it. A new sampler is one
function plus one ``register(SamplerSpec(...))``.

This module imports no torch: ``deforum.settings`` reads the names, and importing the settings table must stay
cheap. The built-in functions are named by dotted path and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from deforum.errors import SettingsError

CALLS = ("sigmas", "dpm_solver", "dpm_solver_n")


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler.

    ``function``: the callable, or ``"module:attr"`` imported on first use.
    ``call``: "sigmas" is k-diffusion's ``fn(model, x, sigmas, extra_args, callback, disable, ...)``;
    "dpm_solver" is ``fn(model, x, sigma_min, sigma_max, ...)`` (DPM-Solver's own step control) and
    "dpm_solver_n" the same with ``n = steps`` model calls after sigma_max.
    ``stochastic``: draws fresh noise while sampling, so it takes ``noise_sampler``; ``churn``: Karras churn
    (takes ``noise_sampler``, used only when s_churn > 0); ``takes_eta``: accepts ``eta``;
    ``integer_timesteps``: the CompVis ddim/plms schedule (sigmas at integer timesteps).
    """

    name: str
    function: Callable | str
    stochastic: bool = False
    churn: bool = False
    takes_eta: bool = False
    integer_timesteps: bool = False
    call: str = "sigmas"

    def __post_init__(self) -> None:
        if self.call not in CALLS:
            raise ValueError(f"sampler {self.name!r}: call {self.call!r} is not one of {CALLS}")

    @property
    def takes_noise_sampler(self) -> bool:
        return self.stochastic or self.churn

    def load(self) -> Callable:
        """The sampler function (imports a dotted name on first use)."""
        if callable(self.function):
            return self.function
        module, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module), attr)


_K = "deforum.sampling.samplers:"
_CV = "deforum.sampling.compvis:"

# The dropdown order: v0.6's names, then the two SDE samplers and the LCM sampler added here.
_TABLE: dict[str, SamplerSpec] = {s.name: s for s in (
    SamplerSpec("klms", _K + "sample_lms"),
    SamplerSpec("dpm2", _K + "sample_dpm_2", churn=True),
    SamplerSpec("dpm2_ancestral", _K + "sample_dpm_2_ancestral", stochastic=True, takes_eta=True),
    SamplerSpec("heun", _K + "sample_heun", churn=True),
    SamplerSpec("euler", _K + "sample_euler", churn=True),
    SamplerSpec("euler_ancestral", _K + "sample_euler_ancestral", stochastic=True, takes_eta=True),
    SamplerSpec("plms", _CV + "sample_plms", integer_timesteps=True),
    SamplerSpec("ddim", _CV + "sample_ddim", stochastic=True, takes_eta=True, integer_timesteps=True),
    SamplerSpec("dpm_fast", _K + "sample_dpm_fast", takes_eta=True, call="dpm_solver_n"),
    SamplerSpec("dpm_adaptive", _K + "sample_dpm_adaptive", takes_eta=True, call="dpm_solver"),
    SamplerSpec("dpmpp_2s_a", _K + "sample_dpmpp_2s_ancestral", stochastic=True, takes_eta=True),
    SamplerSpec("dpmpp_2m", _K + "sample_dpmpp_2m"),
    SamplerSpec("dpmpp_sde", _K + "sample_dpmpp_sde", stochastic=True, takes_eta=True),
    SamplerSpec("dpmpp_2m_sde", _K + "sample_dpmpp_2m_sde", stochastic=True, takes_eta=True),
    SamplerSpec("lcm", _K + "sample_lcm", stochastic=True),
)}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler; it appears in the dropdown, validation, docs and dispatch at once. Names are unique."""
    if not isinstance(spec, SamplerSpec):
        raise TypeError(f"register() takes a SamplerSpec, not {type(spec).__name__}")
    if spec.name in _TABLE:
        raise ValueError(f"sampler {spec.name!r} is already registered")
    _TABLE[spec.name] = spec
    return spec


def unregister(name: str) -> SamplerSpec:
    """Remove a registered sampler (tests undo their registrations with this)."""
    return _TABLE.pop(name)


def names() -> tuple[str, ...]:
    """Every sampler name, in dropdown order."""
    return tuple(_TABLE)


def get(name: str) -> SamplerSpec:
    """The spec of a guide name; a SettingsError listing the valid names otherwise."""
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise SettingsError(f"sampler {name!r} is not one of: {', '.join(_TABLE)}") from None


class _Names(Sequence):
    """A live, read-only view of the sampler names (the sampler field's choices)."""

    def __getitem__(self, index):
        return names()[index]

    def __len__(self) -> int:
        return len(_TABLE)

    def __contains__(self, name: object) -> bool:
        try:
            return name in _TABLE
        except TypeError:  # an unhashable value from a settings file is simply not a sampler name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(_Names)

    def __repr__(self) -> str:
        return repr(names())


class _Functions(Mapping):
    """A live, read-only view name -> sampler function."""

    def __getitem__(self, name: str) -> Callable:
        if name not in _TABLE:
            raise KeyError(name)
        return _TABLE[name].load()

    def __len__(self) -> int:
        return len(_TABLE)

    def __iter__(self) -> Iterator[str]:
        return iter(names())

    def __repr__(self) -> str:
        return f"SAMPLERS({', '.join(_TABLE)})"


NAMES: Sequence[str] = _Names()
FUNCTIONS: Mapping[str, Callable] = _Functions()

__all__ = ["CALLS", "FUNCTIONS", "NAMES", "SamplerSpec", "get", "names", "register", "unregister"]
