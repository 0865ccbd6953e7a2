"""The per-frame steps of a 2D/3D animation, in v0.6 order (spec 6.2): warp -> colour -> contrast -> noise.

Each step is a plain function of (image, the frame's plan values, state) so it can be tested alone; the
render loop in ``deforum.render.animation`` only sequences them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from deforum.errors import FrameError
from deforum.image.colors import maintain_colors
from deforum.image.convert import image_to_sample
from deforum.image.noise import add_noise, apply_contrast
from deforum.motion import warp2d, warp3d


def warp_image(image: np.ndarray, values: Mapping[str, float], anim_args: Any,
               depth: torch.Tensor | np.ndarray | None = None, device: str = "cpu",
               frame: int | None = None) -> np.ndarray:
    """Move ``image`` by one frame of camera motion: the 2D or 3D warp with this frame's schedule values.

    A warp that is not finite (the 3D camera dividing by a depth of 0) is a ``FrameError`` naming ``frame``.
    A uint8 image is warped in 3D as float32 and truncated afterwards, which is exactly what the uint8 warp
    does inside, so its NaN pixels are seen here instead of silently becoming 0.
    """
    if anim_args.animation_mode == "2D":
        warped = _warp2d(image, values, anim_args)
        if warped.dtype != np.uint8:
            check_finite(warped, frame, "2D warp", values)
        return warped
    source = image.astype(np.float32) if isinstance(image, np.ndarray) and image.dtype == np.uint8 else image
    warped = _warp3d(source, values, anim_args, depth, device)
    check_finite(warped, frame, "3D warp", values)
    return warped.astype(np.uint8) if source is not image else warped


def _warp2d(image: np.ndarray, values: Mapping[str, float], anim_args: Any) -> np.ndarray:
    return warp2d(
            image,
            angle=values["angle"], zoom=values["zoom"],
            translation_x=values["translation_x"], translation_y=values["translation_y"],
            border=anim_args.border,
            flip_2d_perspective=bool(anim_args.flip_2d_perspective),
            perspective_flip_theta=values["perspective_flip_theta"],
            perspective_flip_phi=values["perspective_flip_phi"],
            perspective_flip_gamma=values["perspective_flip_gamma"],
            perspective_flip_fv=values["perspective_flip_fv"],
            corrected_flip=bool(anim_args.correct_2d_flip),
        )


def _warp3d(image: np.ndarray, values: Mapping[str, float], anim_args: Any,
            depth: torch.Tensor | np.ndarray | None, device: str) -> np.ndarray:
    return warp3d(
        image, depth if anim_args.use_depth_warping else None,
        translation_x=values["translation_x"], translation_y=values["translation_y"],
        translation_z=values["translation_z"],
        rotation_3d_x=values["rotation_3d_x"], rotation_3d_y=values["rotation_3d_y"],
        rotation_3d_z=values["rotation_3d_z"],
        fov=float(anim_args.fov), near_plane=float(anim_args.near_plane), far_plane=float(anim_args.far_plane),
        padding_mode=anim_args.padding_mode, sampling_mode=anim_args.sampling_mode, device=device,
        correct_aspect=bool(anim_args.correct_3d_aspect),
    )


def match_colors(image: np.ndarray, reference: np.ndarray | None,
                 color_coherence: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour coherence (spec 6.3): the first warped frame becomes the reference and is left as it is."""
    if color_coherence == "None":
        return image, reference
    if reference is None:
        return image, image.copy()
    return maintain_colors(image, reference, color_coherence), reference


def init_sample(image: np.ndarray, contrast: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Contrast gain, then [-1,1] and Gaussian noise (spec 6.4): the init sample of a diffused frame."""
    return add_noise(image_to_sample(apply_contrast(image, contrast)), noise, generator)


def blend(prev: np.ndarray | None, next_: np.ndarray, tween: float) -> np.ndarray:
    """The cadence cross-fade (spec 6.7): ``prev*(1-tween) + next*tween`` when there is a previous key."""
    if prev is None or tween >= 1.0:
        return next_
    return prev * (1.0 - tween) + next_ * tween


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float 0..255 image to the uint8 frame that is written (truncation, as v0.6's ``astype``)."""
    return np.clip(image, 0, 255).astype(np.uint8)


# The values a frame is computed from, named in the error when it is not finite.
FRAME_INPUTS = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                "rotation_3d_z", "strength_schedule", "noise_schedule", "contrast_schedule")


def check_finite(image: np.ndarray | torch.Tensor, frame: int | None, what: str = "frame",
                 values: Mapping[str, float] | None = None, noun: str = "frame") -> None:
    """Raise a ``FrameError`` naming ``frame`` when ``image`` (numpy or torch) holds NaN or inf.

    Called on every image before it is saved and on every init before it is generated from, so an overflow
    (a huge scale, zoom, fov, translation, noise or contrast, a gradient guidance scale, a depth of 0 under
    the 3D camera) stops the run with the frames before it on disk instead of writing black frames.
    """
    if isinstance(image, torch.Tensor):
        finite = bool(torch.isfinite(image).all())
    else:
        finite = bool(np.isfinite(image).all())
    if not finite:
        raise non_finite_error(frame, what, values, noun)


def non_finite_error(frame: int | None, what: str, values: Mapping[str, float] | None = None,
                     noun: str = "frame") -> FrameError:
    """The ``FrameError`` for a non-finite ``what`` of ``frame`` (None: not known here; ``frame`` and
    ``what`` are kept on the error so a caller that knows the frame can name it)."""
    shown = ", ".join(f"{name}={values[name]:g}" for name in FRAME_INPUTS if values and name in values)
    which = "?" if frame is None else frame
    error = FrameError(
        f"{noun} {which}: the {what} is not finite (NaN or inf pixels), so it was not saved; a value it is "
        f"computed from overflows (scale, zoom, fov, translations, rotations, strength, noise, contrast or a "
        f"gradient guidance scale){f': {shown}' if shown else ''}. The {noun}s before it are saved; lower the "
        f"value and resume or start again."
    )
    error.frame, error.what = frame, what
    return error
