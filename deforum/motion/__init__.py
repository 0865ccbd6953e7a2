"""Camera motion: the 2D and 3D warps and the depth models behind the 3D warp."""

from deforum.motion.depth import DepthModel, save_depth_map
from deforum.motion.flow import consistency_mask, estimate_flow, warp_by_flow
from deforum.motion.warp2d import warp2d
from deforum.motion.warp3d import warp3d

__all__ = [
    "DepthModel", "consistency_mask", "estimate_flow", "save_depth_map", "warp2d", "warp3d", "warp_by_flow",
]
