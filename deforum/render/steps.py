"""The per-frame steps of a 2D/3D animation, in v0.6 order (spec 6.2): warp -> colour -> contrast -> noise
(A1111's anti-blur, an unsharp mask, goes between colour and contrast).

Each step is a plain function of (image, the frame's plan values, state) so it can be tested alone; the
render loop in ``deforum.render.animation`` only sequences them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from deforum.errors import FrameError
from deforum.image.colors import maintain_colors
from deforum.image.convert import image_to_sample
from deforum.image.noise import PerlinParams, add_noise, apply_contrast
from deforum.image.sharpen import unsharp_mask
from deforum.motion import warp2d, warp3d

if TYPE_CHECKING:
    from deforum.generate import GenerationRequest
    from deforum.settings import FrameValues, MotionSettings, Settings


def warp_image(image: np.ndarray, values: FrameValues, settings: Settings,
               depth: torch.Tensor | np.ndarray | None = None, device: str = "cpu",
               frame: int | None = None) -> np.ndarray:
    """Move ``image`` by one frame of camera motion: the 2D or 3D warp with this frame's schedule values.

    A warp that is not finite (the 3D camera dividing by a depth of 0) is a ``FrameError`` naming ``frame``.
    A uint8 image is warped in 3D as float32 and truncated afterwards, which is exactly what the uint8 warp
    does inside, so its NaN pixels are seen here instead of silently becoming 0.
    """
    if settings.animation.animation_mode == "2D":
        warped = _warp2d(image, values, settings.motion)
        if warped.dtype != np.uint8:
            check_finite(warped, frame, "2D warp", values)
        return warped
    source = image.astype(np.float32) if isinstance(image, np.ndarray) and image.dtype == np.uint8 else image
    warped = _warp3d(source, values, settings, depth, device)
    check_finite(warped, frame, "3D warp", values)
    return warped.astype(np.uint8) if source is not image else warped


def _warp2d(image: np.ndarray, values: FrameValues, motion: MotionSettings) -> np.ndarray:
    return warp2d(
            image,
            angle=values.angle, zoom=values.zoom,
            translation_x=values.translation_x, translation_y=values.translation_y,
            border=motion.border,
            flip_2d_perspective=motion.flip_2d_perspective,
            perspective_flip_theta=values.perspective_flip_theta,
            perspective_flip_phi=values.perspective_flip_phi,
            perspective_flip_gamma=values.perspective_flip_gamma,
            perspective_flip_fv=values.perspective_flip_fv,
            corrected_flip=motion.correct_2d_flip,
        )


def _warp3d(image: np.ndarray, values: FrameValues, settings: Settings,
            depth: torch.Tensor | np.ndarray | None, device: str) -> np.ndarray:
    d = settings.depth
    return warp3d(
        image, depth if d.use_depth_warping else None,
        translation_x=values.translation_x, translation_y=values.translation_y,
        translation_z=values.translation_z,
        rotation_3d_x=values.rotation_3d_x, rotation_3d_y=values.rotation_3d_y,
        rotation_3d_z=values.rotation_3d_z,
        fov=float(d.fov), near_plane=float(d.near_plane), far_plane=float(d.far_plane),
        padding_mode=d.padding_mode, sampling_mode=d.sampling_mode, device=device,
        correct_aspect=settings.motion.correct_3d_aspect,
    )


def match_colors(image: np.ndarray, reference: np.ndarray | None,
                 color_coherence: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour coherence (spec 6.3): the first warped frame becomes the reference and is left as it is."""
    if color_coherence == "None":
        return image, reference
    if reference is None:
        return image, image.copy()
    return maintain_colors(image, reference, color_coherence), reference


def anti_blur(image: np.ndarray, values: FrameValues) -> np.ndarray:
    """Anti-blur: the unsharp mask of the warped, colour-matched frame with this frame's ``amount_schedule``,
    ``kernel_schedule``, ``sigma_schedule`` and ``threshold_schedule``; ``image`` itself when the amount is 0."""
    return unsharp_mask(image, values.amount_schedule, values.kernel_schedule, values.sigma_schedule,
                        values.threshold_schedule)


def init_sample(image: np.ndarray, contrast: float, noise: float, generator: torch.Generator,
                noise_type: str = "uniform", perlin: PerlinParams | None = None) -> torch.Tensor:
    """Contrast gain, then [-1,1] and Gaussian noise (spec 6.4): the init sample of a diffused frame.

    ``noise_type`` "perlin" shapes the noise with ``perlin``'s Perlin noise (``deforum.image.noise.add_noise``);
    the default "uniform" is v0.6's noise.
    """
    return add_noise(image_to_sample(apply_contrast(image, contrast)), noise, generator, noise_type, perlin)


def blend(prev: np.ndarray | None, next_: np.ndarray, tween: float) -> np.ndarray:
    """The cadence cross-fade (spec 6.7): ``prev*(1-tween) + next*tween`` when there is a previous key."""
    if prev is None or tween >= 1.0:
        return next_
    return prev * (1.0 - tween) + next_ * tween


def sample_to_float_image(sample: torch.Tensor) -> np.ndarray:
    """A decoded [-1,1] 1x3xHxW sample as a float32 HxWx3 image in 0..255 (spec 10.2, before truncation)."""
    x = sample.detach().float().cpu()[0].permute(1, 2, 0).numpy()
    return (np.clip(x * 0.5 + 0.5, 0.0, 1.0) * 255.0).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float 0..255 image to the uint8 frame that is written (truncation, as v0.6's ``astype``)."""
    return np.clip(image, 0, 255).astype(np.uint8)


# The values a frame is computed from, named in the error when it is not finite.
FRAME_INPUTS = ("zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                "rotation_3d_z", "strength_schedule", "noise_schedule", "contrast_schedule")


def check_finite(image: np.ndarray | torch.Tensor, frame: int | None, what: str = "frame",
                 values: FrameValues | None = None, noun: str = "frame") -> None:
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


def non_finite_error(frame: int | None, what: str, values: FrameValues | None = None,
                     noun: str = "frame") -> FrameError:
    """The ``FrameError`` for a non-finite ``what`` of ``frame`` (None: not known here; ``frame`` and
    ``what`` are kept on the error so a caller that knows the frame can name it)."""
    shown = ", ".join(f"{name}={getattr(values, name):g}" for name in FRAME_INPUTS) if values is not None else ""
    which = "?" if frame is None else frame
    error = FrameError(
        f"{noun} {which}: the {what} is not finite (NaN or inf pixels), so it was not saved; a value it is "
        f"computed from overflows (scale, zoom, fov, translations, rotations, strength, noise, contrast or a "
        f"gradient guidance scale){f': {shown}' if shown else ''}. The {noun}s before it are saved; lower the "
        f"value and resume or start again."
    )
    error.frame, error.what = frame, what
    return error


def generation_request(settings: Settings, seed: int) -> GenerationRequest:
    """The request every image of a run starts from: the settings' size, sampler, guidance, prompt reading,
    init strength and mask adjustments; a frame varies it with ``dataclasses.replace`` (seed, prompt,
    strength, init, mask). The one place settings become Generator arguments."""
    from deforum.generate import GenerationRequest

    image, init, prompts = settings.image, settings.init, settings.prompts
    return GenerationRequest(
        seed=seed, W=image.W, H=image.H, sampler=image.sampler, steps=image.steps, scale=image.scale,
        ddim_eta=image.ddim_eta, dynamic_threshold=image.dynamic_threshold,
        static_threshold=image.static_threshold, karras=image.karras_schedule,
        cond_uncond_sync=image.cond_uncond_sync, prompt_weighting=prompts.prompt_weighting,
        normalize_prompt_weights=prompts.normalize_prompt_weights,
        log_weighted_subprompts=prompts.log_weighted_subprompts, strength=init.strength,
        strength_0_no_init=init.strength_0_no_init, invert_mask=init.invert_mask,
        mask_brightness_adjust=init.mask_brightness_adjust, mask_contrast_adjust=init.mask_contrast_adjust,
        overlay_mask=init.overlay_mask, mask_overlay_blur=init.mask_overlay_blur)
