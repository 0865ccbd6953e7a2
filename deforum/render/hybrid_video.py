"""Hybrid video in the 2D/3D loop: the frames of ``video_init_path`` move and colour an animation
(A1111 Deforum's ``hybrid_motion`` / ``hybrid_composite``; the pure steps are ``deforum.motion.hybrid``).

Animation frame j goes with video frame j (past the video's end, its last frame). In a frame, in this order:
the camera warp (``steps.warp_image``), the "Before Motion" composite (key frames), the video's motion from
frame j-1 to j (every frame the loop warps: keys, the frames between them, the mask), the "Normal" composite
(key frames); "After Generation" blends video frame j into the generated key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deforum.motion import hybrid

if TYPE_CHECKING:
    from deforum.settings import FrameValues, Settings

FRAME_CACHE = 3  # video frames kept in memory: j-1 and j for the motion, one more for the composite


def hybrid_on(settings: Settings) -> bool:
    """Whether a run uses hybrid video (2D and 3D; Video Input uses it through ``render_input_video``)."""
    h = settings.hybrid
    return h.hybrid_motion != "None" or h.hybrid_composite != "None"


def first_frame_init(settings: Settings) -> bool:
    """``hybrid_use_first_frame_as_init_image``: frame 0 starts from video frame 0 (with a composite on)."""
    return settings.hybrid.hybrid_composite != "None" and settings.hybrid.hybrid_use_first_frame_as_init_image


class HybridVideo:
    """The video frames of one run (read at W x H when first needed) and each frame's video motion (measured
    once per frame: the keys, the frames between them and the mask all move with it)."""

    def __init__(self, frames: Sequence[str | Path], settings: Settings, device: str | None = None,
                 depth: Callable[[np.ndarray], object] | None = None):
        if not frames:
            hybrid.video_frame_index(0, 0)  # the MediaError naming video_init_path
        self.paths = [Path(p) for p in frames]
        self.settings, self.device, self.depth = settings, device, depth
        self.h = settings.hybrid
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._motions: dict[int, hybrid.HybridMotion] = {}

    def frame(self, j: int) -> np.ndarray:
        """Video frame ``j`` as uint8 H x W x 3 at the run's size."""
        index = hybrid.video_frame_index(j, len(self.paths))
        if index not in self._frames:
            from deforum.image.io import load_init_image

            image, _ = load_init_image(str(self.paths[index]), self.settings.image.W, self.settings.image.H,
                                       field="video_init_path")
            self._frames[index] = np.asarray(image, dtype=np.uint8)
            while len(self._frames) > FRAME_CACHE:
                self._frames.popitem(last=False)
        return self._frames[index]

    def _motion(self, j: int) -> hybrid.HybridMotion:
        if j not in self._motions:
            self._motions = {j: self._measure(self.frame(max(j - 1, 0)), self.frame(j))}
        return self._motions[j]

    def _measure(self, source: np.ndarray, frame: np.ndarray) -> hybrid.HybridMotion:
        return hybrid.video_motion(source, frame, self.h.hybrid_motion, self.h.hybrid_flow_method,
                                   models_path=self.settings.model.models_path, device=self.device)

    def move(self, image: np.ndarray, j: int, values: FrameValues) -> np.ndarray:
        """``image`` moved by the video's motion into frame ``j`` (identity without ``hybrid_motion``)."""
        kind = self.h.hybrid_motion
        if kind == "None" or j == 0:
            return image
        if kind == "Optical Flow" and self.h.hybrid_motion_use_prev_img:
            motion = self._measure(_uint8(image), self.frame(j))  # from this image to the video frame
        else:
            motion = self._motion(j)
        return hybrid.apply_motion(image, motion, values.hybrid_flow_factor_schedule, self.settings.motion.border)

    def composite(self, image: np.ndarray, j: int, values: FrameValues) -> np.ndarray:
        """Video frame ``j`` blended into ``image`` with the frame's alpha and the run's mask type."""
        return hybrid.composite_for_frame(image, self.frame(j).astype(image.dtype), self.h, values,
                                          depth=self.depth, video_depth=self.depth)

    def key_init(self, warped: np.ndarray, j: int, values: FrameValues) -> np.ndarray:
        """A key's init after the camera warp: composite "Before Motion", the video's motion, composite
        "Normal"."""
        when = self.h.hybrid_composite
        if when == "Before Motion":
            warped = self.composite(warped, j, values)
        warped = self.move(warped, j, values)
        if when == "Normal":
            warped = self.composite(warped, j, values)
        return warped

    def after_generation(self, image: np.ndarray, j: int, values: FrameValues) -> np.ndarray:
        """The generated key with video frame ``j`` blended in ("After Generation"; else as it is)."""
        if self.h.hybrid_composite != "After Generation":
            return image
        return self.composite(image, j, values)


def _uint8(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
