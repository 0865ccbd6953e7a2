"""Cadence strategies (Tweeners): how the frames between two diffused key frames are made (spec 6.7).

With ``diffusion_cadence`` N only every N-th frame is diffused; the render loop warps the two newest keys
up to each output frame and asks the run's ``Tweener`` for the frame itself. v0.6's strategy is the
cross-fade ``prev * (1 - tween) + next * tween``; a new cadence mode is one more Tweener here, chosen by
``tweener_for`` from its settings, and the loop does not change.

Optical-flow cadence (``optical_flow_cadence``, A1111 Deforum's name): ``FlowTweener`` moves both keys along
the optical flow between them before the cross-fade, so what moved between the keys is shown once, part of
the way, instead of twice, half faded (``deforum.motion.flow.flow_tween``; ``deforum.video.interpolate_folder``
uses the same function to put frames between the frames of a folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from deforum.motion.flow import estimate_flow, flow_tween
from deforum.render import steps

if TYPE_CHECKING:
    from deforum.plan import CadenceRole
    from deforum.settings import FrameValues, Settings

class Tweener(Protocol):
    """Make output frame ``role`` from the two newest keys, both already warped up to that frame.

    ``prev`` is the older key (None in the first segment, or when it is no longer shown: ``role.blended`` is
    False), ``next_`` the newer one; both are float32 H x W x 3 in 0..255, and so is the frame returned (the
    loop checks it is finite and truncates it to uint8). ``values`` are the frame's schedule values (the plan
    row's; e.g. ``cadence_flow_factor_schedule``). A Tweener must not change its arguments.
    """

    def __call__(self, prev: np.ndarray | None, next_: np.ndarray, role: CadenceRole,
                 values: FrameValues | None = None) -> np.ndarray: ...


def crossfade(prev: np.ndarray | None, next_: np.ndarray, role: CadenceRole,
              values: FrameValues | None = None) -> np.ndarray:
    """v0.6's cadence: the newer key cross-faded over the older one with weight ``role.tween``."""
    return steps.blend(prev if role.blended else None, next_, role.tween)


# --- moving an image part of the way along a flow --------------------------------------------------------


@dataclass(frozen=True)
class FlowTweener:
    """Optical-flow cadence: each blended frame is ``flow_tween`` of the two keys (as they are at that frame)
    with the frame's ``cadence_flow_factor_schedule``; a frame that shows one key alone is that key.

    ``method`` is a ``deforum.motion.flow`` method ("DIS Medium", "DIS Fine", "Farneback", "RAFT"); RAFT's
    weights are in ``models_path`` and it runs on ``device`` (None: CUDA when there is one).
    """

    method: str
    models_path: str = "models"
    device: str | None = None

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return estimate_flow(a, b, self.method, models_path=self.models_path, device=self.device)

    def __call__(self, prev: np.ndarray | None, next_: np.ndarray, role: CadenceRole,
                 values: FrameValues | None = None) -> np.ndarray:
        if prev is None or not role.blended:
            return crossfade(prev, next_, role, values)
        factor = 1.0 if values is None else float(values.cadence_flow_factor_schedule)
        return flow_tween(prev, next_, role.tween, factor, self.flow)


def tweener_for(settings: Settings, device: str | None = None) -> Tweener:
    """The cadence strategy of a run: the cross-fade (v0.6), or ``FlowTweener`` when ``optical_flow_cadence``
    names a flow method and ``diffusion_cadence`` > 1 (with cadence 1 every frame is a key)."""
    method = settings.coherence.optical_flow_cadence
    if method != "None" and settings.coherence.diffusion_cadence > 1:
        return FlowTweener(method, settings.model.models_path, device)
    return crossfade
