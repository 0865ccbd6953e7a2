"""Hybrid video: move each animation frame with the motion of a video and blend the video frame into the init.

The video is the run's ``video_init_path``, extracted to frames; video frame i goes with animation frame i
(past the video's end, its last frame: ``video_frame_index``). Two independent parts, A1111 Deforum's names:

- ``hybrid_motion``: the motion between video frames i-1 and i (``video_motion``), applied to the animation
  image (``apply_motion``) so the image moves as the video moved.

  * "Optical Flow": a dense flow (``deforum.motion.flow.estimate_flow``), scaled by
    ``hybrid_flow_factor_schedule``. With ``hybrid_motion_use_prev_img`` the caller passes the previous
    animation image in place of video frame i-1, so the image is pulled toward video frame i.
  * "Perspective" / "Affine": corners of frame i-1 (``cv2.goodFeaturesToTrack``) tracked into frame i
    (``cv2.calcOpticalFlowPyrLK``), fitted with a RANSAC homography (``cv2.findHomography``) or partial affine
    (``cv2.estimateAffinePartial2D``: rotation, uniform scale, translation), applied with
    ``cv2.warpPerspective`` and the run's border mode. Too few features (a flat frame) give the identity.

- ``hybrid_composite``: ``image * (1 - alpha * mask) + video_frame * alpha * mask`` (``composite``), with a mask
  from ``composite_mask`` (see there for each ``hybrid_comp_mask_type``). Where in the loop it happens
  ("Normal", "Before Motion", "After Generation") is the render loop's choice; this module blends one image.

Images are HxWx3 RGB, uint8 or float32 on 0..255; every function returns the input image's dtype. Nothing here
imports ``deforum.settings``: ``motion_for_frame`` and ``composite_for_frame`` read the typed
``settings.hybrid`` and a plan row's ``FrameValues`` by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from deforum.errors import MediaError, SettingsError
from deforum.motion.flow import estimate_flow, pixel_grid
from deforum.motion.warp2d import BORDERS

MOTIONS = ("None", "Optical Flow", "Perspective", "Affine")
MASK_TYPES = ("None", "Depth", "Video Depth", "Blend", "Difference")
# RGB -> grey weights (ITU-R BT.601, as cv2.COLOR_RGB2GRAY), applied in float so masks keep full precision
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Feature tracking for "Perspective" / "Affine"
MAX_FEATURES = 500
FEATURE_QUALITY = 0.01
MIN_FEATURE_DISTANCE = 4
MIN_MATCHES = 6  # fewer tracked corners than this: the identity (a flat or nearly flat frame)
RANSAC_THRESHOLD_PX = 1.0

Depth = Any  # an HxW array or tensor, or a function (uint8 image -> one of those)


@dataclass(frozen=True)
class HybridMotion:
    """One frame's video motion: ``kind`` "None" (identity), "Optical Flow" (``flow``, HxWx2 float32, the
    backward flow: ``out[y, x] = image[y + fy, x + fx]`` moves the image as the video moved) or "Perspective" /
    "Affine" (``matrix``, 3x3 float64, source -> destination, for ``cv2.warpPerspective``)."""

    kind: str
    matrix: np.ndarray | None = None
    flow: np.ndarray | None = None

    @property
    def is_identity(self) -> bool:
        return self.kind == "None"


IDENTITY = HybridMotion("None")


# --- which video frame ------------------------------------------------------------------------------------------


def video_frame_index(frame: int, count: int) -> int:
    """The video frame that goes with animation frame ``frame``: the same index, or the last one past the end."""
    if count < 1:
        raise MediaError("video_init_path: no frames were extracted from the video; hybrid video needs at least one")
    if frame < 0:
        raise MediaError(f"hybrid video: frame {frame} is not allowed; frames count from 0")
    return min(frame, count - 1)


def video_frame_pair(frame: int, count: int) -> tuple[int, int]:
    """(previous, current) video frame indices of animation frame ``frame`` for ``video_motion``.

    Frame 0 pairs video frame 0 with itself, and so does any frame past the video's end with the last frame:
    the video does not move there, so neither does the image.
    """
    current = video_frame_index(frame, count)
    previous = video_frame_index(max(frame - 1, 0), count)
    return previous, current


# --- motion -----------------------------------------------------------------------------------------------------


def video_motion(prev_frame: np.ndarray, frame: np.ndarray, kind: str, flow_method: str = "DIS Medium", *,
                 models_path: str = "models", raft_model: str = "raft_large", device: str | None = None,
                 ) -> HybridMotion:
    """The motion from ``prev_frame`` to ``frame`` (RGB, uint8 or float32 0..255, one size) as a HybridMotion.

    ``kind``: "None", "Optical Flow" (``flow_method`` one of deforum.motion.flow.METHODS; ``models_path``,
    ``raft_model`` and ``device`` are for "RAFT"), "Perspective" or "Affine". An unknown kind is a SettingsError.
    """
    if kind not in MOTIONS:
        raise SettingsError(f"hybrid_motion: {kind!r} is not one of: {', '.join(MOTIONS)}")
    if kind == "None":
        return IDENTITY
    prev_u8, frame_u8 = _as_uint8(prev_frame, "prev_frame"), _as_uint8(frame, "frame")
    if prev_u8.shape != frame_u8.shape:
        raise MediaError(f"hybrid video: the frames differ in size: {prev_u8.shape[:2]} and {frame_u8.shape[:2]}")
    if kind == "Optical Flow":
        # The flow from the new frame back to the previous one is defined on the new frame's pixel grid:
        # frame[y, x] ~ prev[y + fy, x + fx]. Sampling the image there moves it as the video moved.
        flow = estimate_flow(frame_u8, prev_u8, flow_method, models_path=models_path, raft_model=raft_model,
                             device=device)
        return HybridMotion(kind, flow=flow)
    matrix = _feature_matrix(prev_u8, frame_u8, kind)
    return IDENTITY if matrix is None else HybridMotion(kind, matrix=matrix)


def _feature_matrix(prev: np.ndarray, frame: np.ndarray, kind: str) -> np.ndarray | None:
    """The 3x3 source -> destination matrix fitted to corners of ``prev`` tracked into ``frame``, or None
    where there are too few of them (a flat frame) or no fit."""
    prev_gray, frame_gray = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    corners = cv2.goodFeaturesToTrack(prev_gray, MAX_FEATURES, FEATURE_QUALITY, MIN_FEATURE_DISTANCE)
    if corners is None or len(corners) < MIN_MATCHES:
        return None
    corners = corners.astype(np.float32)
    tracked, status, _err = cv2.calcOpticalFlowPyrLK(prev_gray, frame_gray, corners, None, winSize=(15, 15),
                                                     maxLevel=3)
    if tracked is None:
        return None
    found = status.ravel() == 1
    src, dst = corners[found].reshape(-1, 2), tracked[found].reshape(-1, 2)
    if len(src) < MIN_MATCHES:
        return None
    if kind == "Perspective":
        matrix, _inliers = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD_PX)
        if matrix is None or not np.isfinite(matrix).all() or abs(matrix[2, 2]) < 1e-12:
            return None
        return matrix / matrix[2, 2]
    affine, _inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                   ransacReprojThreshold=RANSAC_THRESHOLD_PX)
    if affine is None or not np.isfinite(affine).all():
        return None
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def apply_motion(image: np.ndarray, motion: HybridMotion, flow_factor: float = 1.0,
                 border: str = "replicate") -> np.ndarray:
    """``image`` moved by ``motion`` (bilinear; pixels from outside the frame by ``border``, "replicate" or
    "wrap", the run's 2D border mode). ``flow_factor`` (``hybrid_flow_factor_schedule``) scales an optical
    flow: 0 leaves the image, 1 moves it as measured; the matrices of "Perspective" / "Affine" are applied as
    fitted. Keeps the image's dtype."""
    _check_image(image, "image")
    if border not in BORDERS:
        raise SettingsError(f"border={border!r} is not allowed; use one of {sorted(BORDERS)}")
    height, width = image.shape[:2]
    if motion.kind == "Optical Flow":
        flow = motion.flow
        if flow is None or flow.shape != (height, width, 2):
            raise MediaError(f"hybrid video: the flow must be H x W x 2 for a {(height, width)} image; got "
                             f"{getattr(flow, 'shape', None)}")
        if flow_factor == 0:
            return image.copy()
        xs, ys = pixel_grid(height, width)
        scale = np.float32(flow_factor)
        map_x = xs + flow[..., 0].astype(np.float32, copy=False) * scale
        map_y = ys + flow[..., 1].astype(np.float32, copy=False) * scale
        return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=BORDERS[border])
    if motion.kind in ("Perspective", "Affine"):
        return cv2.warpPerspective(image, np.asarray(motion.matrix, np.float64), (width, height),
                                   flags=cv2.INTER_LINEAR, borderMode=BORDERS[border])
    if motion.kind == "None":
        return image.copy()
    raise SettingsError(f"hybrid_motion: {motion.kind!r} is not one of: {', '.join(MOTIONS)}")


# --- composite --------------------------------------------------------------------------------------------------


def grey(image: np.ndarray) -> np.ndarray:
    """HxW float32 grey of an RGB image on 0..255 (BT.601 weights), divided by 255: 0..1."""
    return (image.astype(np.float32, copy=False) @ GREY_WEIGHTS) / np.float32(255)


def normalized_depth(depth: Any, shape: tuple[int, int]) -> np.ndarray:
    """HxW float32 0..1 of a depth map (array or tensor): ``(d - min) / (max - min)``.

    This project's depth grows with distance (deforum.motion.depth), so farther is brighter, as in the depth
    maps a run saves; a flat depth (max == min) gives 0 everywhere. ``shape`` is the image's (H, W).
    """
    if hasattr(depth, "detach"):  # a torch tensor, without importing torch here
        depth = depth.detach().float().cpu().numpy()
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.shape != tuple(shape):
        raise MediaError(f"hybrid_comp_mask_type: the depth map is {d.shape}, the image {tuple(shape)}; they must "
                         "be one size")
    if not np.isfinite(d).all():
        raise MediaError("hybrid_comp_mask_type: the depth map has non-finite values")
    low, high = float(d.min()), float(d.max())
    if high <= low:
        return np.zeros(d.shape, np.float32)
    return ((d - np.float32(low)) / np.float32(high - low)).astype(np.float32)


def _depth_of(depth: Depth | None, image: np.ndarray, which: str) -> np.ndarray:
    if depth is None:
        raise SettingsError(f"hybrid_comp_mask_type: {which!r} needs a depth map (a depth function or array); "
                            "none was given")
    if callable(depth):
        depth = depth(_as_uint8(image, "image"))
    return normalized_depth(depth, image.shape[:2])


def composite_mask(mask_type: str, image: np.ndarray, video_frame: np.ndarray, *, depth: Depth | None = None,
                   video_depth: Depth | None = None, blend_alpha: float = 0.5, contrast: float = 1.0,
                   auto_contrast: bool = False, inverse: bool = False) -> np.ndarray:
    """The HxW float32 composite mask, 0..1 (1: the video frame blends in fully, at ``alpha``).

    ``mask_type`` (``hybrid_comp_mask_type``):

    - "None": 1 everywhere (and nothing below changes it: contrast, auto-contrast and inverse apply to a mask
      made from the images);
    - "Depth": the depth of ``image`` normalized to 0..1, farther = brighter (``normalized_depth``); ``depth``
      is an HxW array or tensor, or a function that takes the uint8 image and returns one (a DepthModel's
      ``predict``);
    - "Video Depth": the same for ``video_frame`` with ``video_depth``;
    - "Blend": grey of ``image * (1 - b) + video_frame * b``, b = ``blend_alpha`` clamped to 0..1
      (``hybrid_comp_mask_blend_alpha_schedule``);
    - "Difference": grey of ``|image - video_frame|``.

    Then, in this order: the contrast gain around mid-grey, ``clip((m - 0.5) * contrast + 0.5, 0, 1)``
    (``hybrid_comp_mask_contrast_schedule``; 1 = unchanged); with ``auto_contrast``, the stretch of the mask's
    range to 0..1 (a flat mask is left as is); with ``inverse``, ``1 - m``.
    """
    if mask_type not in MASK_TYPES:
        raise SettingsError(f"hybrid_comp_mask_type: {mask_type!r} is not one of: {', '.join(MASK_TYPES)}")
    _check_pair(image, video_frame)
    if mask_type == "None":
        return np.ones(image.shape[:2], np.float32)
    if mask_type == "Depth":
        mask = _depth_of(depth, image, mask_type)
    elif mask_type == "Video Depth":
        mask = _depth_of(video_depth, video_frame, mask_type)
    elif mask_type == "Blend":
        b = np.float32(min(max(float(blend_alpha), 0.0), 1.0))
        blended = image.astype(np.float32) * (np.float32(1) - b) + video_frame.astype(np.float32) * b
        mask = grey(blended)
    else:  # Difference
        mask = grey(np.abs(image.astype(np.float32) - video_frame.astype(np.float32)))
    mask = np.clip(mask, 0.0, 1.0)
    if contrast != 1:
        mask = np.clip((mask - np.float32(0.5)) * np.float32(contrast) + np.float32(0.5), 0.0, 1.0)
    if auto_contrast:
        low, high = float(mask.min()), float(mask.max())
        if high > low:
            mask = (mask - np.float32(low)) / np.float32(high - low)
    if inverse:
        mask = np.float32(1) - mask
    return mask.astype(np.float32, copy=False)


def composite(image: np.ndarray, video_frame: np.ndarray, alpha: float, mask: np.ndarray | None = None,
              ) -> np.ndarray:
    """``image * (1 - alpha * mask) + video_frame * alpha * mask``; ``alpha`` (``hybrid_comp_alpha_schedule``)
    clamped to 0..1, ``mask`` HxW 0..1 (None: 1 everywhere). Keeps the image's dtype (uint8: rounded)."""
    _check_pair(image, video_frame)
    a = np.float32(min(max(float(alpha), 0.0), 1.0))
    if mask is None:
        weight = np.full(image.shape[:2], a, np.float32)
    else:
        mask = np.asarray(mask, np.float32)
        if mask.shape != image.shape[:2]:
            raise MediaError(f"hybrid composite: the mask is {mask.shape}, the image {image.shape[:2]}")
        weight = np.clip(mask, 0.0, 1.0) * a
    weight = weight[..., None]
    out = image.astype(np.float32) * (np.float32(1) - weight) + video_frame.astype(np.float32) * weight
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


# --- one frame from the settings ----------------------------------------------------------------------------------


def composite_for_frame(image: np.ndarray, video_frame: np.ndarray, hybrid: Any, values: Any, *,
                        depth: Depth | None = None, video_depth: Depth | None = None) -> np.ndarray:
    """``composite`` with the run's settings: ``hybrid`` is ``settings.hybrid`` (mask type, inverse, auto
    contrast), ``values`` the frame's ``FrameValues`` (alpha, mask blend alpha, mask contrast)."""
    mask = composite_mask(
        hybrid.hybrid_comp_mask_type, image, video_frame, depth=depth, video_depth=video_depth,
        blend_alpha=values.hybrid_comp_mask_blend_alpha_schedule, contrast=values.hybrid_comp_mask_contrast_schedule,
        auto_contrast=hybrid.hybrid_comp_mask_auto_contrast, inverse=hybrid.hybrid_comp_mask_inverse)
    return composite(image, video_frame, values.hybrid_comp_alpha_schedule, mask)


def motion_for_frame(image: np.ndarray, prev_video_frame: np.ndarray, video_frame: np.ndarray, hybrid: Any,
                     values: Any, *, prev_image: np.ndarray | None = None, border: str = "replicate",
                     models_path: str = "models", device: str | None = None) -> np.ndarray:
    """``image`` moved by the video's motion with the run's settings (``hybrid`` = ``settings.hybrid``,
    ``values`` the frame's ``FrameValues``). With ``hybrid_motion_use_prev_img`` and "Optical Flow" the flow
    is taken from ``prev_image`` (the previous animation image; ``image`` itself when not given) to
    ``video_frame``."""
    kind = hybrid.hybrid_motion
    if kind == "None":
        return image.copy()
    source = prev_video_frame
    if kind == "Optical Flow" and hybrid.hybrid_motion_use_prev_img:
        source = image if prev_image is None else prev_image
    motion = video_motion(source, video_frame, kind, hybrid.hybrid_flow_method, models_path=models_path,
                          device=device)
    return apply_motion(image, motion, values.hybrid_flow_factor_schedule, border)


# --- checks -------------------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"hybrid video: {name} must be an HxWx3 RGB array; got {type(image).__name__} of shape "
                         f"{getattr(image, 'shape', None)}")
    if image.dtype not in (np.uint8, np.float32):
        raise MediaError(f"hybrid video: {name} must be uint8 or float32 (0..255); got dtype {image.dtype}")


def _check_pair(image: np.ndarray, video_frame: np.ndarray) -> None:
    _check_image(image, "image")
    _check_image(video_frame, "video_frame")
    if image.shape != video_frame.shape:
        raise MediaError(f"hybrid video: the image is {image.shape[:2]} and the video frame {video_frame.shape[:2]}; "
                         "resize the video frame to W x H first")


def _as_uint8(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 RGB for cv2's feature and flow functions (float32 0..255 rounded and clipped)."""
    _check_image(image, name)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
