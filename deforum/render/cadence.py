"""Cadence strategies (Tweeners): how the frames between two diffused key frames are made (spec 6.7).

With ``diffusion_cadence`` N only every N-th frame is diffused; the render loop warps the two newest keys
up to each output frame and asks the run's ``Tweener`` for the frame itself. v0.6's strategy is the
cross-fade ``prev * (1 - tween) + next * tween``; a new cadence mode is one more Tweener here, chosen by
``tweener_for`` from its settings, and the loop does not change.

Optical-flow cadence (``optical_flow_cadence``, A1111 Deforum's name): ``FlowTweener`` moves both keys along
the optical flow between them before the cross-fade, so what moved between the keys is shown once, part of
the way, instead of twice, half faded (``flow_tween``; ``deforum.video.interpolate_folder`` uses the same
function to put frames between the frames of a folder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from deforum.motion.flow import estimate_flow, pixel_grid, warp_by_flow
from deforum.render import steps

if TYPE_CHECKING:
    from deforum.plan import CadenceRole
    from deforum.settings import FrameValues, Settings

# flow(a, b) -> H x W x 2 float32, OpenCV's convention: a[y, x] ~ b[y + fy, x + fx]
FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


def flow_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """H x W float32: how far ``backward`` fails to bring each pixel home, ``|forward(p) + backward(p + forward(p))|``.

    Small where the pixel is seen in both frames; large where it is hidden in the second one (occluded) or
    lands outside it (infinite there).
    """
    back_at_q = warp_by_flow(backward, forward)
    error = np.linalg.norm(forward + back_at_q, axis=2)
    height, width = forward.shape[:2]
    xs, ys = pixel_grid(height, width)
    qx, qy = xs + forward[..., 0], ys + forward[..., 1]
    error[(qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)] = np.inf
    return error.astype(np.float32, copy=False)


def sampling_map(flow: np.ndarray, amount: float, error: np.ndarray | None = None) -> np.ndarray:
    """The map that moves an image ``amount`` of the way along ``flow``, for ``warp_by_flow``.

    Each pixel p of the image goes to ``p + amount * flow(p)``; ``warp_by_flow`` samples the source at
    ``q + map(q)``, so the map at the pixel q where p lands is ``-amount * flow(p)`` (read at p, the pixel
    that moves, not at q: read at q, the leading edge of a moving object would stay behind). Where several
    pixels land on one q the one with the smallest ``error`` (``flow_error``: seen in both frames) wins, so a
    moving object covers the background it moves over. Where none lands (background uncovered behind an
    object) the map is ``-amount * flow(q)``, which there samples the background beside the object.
    """
    move = (amount * flow).astype(np.float32)
    height, width = flow.shape[:2]
    xs, ys = pixel_grid(height, width)
    tx = np.rint(xs + move[..., 0])
    ty = np.rint(ys + move[..., 1])
    inside = np.isfinite(tx) & np.isfinite(ty) & (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
    source = np.flatnonzero(inside)
    target = (ty.ravel()[source].astype(np.int64) * width + tx.ravel()[source].astype(np.int64))
    rank = np.zeros(source.size, np.float32) if error is None else error.ravel()[source]
    order = np.lexsort((rank, target))  # by target, then the smallest error first
    target, source = target[order], source[order]
    first = np.ones(target.size, bool)
    first[1:] = target[1:] != target[:-1]
    flat = move.reshape(-1, 2)
    result = -flat  # a copy: where nothing lands
    result[target[first]] = -flat[source[first]]
    return result.reshape(height, width, 2)


def flow_tween(prev: np.ndarray, next_: np.ndarray, tween: float, factor: float, flow: FlowFn) -> np.ndarray:
    """The frame ``tween`` of the way from ``prev`` to ``next_`` (float H x W x 3), made along their optical flow.

    Sign convention: ``F = flow(prev, next_)`` says ``prev[p] ~ next_[p + F(p)]`` (OpenCV's), so what is at p
    in prev is at ``p + t * F(p)`` at time t. ``prev`` is moved forward ``tween * factor`` of the way along F,
    ``next_`` back ``(1 - tween) * factor`` of the way along ``B = flow(next_, prev)`` (where it was), and the
    two are cross-faded with weight ``tween``: at tween 1 the frame is ``next_``; with ``factor`` 0 it is the
    plain cross-fade; with factor 1 a thing that moved by d between the keys is shown once, moved by
    ``tween * d``.
    """
    if factor == 0.0 or tween >= 1.0:
        return steps.blend(prev, next_, tween)
    a, b = steps.to_uint8(prev), steps.to_uint8(next_)
    forward, backward = flow(a, b), flow(b, a)
    moved_prev = _moved(prev, forward, tween * factor, flow_error(forward, backward))
    moved_next = _moved(next_, backward, (1.0 - tween) * factor, flow_error(backward, forward))
    return steps.blend(moved_prev, moved_next, tween)


def _moved(image: np.ndarray, flow: np.ndarray, amount: float, error: np.ndarray) -> np.ndarray:
    if amount == 0.0:
        return image
    return warp_by_flow(image.astype(np.float32, copy=False), sampling_map(flow, amount, error))


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
