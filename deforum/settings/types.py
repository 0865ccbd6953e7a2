"""Typed settings: one frozen dataclass per concern, and ``Settings`` holding them all.

Generated from the field table (deforum/settings/fields.py) by ``python -m deforum.settings.typegen``; do
not edit by hand. ``deforum.settings.resolve`` builds them; nothing changes them afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OutputSettings:
    """Where and what is written: output root, batch folder, file names, what is saved and shown."""

    output_path: str  # root
    mount_google_drive: bool  # root
    output_path_gdrive: str  # root
    save_samples: bool  # args
    save_settings: bool  # args
    display_samples: bool  # args
    save_sample_per_step: bool  # args
    show_sample_per_step: bool  # args
    n_batch: int  # args
    batch_name: str  # args
    filename_format: str  # args
    make_grid: bool  # args
    grid_rows: int  # args


@dataclass(frozen=True)
class ModelSettings:
    """The model: paths, config and checkpoint, device and precision."""

    models_path: str  # root
    configs_path: str  # root
    models_path_gdrive: str  # root
    model_config: str  # root
    model_checkpoint: str  # root
    custom_config_path: str  # root
    custom_checkpoint_path: str  # root
    check_sha256: bool  # root
    load_on_run_all: bool  # root
    map_location: str  # root
    half_precision: bool  # root
    compile_unet: bool  # root
    vae_tiling: bool  # root
    vae: str  # root
    lora: tuple[tuple[str, float], ...]  # root
    precision: str  # args
    C: int  # args
    f: int  # args


@dataclass(frozen=True)
class ImageSettings:
    """One image: size, seed, sampler, steps, guidance scale."""

    W: int  # args
    H: int  # args
    seed: int  # args
    sampler: str  # args
    steps: int  # args
    scale: float  # args
    ddim_eta: float  # args
    dynamic_threshold: float | None  # args
    static_threshold: float | None  # args
    seed_behavior: str  # args
    cond_uncond_sync: bool  # args
    n_samples: int  # args
    karras_schedule: bool  # args
    seed_iter_N: int  # args
    seed_schedule: str  # anim_args


@dataclass(frozen=True)
class PromptsSettings:
    """The prompts (the still batch's list, the animation's frame -> prompt) and how they are read."""

    prompt_weighting: bool  # args
    normalize_prompt_weights: bool  # args
    log_weighted_subprompts: bool  # args
    animation_prompts_positive: str  # anim_args
    animation_prompts_negative: str  # anim_args
    prompts: tuple[str, ...]  # the None mode's prompts
    animation_prompts: Mapping[int, str]  # frame -> prompt (read-only)


@dataclass(frozen=True)
class InitSettings:
    """Init image, strength and the mask."""

    use_init: bool  # args
    strength: float  # args
    strength_0_no_init: bool  # args
    init_image: str | None  # args
    use_mask: bool  # args
    use_alpha_as_mask: bool  # args
    mask_file: str | None  # args
    invert_mask: bool  # args
    mask_brightness_adjust: float  # args
    mask_contrast_adjust: float  # args
    overlay_mask: bool  # args
    mask_overlay_blur: float  # args


@dataclass(frozen=True)
class GuidanceSettings:
    """Gradient conditioning: colour, exposure, CLIP, aesthetics and their schedule."""

    mean_scale: float  # args
    var_scale: float  # args
    exposure_scale: float  # args
    exposure_target: float  # args
    colormatch_scale: float  # args
    colormatch_image: str | None  # args
    colormatch_n_colors: int  # args
    ignore_sat_weight: float | None  # args
    clip_name: str  # args
    clip_scale: float  # args
    aesthetics_scale: float  # args
    cutn: int  # args
    cut_pow: float  # args
    init_mse_scale: float  # args
    init_mse_image: str | None  # args
    blue_scale: float  # args
    gradient_wrt: str  # args
    gradient_add_to: str  # args
    decode_method: str  # args
    grad_threshold_type: str  # args
    clamp_grad_threshold: float  # args
    clamp_start: float  # args
    clamp_stop: float  # args
    grad_inject_timing: int | tuple[float, ...] | None  # args


@dataclass(frozen=True)
class AnimationSettings:
    """The animation mode and its length."""

    animation_mode: str  # anim_args
    max_frames: int  # anim_args
    frame_loop: str  # anim_args
    parseq_manifest: str  # anim_args
    parseq_use_deltas: bool  # anim_args


@dataclass(frozen=True)
class MotionSettings:
    """The camera: 2D and 3D motion schedules, border, perspective flip."""

    border: str  # anim_args
    angle: str  # anim_args
    zoom: str  # anim_args
    translation_x: str  # anim_args
    translation_y: str  # anim_args
    translation_z: str  # anim_args
    rotation_3d_x: str  # anim_args
    rotation_3d_y: str  # anim_args
    rotation_3d_z: str  # anim_args
    flip_2d_perspective: bool  # anim_args
    perspective_flip_theta: str  # anim_args
    perspective_flip_phi: str  # anim_args
    perspective_flip_gamma: str  # anim_args
    perspective_flip_fv: str  # anim_args
    correct_2d_flip: bool  # anim_args
    correct_3d_aspect: bool  # anim_args


@dataclass(frozen=True)
class CoherenceSettings:
    """Frame to frame: noise, strength and contrast schedules, colour coherence, cadence."""

    noise_schedule: str  # anim_args
    strength_schedule: str  # anim_args
    contrast_schedule: str  # anim_args
    color_coherence: str  # anim_args
    diffusion_cadence: int  # anim_args
    amount_schedule: str  # anim_args
    kernel_schedule: str  # anim_args
    sigma_schedule: str  # anim_args
    threshold_schedule: str  # anim_args
    noise_type: str  # anim_args
    perlin_w: float  # anim_args
    perlin_h: float  # anim_args
    perlin_octaves: int  # anim_args
    perlin_persistence: float  # anim_args
    optical_flow_cadence: str  # anim_args
    cadence_flow_factor_schedule: str  # anim_args
    optical_flow_redo_generation: str  # anim_args
    redo_flow_factor_schedule: str  # anim_args


@dataclass(frozen=True)
class HybridSettings:
    """Hybrid video: the motion and colours of video_init_path blended into an animation."""

    hybrid_motion: str  # anim_args
    hybrid_motion_use_prev_img: bool  # anim_args
    hybrid_flow_method: str  # anim_args
    hybrid_flow_factor_schedule: str  # anim_args
    hybrid_composite: str  # anim_args
    hybrid_use_first_frame_as_init_image: bool  # anim_args
    hybrid_comp_alpha_schedule: str  # anim_args
    hybrid_comp_mask_type: str  # anim_args
    hybrid_comp_mask_inverse: bool  # anim_args
    hybrid_comp_mask_blend_alpha_schedule: str  # anim_args
    hybrid_comp_mask_contrast_schedule: str  # anim_args
    hybrid_comp_mask_auto_contrast: bool  # anim_args


@dataclass(frozen=True)
class DepthSettings:
    """3D depth: the depth model and the warp's planes, field of view and sampling."""

    offload_depth_model: bool  # root
    use_depth_warping: bool  # anim_args
    midas_weight: float  # anim_args
    near_plane: int  # anim_args
    far_plane: int  # anim_args
    fov: float  # anim_args
    padding_mode: str  # anim_args
    sampling_mode: str  # anim_args
    save_depth_maps: bool  # anim_args
    depth_every: int  # anim_args
    depth_model: str  # anim_args


@dataclass(frozen=True)
class VideoInputSettings:
    """Video Input: the video, frame extraction and the mask video."""

    video_init_path: str  # anim_args
    extract_nth_frame: int  # anim_args
    overwrite_extracted_frames: bool  # anim_args
    use_mask_video: bool  # anim_args
    video_mask_path: str  # anim_args


@dataclass(frozen=True)
class InterpolationSettings:
    """Interpolation mode: frames between key prompts."""

    interpolate_key_frames: bool  # anim_args
    interpolate_x_frames: int  # anim_args
    interpolation_method: str  # anim_args


@dataclass(frozen=True)
class ResumeSettings:
    """Resuming an animation run."""

    resume_from_timestring: bool  # anim_args
    resume_timestring: str  # anim_args


@dataclass(frozen=True)
class VideoSettings:
    """The video cell: the mp4 (and gif) made from the frames."""

    skip_video_for_run_all: bool  # video
    fps: float  # video
    use_manual_settings: bool  # video
    image_path: str  # video
    mp4_path: str  # video
    max_frames: int  # video
    render_steps: bool  # video
    path_name_modifier: str  # video
    make_gif: bool  # video
    add_soundtrack: str  # video
    soundtrack_path: str  # video


@dataclass(frozen=True)
class LoadSettings:
    """The Load Settings cell."""

    override_settings_with_file: bool  # load
    settings_file: str  # load
    custom_settings_file: str  # load


@dataclass(frozen=True)
class Settings:
    """Everything a run is asked to do, resolved and checked (``deforum.settings.resolve``)."""

    output: OutputSettings
    model: ModelSettings
    image: ImageSettings
    prompts: PromptsSettings
    init: InitSettings
    guidance: GuidanceSettings
    animation: AnimationSettings
    motion: MotionSettings
    coherence: CoherenceSettings
    hybrid: HybridSettings
    depth: DepthSettings
    video_input: VideoInputSettings
    interpolation: InterpolationSettings
    resume: ResumeSettings
    video: VideoSettings
    load: LoadSettings



@dataclass(frozen=True)
class FrameValues:
    """One frame's value of every keyframe schedule (the plan's rows; ``deforum.plan``)."""

    angle: float
    zoom: float
    translation_x: float
    translation_y: float
    translation_z: float
    rotation_3d_x: float
    rotation_3d_y: float
    rotation_3d_z: float
    perspective_flip_theta: float
    perspective_flip_phi: float
    perspective_flip_gamma: float
    perspective_flip_fv: float
    noise_schedule: float
    strength_schedule: float
    contrast_schedule: float
    amount_schedule: float
    kernel_schedule: float
    sigma_schedule: float
    threshold_schedule: float
    cadence_flow_factor_schedule: float
    redo_flow_factor_schedule: float
    hybrid_flow_factor_schedule: float
    hybrid_comp_alpha_schedule: float
    hybrid_comp_mask_blend_alpha_schedule: float
    hybrid_comp_mask_contrast_schedule: float


CONCERN_TYPES = {
    "output": OutputSettings,
    "model": ModelSettings,
    "image": ImageSettings,
    "prompts": PromptsSettings,
    "init": InitSettings,
    "guidance": GuidanceSettings,
    "animation": AnimationSettings,
    "motion": MotionSettings,
    "coherence": CoherenceSettings,
    "hybrid": HybridSettings,
    "depth": DepthSettings,
    "video_input": VideoInputSettings,
    "interpolation": InterpolationSettings,
    "resume": ResumeSettings,
    "video": VideoSettings,
    "load": LoadSettings,
}

__all__ = [
    "AnimationSettings",
    "CONCERN_TYPES",
    "CoherenceSettings",
    "DepthSettings",
    "FrameValues",
    "GuidanceSettings",
    "HybridSettings",
    "ImageSettings",
    "InitSettings",
    "InterpolationSettings",
    "LoadSettings",
    "ModelSettings",
    "MotionSettings",
    "OutputSettings",
    "PromptsSettings",
    "ResumeSettings",
    "Settings",
    "VideoInputSettings",
    "VideoSettings",
]
