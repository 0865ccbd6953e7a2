"""Cadence strategies (Tweeners): how the frames between two diffused key frames are made (spec 6.7).

With ``diffusion_cadence`` N only every N-th frame is diffused; the render loop warps the two newest keys
up to each output frame and asks the run's ``Tweener`` for the frame itself. v0.6's strategy is the
cross-fade ``prev * (1 - tween) + next * tween``; a new cadence mode (optical flow, hybrid) is one more
Tweener here, chosen by ``tweener_for`` from its settings, and the loop does not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

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


def tweener_for(settings: Settings) -> Tweener:
    """The cadence strategy of a run (v0.6 has one: the cross-fade)."""
    return crossfade
