"""Every setting of the v0.6 notebook, declared once: the Root, DeforumArgs and DeforumAnimArgs cells, the
prompt cell, the Load Settings cell and the video cell (spec animation 1.1-1.5, generation 1.1).

Each field has its v0.6 name, default, type, allowed values, Colab form widget and a one-line help text.
Settings files, validation, the notebook form cells, CLI help and docs/settings.md are all derived from
these tables, so a fact about a field lives here and nowhere else.

Run ``python -m deforum.args`` to print docs/settings.md (``--write`` rewrites the file).
"""

from __future__ import annotations

import copy
import datetime
import difflib
import json
import math
import os
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deforum.errors import ScheduleError, SettingsError
from deforum.sampling import registry as sampler_registry

SEED_MAX = 2**32 - 1  # v0.6 drew -1 seeds from 0 .. 2**32 - 1 and seed_everything accepts only that range

# Upper bounds: a value past them cannot run on any real machine, so it is refused with the field before a
# model loads, instead of failing later with an allocation error. One constant per limit; the field table,
# the messages, docs/settings.md and the schedule parser all read these.
#
# Frames of one run (max_frames; also the bound on every other count of images or frames: n_batch, the
# Interpolation frames, a still batch's prompts x n_batch). 100,000 frames is over 2 hours at 12 fps (one
# frame every few seconds on a GPU is days of rendering); the plan holds one row per frame and every
# schedule one float64 per frame, so the bound also keeps the dry run small (15 x 100,000 x 8 bytes = 12 MB).
MAX_FRAMES_LIMIT = 100_000
MAX_STEPS = 10_000  # sampler steps: v0.6's default is 80; 10,000 steps of one frame is hours on a GPU
# W and H: at 8192 x 8192 the latent is 1024 x 1024 (1M tokens per attention layer) and one 320-channel
# UNet activation is 0.6 GB in fp16: the largest size whose UNet activations an 80 GB GPU can still hold
# (decoding it needs vae_tiling). Beyond it even one frame cannot be generated.
MAX_IMAGE_SIZE = 8192
MAX_FPS = 1000  # the video encoder's limit (deforum.video refuses more); a gif cannot show over 100 fps
# CLIP guidance pushes every cutout through CLIP with gradients, so memory grows with cutn; guided-diffusion
# notebooks use tens of cutouts. 256 is far beyond any practical use.
MAX_CUTOUTS = 256
MAX_PALETTE_COLORS = 256  # colour-match palette (k-means clusters); a gif palette holds 256 colours too
# A still batch keeps every image of a prompt in memory to make its grid (make_grid), plus the grid itself:
# about 2 x n_batch x W x H x 3 bytes. 8 GiB leaves room for the model in Colab's 12.7 GB of RAM.
GRID_MEMORY_LIMIT = 8 * 2**30
MAX_NAME_BYTES = 255  # a file or folder name (batch_name): the limit of ext4, APFS, NTFS and FAT
ANIMATION_MODES = ("None", "2D", "3D", "Video Input", "Interpolation")
SCHEDULED_MODES = ("2D", "3D", "Video Input")  # v0.6 parses all 15 schedules in these modes only
DEFAULT_OUTPUT_PATH = "output"

TYPES = ("int", "float", "bool", "str", "intstr", "schedule", "inject_timing", "runtime")
WIDGETS = ("dropdown", "boolean", "number", "integer", "string", "raw")


@dataclass(frozen=True)
class Field:
    """One setting.

    ``type``: int, float (int or float accepted, as v0.6 number fields), bool, str, intstr (a string holding
    an integer, e.g. diffusion_cadence '1'), schedule (a keyframe string), inject_timing (None, int or list),
    runtime (state the renderer fills in; null in settings files).
    ``widget``: the Colab ``#@param`` kind; None means the field is not in the form (hidden).
    ``choices`` are enforced exactly unless ``open_choices`` (then they are only the dropdown's suggestions).
    ``kind``: "setting", "schedule", "runtime" (filled by the renderer) or "computed" (by ``finalize``).
    ``new``: not in v0.6; added by this project (documented in docs/settings.md and docs/compat.md).
    """

    name: str
    type: str
    default: Any
    help: str
    widget: str | None = None
    choices: tuple[Any, ...] = ()
    open_choices: bool = False
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    kind: str = "setting"
    new: bool = False
    group: str = ""
    section: str = ""

    @property
    def hidden(self) -> bool:
        return self.widget is None

    def fresh_default(self) -> Any:
        """The default as a new object (lists are stored as tuples so the table stays immutable)."""
        if isinstance(self.default, tuple):
            return list(self.default)
        return copy.deepcopy(self.default)


def _section(group: str, title: str, *fields: Field) -> tuple[Field, ...]:
    return tuple(replace(f, group=group, section=title) for f in fields)


def _schedule(name: str, default: str, help: str) -> Field:
    return Field(name, "schedule", default, help, widget="string", kind="schedule")


_URL_BEETLE = "https://cdn.pixabay.com/photo/2022/07/30/13/10/green-longhorn-beetle-7353749_1280.jpg"
_URL_MASK = ("https://www.filterforge.com/wiki/images/archive/b/b7/"
             "20080927223728%21Polygonal_gradient_thumb.jpg")
_URL_PALETTE = "https://www.saasdesign.io/wp-content/uploads/2021/02/palette-3-min-980x588.png"

# The sampler dropdown: a live view of the sampler registry (deforum/sampling/registry.py: v0.6's names, then
# the two SDE samplers added here, then any sampler registered later). The one import of sampling here: the
# registry module imports no torch, and the dropdown, validation and docs cannot drift from what runs.
SAMPLERS = sampler_registry.NAMES
# The model_checkpoint dropdown: 'custom' plus every name of the catalogue (deforum/models/catalogue.py; a test
# keeps the two equal). Any file name in models_path, a Hugging Face repo id or a diffusers folder also works.
CHECKPOINTS = ("custom", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.ckpt", "sd-v1-4-full-ema.ckpt", "sd-v1-4.ckpt",
               "sd-v1-3-full-ema.ckpt", "sd-v1-3.ckpt", "sd-v1-2-full-ema.ckpt", "sd-v1-2.ckpt",
               "sd-v1-1-full-ema.ckpt", "sd-v1-1.ckpt", "robo-diffusion-v1.ckpt", "wd-v1-3-float16.ckpt",
               "Protogen_V2.2.ckpt", "v2-1_768-ema-pruned.ckpt", "v2-1_512-ema-pruned.ckpt", "768-v-ema.ckpt",
               "512-base-ema.ckpt", "v1-5-pruned-emaonly.safetensors")
PRESETS = ("512x512_aesthetic_0.json", "512x512_aesthetic_1.json", "512x512_colormatch_0.json",
           "512x512_colormatch_1.json", "512x512_colormatch_2.json", "512x512_colormatch_3.json")
FILENAME_FORMATS = ("{timestring}_{index}_{seed}.png", "{timestring}_{index}_{prompt}.png")
DEPTH_MODELS = ("midas", "depth_anything")

ROOT_FIELDS: tuple[Field, ...] = (
    *_section(
        "root", "Paths",
        Field("models_path", "str", "models", "Folder with model checkpoints (local runs).", widget="string"),
        Field("configs_path", "str", "configs", "Folder with the LDM yaml configs.", widget="string"),
        Field("output_path", "str", DEFAULT_OUTPUT_PATH, "Root of the output folders (local runs).",
              widget="string"),
        Field("mount_google_drive", "bool", True, "In Colab, mount Google Drive and use the gdrive paths.",
              widget="boolean"),
        Field("models_path_gdrive", "str", "/content/drive/MyDrive/AI/models",
              "Checkpoint folder when Drive is mounted.", widget="string"),
        Field("output_path_gdrive", "str", "/content/drive/MyDrive/AI/StableDiffusion",
              "Output root when Drive is mounted.", widget="string"),
    ),
    *_section(
        "root", "Model Setup",
        Field("model_config", "str", "v1-inference.yaml",
              "LDM yaml in configs_path, or 'custom' for custom_config_path.",
              widget="dropdown", choices=("custom", "v1-inference.yaml", "v2-inference.yaml", "v2-inference-v.yaml"),
              open_choices=True),
        Field("model_checkpoint", "str", "v1-5-pruned-emaonly.ckpt",
              "Checkpoint file in models_path (known names are downloaded), or 'custom'.",
              widget="dropdown", choices=CHECKPOINTS, open_choices=True),
        Field("custom_config_path", "str", "", "Config path used when model_config is 'custom'.",
              widget="string"),
        Field("custom_checkpoint_path", "str", "", "Checkpoint path used when model_checkpoint is 'custom'.",
              widget="string"),
        Field("check_sha256", "bool", True, "Verify a catalogue checkpoint's sha256 (once per file).",
              widget="boolean"),
        Field("load_on_run_all", "bool", True, "Load the model when the cell runs (Run all).", widget="boolean"),
        Field("map_location", "str", "cuda", "Device for the model: cuda, mps or cpu.", widget="dropdown",
              choices=("cuda", "mps", "cpu")),
        Field("half_precision", "bool", True,
              "Run the model and the depth model in float16 on CUDA (v0.6: always on)."),
    ),
    *_section(
        "root", "New in this version",
        Field("compile_unet", "bool", False, "torch.compile the UNet (slow first frame, faster after).",
              widget="boolean", new=True),
        Field("offload_depth_model", "bool", False, "Keep the depth model on the CPU between frames.",
              widget="boolean", new=True),
        Field("vae_tiling", "bool", False, "Decode/encode large images in VAE tiles to save memory.",
              widget="boolean", new=True),
    ),
)

ARGS_FIELDS: tuple[Field, ...] = (
    *_section(
        "args", "Image Settings",
        Field("W", "int", 512, "Width in pixels; rounded down to a multiple of 64.", widget="raw",
              minimum=64, maximum=MAX_IMAGE_SIZE),
        Field("H", "int", 512, "Height in pixels; rounded down to a multiple of 64.", widget="raw",
              minimum=64, maximum=MAX_IMAGE_SIZE),
    ),
    *_section(
        "args", "Sampling Settings",
        Field("seed", "int", -1, "Start seed; -1 picks a random one (recorded in the settings file).",
              widget="raw", minimum=-1, maximum=SEED_MAX),
        Field("sampler", "str", "dpmpp_2s_a", "Sampling algorithm.", widget="dropdown", choices=SAMPLERS),
        Field("steps", "int", 80, "Sampler steps for a full (strength 0) generation.", widget="raw",
              minimum=1, maximum=MAX_STEPS),
        Field("scale", "float", 7, "Classifier-free guidance scale.", widget="raw"),
        Field("ddim_eta", "float", 0.0, "DDIM noise amount (ddim only; set to 0 for other samplers).",
              widget="raw"),
        Field("dynamic_threshold", "float", None,
              "Percentile clamp of the noisy latent each step (off: null).",
              nullable=True, minimum=0, maximum=100),
        Field("static_threshold", "float", None, "Clamp the noisy latent to +-value each step (off: null).",
              nullable=True, minimum=0),
    ),
    *_section(
        "args", "Save & Display Settings",
        Field("save_samples", "bool", True, "Save images (None mode; animations always save).",
              widget="boolean"),
        Field("save_settings", "bool", True,
              "Write {timestring}_settings.txt (None mode; animations always).",
              widget="boolean"),
        Field("display_samples", "bool", True, "Show images in the notebook (None mode).", widget="boolean"),
        Field("save_sample_per_step", "bool", False, "Save x and x0_pred images of every sampler step.",
              widget="boolean"),
        Field("show_sample_per_step", "bool", False, "Show a preview of every sampler step.",
              widget="boolean"),
    ),
    *_section(
        "args", "Prompt Settings",
        Field("prompt_weighting", "bool", True, "Parse 'text:weight' sub-prompts.", widget="boolean"),
        Field("normalize_prompt_weights", "bool", True, "Scale positive and negative weights to sum to 1.",
              widget="boolean"),
        Field("log_weighted_subprompts", "bool", False, "Print the weighted sub-prompts and their tokens.",
              widget="boolean"),
    ),
    *_section(
        "args", "Batch Settings",
        Field("n_batch", "int", 1, "Images per prompt in None mode.", widget="raw", minimum=1,
              maximum=MAX_FRAMES_LIMIT),
        Field("batch_name", "str", "StableFun", "Output sub-folder name (a plain name, no path).",
              widget="string"),
        Field("filename_format", "str", "{timestring}_{index}_{prompt}.png", "Still image file names.",
              widget="dropdown", choices=FILENAME_FORMATS),
        Field("seed_behavior", "str", "iter", "How the seed changes after each image.", widget="dropdown",
              choices=("iter", "fixed", "random")),
        Field("make_grid", "bool", False, "Save a grid of each prompt's images (None mode).",
              widget="boolean"),
        Field("grid_rows", "int", 2, "Grid layout: images per row = count // grid_rows.", widget="raw",
              minimum=1, maximum=MAX_FRAMES_LIMIT),
        Field("outdir", "str", None, "Output folder {output_path}/{YYYY-MM}/{batch_name}, set by finalize.",
              nullable=True, kind="computed"),
    ),
    *_section(
        "args", "Init Settings",
        Field("use_init", "bool", False, "Start from init_image (frame 0 in animations).", widget="boolean"),
        Field("strength", "float", 0.0, "How much of the init survives, 0..1 (clamped).", widget="number"),
        Field("strength_0_no_init", "bool", True, "Use strength 0 when there is no init image."),
        Field("init_image", "str", _URL_BEETLE, "Init image path or URL (None mode: may be a folder).",
              widget="string", nullable=True),
        Field("use_mask", "bool", False, "Use mask_file: white keeps the init, black is re-diffused.",
              widget="boolean"),
        Field("use_alpha_as_mask", "bool", False, "Use the init image's alpha channel as the mask."),
        Field("mask_file", "str", _URL_MASK, "Mask image path or URL.", widget="string", nullable=True),
        Field("invert_mask", "bool", False, "Invert the mask.", widget="boolean"),
        Field("mask_brightness_adjust", "float", 1.0, "Mask brightness factor (1 = unchanged).",
              widget="number"),
        Field("mask_contrast_adjust", "float", 1.0, "Mask contrast factor (1 = unchanged).", widget="number"),
        Field("overlay_mask", "bool", True, "Paste the unmasked init over the result after decoding."),
        Field("mask_overlay_blur", "float", 5, "Gaussian blur sigma of the overlay mask edge (0 = none).",
              minimum=0, maximum=MAX_IMAGE_SIZE),  # a wider blur changes nothing more; its kernel is 8 sigma
    ),
    *_section(
        "args", "Exposure/Contrast Conditional Settings",
        Field("mean_scale", "float", 0, "Gradient guidance towards mid-grey.", widget="number"),
        Field("var_scale", "float", 0, "Gradient guidance towards lower pixel variance.", widget="number"),
        Field("exposure_scale", "float", 0, "Gradient guidance towards exposure_target.", widget="number"),
        Field("exposure_target", "float", 0.5, "Target mean pixel value for exposure_scale, -1..1.",
              widget="number"),
    ),
    *_section(
        "args", "Color Match Conditional Settings",
        Field("colormatch_scale", "float", 0, "Gradient guidance towards the palette of colormatch_image.",
              widget="number"),
        Field("colormatch_image", "str", _URL_PALETTE, "Image the palette is taken from.", widget="string",
              nullable=True),
        Field("colormatch_n_colors", "int", 4, "Number of palette colours.", widget="number", minimum=1,
              maximum=MAX_PALETTE_COLORS),
        Field("ignore_sat_weight", "float", 0,
              "How much saturation is ignored by colour matching (null: none).",
              widget="number", nullable=True),
    ),
    *_section(
        "args", "CLIP\\Aesthetics Conditional Settings",
        Field("clip_name", "str", "ViT-L/14", "CLIP model for clip_scale / aesthetics_scale.",
              widget="dropdown", choices=("ViT-L/14", "ViT-L/14@336px", "ViT-B/16", "ViT-B/32")),
        Field("clip_scale", "float", 0, "CLIP guidance towards the prompt (negative: away from it).",
              widget="number"),
        Field("aesthetics_scale", "float", 0, "Aesthetic-score guidance (negative: towards a lower score).",
              widget="number"),
        Field("cutn", "int", 1, "Number of CLIP cutouts per step.", widget="number", minimum=1,
              maximum=MAX_CUTOUTS),
        Field("cut_pow", "float", 0.0001, "Cutout size exponent (small = large cutouts).", widget="number"),
    ),
    *_section(
        "args", "Other Conditional Settings",
        Field("init_mse_scale", "float", 0, "Gradient guidance towards init_mse_image, pixel by pixel.",
              widget="number"),
        Field("init_mse_image", "str", _URL_BEETLE, "Target image for init_mse_scale.", widget="string",
              nullable=True),
        Field("blue_scale", "float", 0, "Gradient guidance towards blue.", widget="number"),
    ),
    *_section(
        "args", "Conditioning Gradients",
        Field("gradient_wrt", "str", "x0_pred",
              "Take guidance gradients w.r.t. x (through the UNet) or x0_pred.",
              widget="dropdown", choices=("x", "x0_pred")),
        Field("gradient_add_to", "str", "both", "Add the gradient to the cond, uncond or both branches.",
              widget="dropdown", choices=("cond", "uncond", "both")),
        Field("decode_method", "str", "linear", "Latent decoding for the guidance losses.", widget="dropdown",
              choices=("autoencoder", "linear")),
        Field("grad_threshold_type", "str", "dynamic", "How the summed gradient is clamped.",
              widget="dropdown", choices=("dynamic", "static", "mean", "schedule")),
        Field("clamp_grad_threshold", "float", 0.2, "Gradient clamp threshold.", widget="number"),
        Field("clamp_start", "float", 0.2, "Threshold at the first step ('schedule' clamping).",
              widget="raw"),
        Field("clamp_stop", "float", 0.01, "Threshold at the last step ('schedule' clamping).", widget="raw"),
        Field("grad_inject_timing", "inject_timing", tuple(range(1, 10)),
              "Steps with guidance: null = all, int n = every n-th, list of step numbers or of fractions.",
              widget="raw", nullable=True),
    ),
    *_section(
        "args", "Speed vs VRAM Settings",
        Field("cond_uncond_sync", "bool", True,
              "Run cond and uncond guidance in one batch (faster, more VRAM).",
              widget="boolean"),
    ),
    *_section(
        "args", "Runtime",
        Field("n_samples", "int", 1, "Images per sampler call (v0.6: always 1).", minimum=1, maximum=1),
        Field("precision", "str", "autocast", "Autocast or full precision.", choices=("autocast", "full")),
        Field("C", "int", 4, "Latent channels.", minimum=4, maximum=4),
        Field("f", "int", 8, "Latent downsampling factor.", minimum=8, maximum=8),
        Field("prompt", "str", "", "The prompt of the current image (set by the renderer).", kind="runtime"),
        Field("timestring", "str", "", "Run id YYYYmmddHHMMSS, the file name prefix (set by finalize).",
              kind="computed"),
        Field("init_latent", "runtime", None, "Init latent of the current image (renderer state).",
              nullable=True, kind="runtime"),
        Field("init_sample", "runtime", None, "Init pixels of the current image (renderer state).",
              nullable=True, kind="runtime"),
        Field("init_sample_raw", "runtime", None, "Overlay source image (renderer state).", nullable=True,
              kind="runtime"),
        Field("mask_sample", "runtime", None, "Cached overlay mask (renderer state).", nullable=True,
              kind="runtime"),
        Field("init_c", "runtime", None, "Conditioning override for Interpolation (renderer state).",
              nullable=True, kind="runtime"),
    ),
    *_section(
        "args", "New in this version",
        Field("karras_schedule", "bool", False, "Use the Karras et al. sigma spacing instead of v0.6's.",
              widget="boolean", new=True),
    ),
)

ANIM_ARGS_FIELDS: tuple[Field, ...] = (
    *_section(
        "anim_args", "Animation",
        Field("animation_mode", "str", "None", "None = still batch; 2D, 3D, Video Input or Interpolation.",
              widget="dropdown", choices=ANIMATION_MODES),
        Field("max_frames", "int", 1000, "Frames to render in 2D/3D (Video Input: the extracted count).",
              widget="number", minimum=1, maximum=MAX_FRAMES_LIMIT),
        Field("border", "str", "replicate", "2D warp border: wrap around or replicate the edge.",
              widget="dropdown", choices=("wrap", "replicate")),
    ),
    *_section(
        "anim_args", "Motion Parameters",
        _schedule("angle", "0:(0)", "2D rotation in degrees per frame (+ = counter-clockwise)."),
        _schedule("zoom", "0:(1.04)", "2D zoom factor per frame (1 = static, >1 zooms in)."),
        _schedule("translation_x", "0:(10*sin(2*3.14*t/10))",
                  "2D: pixels per frame (+ = right); 3D: camera units (+ = camera right)."),
        _schedule("translation_y", "0:(0)", "2D/3D: vertical move per frame (+ = content down)."),
        _schedule("translation_z", "0:(10)", "3D: camera forward per frame (+ = content grows)."),
        _schedule("rotation_3d_x", "0:(0)", "3D tilt in degrees per frame."),
        _schedule("rotation_3d_y", "0:(0)", "3D pan in degrees per frame."),
        _schedule("rotation_3d_z", "0:(0)", "3D roll in degrees per frame."),
        Field("flip_2d_perspective", "bool", False, "2D: apply the perspective flip homography.",
              widget="boolean"),
        _schedule("perspective_flip_theta", "0:(0)", "Flip roll angle in degrees."),
        _schedule("perspective_flip_phi", "0:(t%15)", "Flip tilt angle in degrees."),
        _schedule("perspective_flip_gamma", "0:(0)", "Flip pan angle in degrees."),
        _schedule("perspective_flip_fv", "0:(53)", "Flip field of view in degrees (30-160 recommended)."),
        _schedule("noise_schedule", "0: (0.02)", "Gaussian noise added to each init (frames >= 1)."),
        _schedule("strength_schedule", "0: (0.65)", "Init strength of frames >= 1 (clamped to 0..1)."),
        _schedule("contrast_schedule", "0: (1.0)", "Gain applied to the warped frame (1 = unchanged)."),
    ),
    *_section(
        "anim_args", "Coherence",
        Field("color_coherence", "str", "Match Frame 0 LAB", "Match each frame's colours to frame 0.",
              widget="dropdown",
              choices=("None", "Match Frame 0 HSV", "Match Frame 0 LAB", "Match Frame 0 RGB")),
        Field("diffusion_cadence", "intstr", "1", "Diffuse every N-th frame and blend the frames between.",
              widget="dropdown", choices=tuple(str(n) for n in range(1, 9)), minimum=1, maximum=8),
    ),
    *_section(
        "anim_args", "3D Depth Warping",
        Field("use_depth_warping", "bool", True, "3D: warp with predicted depth (else a flat plane).",
              widget="boolean"),
        Field("midas_weight", "float", 0.3, "Depth blend weight of MiDaS vs AdaBins (>= 1: MiDaS only).",
              widget="number"),
        Field("near_plane", "int", 200, "Camera near plane (no effect on the output in v0.6)."),
        Field("far_plane", "int", 10000, "Camera far plane (no effect on the output in v0.6)."),
        Field("fov", "float", 40, "3D field of view in degrees; a gain on all 3D motion (not 0).",
              widget="number", minimum=-180, maximum=180),
        Field("padding_mode", "str", "border", "3D: how pixels outside the frame are filled.",
              widget="dropdown", choices=("border", "reflection", "zeros")),
        Field("sampling_mode", "str", "bicubic", "3D: resampling filter.", widget="dropdown",
              choices=("bicubic", "bilinear", "nearest")),
        Field("save_depth_maps", "bool", False, "Save a depth PNG next to each frame.", widget="boolean"),
    ),
    *_section(
        "anim_args", "Video Input",
        Field("video_init_path", "str", "/content/video_in.mp4", "Source video for Video Input.",
              widget="string"),
        Field("extract_nth_frame", "int", 1, "Use every n-th video frame.", widget="number", minimum=1,
              maximum=MAX_FRAMES_LIMIT),
        Field("overwrite_extracted_frames", "bool", True, "Re-extract frames even if the folder exists.",
              widget="boolean"),
        Field("use_mask_video", "bool", False, "Use video_mask_path as per-frame masks.", widget="boolean"),
        Field("video_mask_path", "str", "/content/video_in.mp4", "Mask video for Video Input.",
              widget="string"),
    ),
    *_section(
        "anim_args", "Interpolation",
        Field("interpolate_key_frames", "bool", False, "Use the prompt frame numbers as in-between counts.",
              widget="boolean"),
        Field("interpolate_x_frames", "int", 4, "In-between frames per prompt pair.", widget="number",
              minimum=0, maximum=MAX_FRAMES_LIMIT - 1),
    ),
    *_section(
        "anim_args", "Resume Animation",
        Field("resume_from_timestring", "bool", False, "Continue the 2D/3D run named resume_timestring.",
              widget="boolean"),
        Field("resume_timestring", "str", "20220829210106",
              "Timestring (YYYYmmddHHMMSS) of the run to resume.",
              widget="string"),
    ),
    *_section(
        "anim_args", "New in this version",
        Field("depth_model", "str", "midas",
              "3D depth: 'midas' (DPT-Large, v0.6), 'depth_anything' (V2 small) or a local model folder.",
              widget="dropdown", choices=DEPTH_MODELS, open_choices=True, new=True),
        Field("correct_2d_flip", "bool", False,
              "Perspective flip keeps x/y translation and is the identity at zero angles (v0.6: off).",
              widget="boolean", new=True),
        Field("correct_3d_aspect", "bool", False,
              "3D warp without v0.6's horizontal squeeze on non-square frames.", widget="boolean", new=True),
        Field("interpolation_method", "str", "linear",
              "Interpolation mode: blend prompt conditionings linearly (v0.6) or by slerp.",
              widget="dropdown", choices=("linear", "slerp"), new=True),
    ),
)

VIDEO_FIELDS: tuple[Field, ...] = _section(
    "video", "Create Video From Frames",
    Field("skip_video_for_run_all", "bool", True, "Skip making the mp4 during Run all.", widget="boolean"),
    Field("fps", "float", 12, "Frames per second of the video.", widget="number", minimum=1,
          maximum=MAX_FPS),
    Field("use_manual_settings", "bool", False, "Use image_path, mp4_path and max_frames below.",
          widget="boolean"),
    Field("image_path", "str", "/content/drive/MyDrive/AI/StableDiffusion/2022-09/20220903000939_%05d.png",
          "Manual: ffmpeg input pattern of the frames.", widget="string"),
    Field("mp4_path", "str", "/content/drive/MyDrive/AI/StableDiffusion/2022-09/20220903000939.mp4",
          "Manual: output video path.", widget="string"),
    Field("max_frames", "intstr", "200", "Manual: number of frames to encode.", widget="string", minimum=1,
          maximum=MAX_FRAMES_LIMIT),
    Field("render_steps", "bool", False, "Make a video of the per-step images of the newest step folder.",
          widget="boolean"),
    Field("path_name_modifier", "str", "x0_pred", "Which per-step images render_steps uses.",
          widget="dropdown", choices=("x0_pred", "x")),
    Field("make_gif", "bool", False, "Also write a gif next to the mp4."),
)

LOAD_FIELDS: tuple[Field, ...] = _section(
    "load", "Load Settings",
    Field("override_settings_with_file", "bool", False, "Override the cells with a settings file.",
          widget="boolean"),
    Field("settings_file", "str", "custom", "A preset in settings/, or 'custom' for custom_settings_file.",
          widget="dropdown", choices=("custom", *PRESETS), open_choices=True),
    Field("custom_settings_file", "str", "/content/drive/MyDrive/Settings.txt",
          "Path of the settings file used when settings_file is 'custom'.", widget="string"),
)

GROUPS: dict[str, tuple[Field, ...]] = {
    "root": ROOT_FIELDS,
    "args": ARGS_FIELDS,
    "anim_args": ANIM_ARGS_FIELDS,
    "video": VIDEO_FIELDS,
    "load": LOAD_FIELDS,
}
GROUP_TITLES = {
    "root": "Root (model and paths cell)",
    "args": "DeforumArgs",
    "anim_args": "DeforumAnimArgs",
    "video": "Video cell",
    "load": "Load Settings cell",
}
FIELDS: dict[str, dict[str, Field]] = {g: {f.name: f for f in fs} for g, fs in GROUPS.items()}

DEFAULT_PROMPTS = [
    "a beautiful lake by Asher Brown Durand, trending on Artstation",
    "a beautiful portrait of a woman by Artgerm, trending on Artstation",
]
DEFAULT_ANIMATION_PROMPTS = {
    0: "a beautiful apple, trending on Artstation",
    20: "a beautiful banana, trending on Artstation",
    30: "a beautiful coconut, trending on Artstation",
    40: "a beautiful durian, trending on Artstation",
}


def _fields(group: str) -> tuple[Field, ...]:
    if group not in GROUPS:
        raise SettingsError(f"unknown settings group {group!r}; groups are {', '.join(GROUPS)}")
    return GROUPS[group]


def defaults(group: str) -> dict[str, Any]:
    """A fresh dict of the group's v0.6 defaults, in v0.6 order (outdir is None until ``finalize``)."""
    return {f.name: f.fresh_default() for f in _fields(group)}


def schedule_fields() -> tuple[str, ...]:
    """The 15 keyframe-schedule fields of DeforumAnimArgs, in v0.6 order."""
    return tuple(f.name for f in ANIM_ARGS_FIELDS if f.kind == "schedule")


def round_to_64(value: int) -> int:
    """Round a size down to a multiple of 64, as the v0.6 cell did (W, H)."""
    value = int(value)
    return value - value % 64


# --------------------------------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_dict(obj: Any) -> dict[str, Any]:
    """The fields of a settings group given as a mapping or a namespace (None: empty)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    return dict(vars(obj))


_REQUIRED = object()


def get_value(obj: Any, name: str, default: Any = _REQUIRED) -> Any:
    """One field of a settings group given as a mapping or a namespace; without ``default`` it must exist."""
    if isinstance(obj, Mapping):
        return obj[name] if default is _REQUIRED else obj.get(name, default)
    return getattr(obj, name) if default is _REQUIRED else getattr(obj, name, default)


def normalize(group: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``normalized`` without its notes."""
    return normalized(group, values)[0]


def normalized(group: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Coerce values the way the v0.6 form did, without judging them (``validate`` does that).

    Returns (values, notes): one note per value that changed on the way in, for the user to see (``deforum
    settings check`` prints them, a render shows them once). Integral floats in int fields become ints
    (Colab number fields may give 512.0); diffusion_cadence and the video max_frames become strings ('2';
    the same value, no note); W and H are rounded down to multiples of 64; in the Video Input mode a
    max_frames outside 1..MAX_FRAMES_LIMIT is brought into it (the render takes the count from the video).
    Values that cannot be coerced are left for ``validate`` to report.
    """
    _fields(group)
    fields = FIELDS[group]
    out = dict(values)
    notes: list[str] = []
    for name, value in values.items():
        f = fields.get(name)
        if f is None:
            continue
        given, reasons = value, []
        if f.type == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
            reasons.append("a whole number")
        elif f.type == "intstr" and _is_number(value) and float(value).is_integer():
            value = str(int(value))
        if group == "args" and name in ("W", "H") and isinstance(value, int) and not isinstance(value, bool) \
                and value >= 64 and value % 64:
            value = round_to_64(value)
            reasons.append("rounded down to a multiple of 64")
        if group == "anim_args" and name == "max_frames" and values.get("animation_mode") == "Video Input" \
                and isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_FRAMES_LIMIT:
            value = min(max(value, 1), MAX_FRAMES_LIMIT)
            reasons.append("Video Input renders every frame the video gives, as v0.6 did, whatever max_frames "
                           "says; the plan and the checks stop at this count")
        if reasons:
            notes.append(f"{name}={short_repr(given)} is used as {value!r} ({', '.join(reasons)})")
        out[name] = value
    return out, notes


def make_namespace(group: str, overrides: Mapping[str, Any] | None = None) -> SimpleNamespace:
    """Defaults of ``group`` updated with ``overrides`` (normalized); an unknown key is an error."""
    values = defaults(group)
    overrides = dict(overrides or {})
    unknown = [k for k in overrides if k not in values]
    if unknown:
        raise SettingsError("; ".join(_unknown_key_message(group, k) for k in unknown))
    values.update(overrides)
    return SimpleNamespace(**normalize(group, values))


def _unknown_key_message(group: str, key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS[group], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{key!r} is not a {GROUP_TITLES[group]} field{hint}"


_UNSAFE_NAME = re.compile(r"[/\\\x00]")


def unsafe_name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a single file/folder name inside the output folder, or None if it can."""
    if _UNSAFE_NAME.search(value):
        return "must be a plain name without '/', '\\' or NUL"
    if value in (".", "..") or ".." in value.split("."):
        return "must not contain '..'"
    if os.path.isabs(value) or re.match(r"^[A-Za-z]:", value):
        return "must not be an absolute path"
    return None


def _describe(f: Field) -> str:
    """What is allowed, in words."""
    if f.choices and not f.open_choices and f.type != "intstr":
        allowed = "one of " + ", ".join(repr(c) for c in f.choices)
    elif f.type == "bool":
        allowed = "true or false"
    elif f.type in ("int", "intstr"):
        allowed = "an integer" if f.type == "int" else "an integer (number or string)"
    elif f.type == "float":
        allowed = "a number"
    elif f.type == "schedule":
        allowed = "a keyframe schedule string such as \"0:(1.0), 10:(0.5)\""
    elif f.type == "runtime":
        allowed = "null (it is renderer state)"
    elif f.type == "inject_timing":
        allowed = "an integer n >= 1, a list of step numbers >= 1 or a list of fractions 0..1"
    else:
        allowed = "a string"
    if f.minimum is not None and f.maximum is not None:
        allowed += f" from {_num(f.minimum)} to {_num(f.maximum)}"
    elif f.minimum is not None:
        allowed += f" >= {_num(f.minimum)}"
    elif f.maximum is not None:
        allowed += f" <= {_num(f.maximum)}"
    if f.group == "args" and f.name in ("W", "H"):
        allowed += " (rounded down to a multiple of 64)"
    if f.nullable and f.type != "runtime":
        allowed += " or null"
    return allowed


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _value_problem(f: Field, value: Any) -> str | None:
    """Why ``value`` is not allowed for ``f`` (type, range, choice), or None."""
    if value is None:
        return None if f.nullable else "must not be null"
    ok = True
    number: float | None = None
    if f.type == "bool":
        ok = isinstance(value, bool)
    elif f.type == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        number = value if ok else None
    elif f.type == "float":
        ok = _is_number(value) and math.isfinite(value)
        number = value if ok else None
    elif f.type == "intstr":
        ok = isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None
        number = int(value) if ok else None
    elif f.type in ("str", "schedule"):
        ok = isinstance(value, str)
    elif f.type == "runtime":
        ok = False
    elif f.type == "inject_timing":
        return inject_timing_problem(value)
    if not ok:
        return f"must be {_describe(f)}"
    if number is not None and ((f.minimum is not None and number < f.minimum)
                               or (f.maximum is not None and number > f.maximum)):
        return f"must be {_describe(f)}"
    if f.choices and not f.open_choices and f.type != "intstr" and value not in f.choices:
        return f"must be {_describe(f)} (names are exact)"
    return None


def inject_timing_problem(value: Any) -> str | None:
    """Step numbers past the steps a frame runs are allowed: they never apply (as in v0.6)."""
    allowed = ("must be null (every step), an integer n >= 1 (every n-th step), a list of step numbers "
               ">= 1, or a list of fractions 0..1")
    if value is None:
        return None
    if _is_number(value) and isinstance(value, int):
        return None if value >= 1 else allowed
    if not isinstance(value, list) or not value or not all(_is_number(v) for v in value):
        return allowed
    if all(isinstance(v, int) for v in value):
        return None if min(value) >= 1 else allowed
    if all(isinstance(v, float) for v in value):
        return None if all(0.0 <= v <= 1.0 for v in value) else allowed
    return allowed + " (not a mix of integers and fractions)"


# ----------------------------------------------------------------------------------------- validation


def problems(group: str, values: Mapping[str, Any], *, present_only: bool = False) -> list[str]:
    """Every field-level problem of one group: missing keys, types, ranges, exact choices, safe names.

    ``present_only``: check only the fields in ``values`` (a partial group, e.g. the video fields of a file).
    """
    out = []
    for f in _fields(group):
        if f.name not in values:
            if not present_only:
                out.append(f"{f.name}: missing (the default is {json.dumps(f.fresh_default())})")
            continue
        value = values[f.name]
        problem = None
        if group == "args" and f.name in _NAME_FIELDS and isinstance(value, str):
            problem = unsafe_name_problem(value)  # first: it is the more important message
        problem = problem or _value_problem(f, value) or _special_problem(group, f.name, value, values)
        if problem is not None:
            out.append(f"{f.name}={short_repr(value)}: {problem}")
    return out


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NAME_FIELDS = ("batch_name", "filename_format", "timestring")  # become file/folder names under outdir


def _special_problem(group: str, name: str, value: Any, values: Mapping[str, Any]) -> str | None:
    """Rules that one field's type and range do not express."""
    if group == "args" and name in _NAME_FIELDS and isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            return f"is {size} bytes long; a file or folder name holds at most {MAX_NAME_BYTES} bytes"
    if group == "args" and name == "grad_inject_timing":
        if isinstance(value, list) and len(value) > MAX_STEPS:
            return f"lists {len(value)} steps; at most {MAX_STEPS} (the most steps a frame runs)"
        return inject_timing_problem(value)
    if group == "anim_args":
        if name == "fov" and value == 0:
            return "must not be 0 (the 3D camera gain 1/tan(fov/2) is undefined)"
        if name == "resume_timestring" and values.get("resume_from_timestring") \
                and not re.fullmatch(r"\d{14}", value):
            return "must be a timestring YYYYmmddHHMMSS (14 digits)"
        if name == "depth_model" and value not in DEPTH_MODELS and not _looks_like_path(value):
            return f"must be one of {', '.join(map(repr, DEPTH_MODELS))} or the path of a local model folder"
    return None


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith(("~", "."))


@dataclass
class Report:
    """What a check found: ``problems`` (the settings cannot run) and ``notes`` (values used differently
    from how they were given, or given but unused; the run goes on). One line of text each."""

    problems: list[str] = dc_field(default_factory=list)
    notes: list[str] = dc_field(default_factory=list)


def check(args: Any, anim_args: Any, root: Any = None, *, prompts: Any = None,
          animation_prompts: Any = None) -> Report:
    """Every problem and note of complete settings groups at once (nothing raised, nothing loaded).

    Fields, the 15 schedules (in 2D/3D/Video Input, or when animation_mode itself is bad), the mask rule,
    the sizes and counts the values imply together (a still batch's grid memory, the Interpolation frame
    count) and, when ``prompts`` / ``animation_prompts`` are given, the prompts the mode uses (frame keys,
    back-ticked weights at every frame they are used, prompts past max_frames).
    """
    args_d, args_notes = normalized("args", as_dict(args))
    anim_d, anim_notes = normalized("anim_args", as_dict(anim_args))
    report = Report(problems("args", args_d) + problems("anim_args", anim_d), args_notes + anim_notes)
    if root is not None:
        report.problems += problems("root", normalize("root", as_dict(root)))
    report.problems += schedule_problems(anim_d)
    if anim_d.get("animation_mode") != "Video Input":  # there every frame is an init (use_init is forced on)
        report.problems += [problem for problem in [mask_problem(args_d)] if problem]
    report.problems += size_problems(args_d, anim_d)
    report.notes += finalize_notes(args_d, anim_d)
    if prompts is not None or animation_prompts is not None:
        found, notes = prompt_problems(args_d, anim_d, prompts, animation_prompts)
        report.problems += found
        report.notes += notes
    return report


def validate(args: Any, anim_args: Any, root: Any = None, *, prompts: Any = None,
             animation_prompts: Any = None) -> None:
    """``check``, raising one SettingsError listing every problem (notes are not raised).

    ``args``/``anim_args``/``root`` are dicts or namespaces holding complete groups (merge partial input
    with ``defaults`` first). The error has a ``problems`` attribute: one line per problem.
    """
    found = check(args, anim_args, root, prompts=prompts, animation_prompts=animation_prompts).problems
    if found:
        raise settings_error(found)


def mask_problem(args: Any) -> str | None:
    """``use_mask`` applies the mask to the init image, so it needs ``use_init`` and an ``init_image``."""
    if get_value(args, "use_mask", False) and not (get_value(args, "use_init", False)
                                                   and get_value(args, "init_image", None)):
        return "use_mask=True: needs use_init True and an init_image (the mask applies to the init)"
    return None


def check_mask(args: Any) -> None:
    """Raise ``mask_problem`` as a SettingsError (renderers called without ``validate``)."""
    problem = mask_problem(args)
    if problem:
        raise SettingsError(problem)


def settings_error(found: list[str], where: str | None = None) -> SettingsError:
    """One SettingsError listing every problem (``where`` names the file; it is kept as ``err.where``)."""
    head = f"invalid settings{f' in {where}' if where else ''}"
    head += f" ({len(found)} problem{'s' if len(found) != 1 else ''}):"
    err = SettingsError(head + "".join("\n  - " + p.replace("\n", "\n    ") for p in found))
    err.problems = list(found)  # type: ignore[attr-defined]
    err.where = where  # type: ignore[attr-defined]
    return err


def _valid(group: str, name: str, value: Any) -> bool:
    return _value_problem(FIELDS[group][name], value) is None


def schedule_problems(anim: Mapping[str, Any]) -> list[str]:
    """Parse the schedules like v0.6 did: all 15, in 2D, 3D and Video Input runs; one problem per schedule.

    Also when animation_mode itself is bad (the intended mode may use them). A bad max_frames is reported
    on its own; the schedules are then checked over the default frame count, so one problem never hides
    another.
    """
    mode = anim.get("animation_mode")
    if mode in ANIMATION_MODES and mode not in SCHEDULED_MODES:
        return []
    max_frames = anim.get("max_frames")
    if not _valid("anim_args", "max_frames", max_frames):
        max_frames = FIELDS["anim_args"]["max_frames"].default
    from deforum.keyframes import parse_schedule  # lazy: keyframes pulls in numexpr

    found = []
    for name in schedule_fields():
        text = anim.get(name)
        if not isinstance(text, str):
            continue  # a type problem, already reported
        try:
            parse_schedule(text, max_frames, field=name, frame_limit=MAX_FRAMES_LIMIT)
        except ScheduleError as exc:
            found.append(str(exc))
    return found


def size_problems(args: Mapping[str, Any], anim: Mapping[str, Any]) -> list[str]:
    """Memory that values imply together, estimated before anything is allocated."""
    found = []
    sizes = [args.get(n) for n in ("n_batch", "W", "H")]
    if anim.get("animation_mode") == "None" and args.get("make_grid") is True \
            and all(_valid("args", n, v) for n, v in zip(("n_batch", "W", "H"), sizes, strict=True)):
        n_batch, width, height = sizes
        need = 2 * n_batch * width * height * 3  # the prompt's images and the grid, 8-bit RGB
        if need > GRID_MEMORY_LIMIT:
            found.append(f"n_batch={n_batch}: with make_grid at W x H = {width} x {height}, the grid of one prompt "
                         f"needs about {need / 2**30:.1f} GiB of memory (its images and the grid); at most "
                         f"{GRID_MEMORY_LIMIT / 2**30:g} GiB: lower n_batch, W or H, or turn make_grid off")
    return found


def finalize_notes(args: Mapping[str, Any], anim: Mapping[str, Any]) -> list[str]:
    """What ``finalize`` will change in valid values, as notes (one line each)."""
    notes = []
    strength = args.get("strength")
    if _valid("args", "strength", strength) and not 0 <= strength <= 1:
        notes.append(f"strength={strength!r} is used as {min(1.0, max(0.0, float(strength)))!r} "
                     "(strength is clamped to 0..1)")
    eta, sampler = args.get("ddim_eta"), args.get("sampler")
    if _valid("args", "ddim_eta", eta) and eta != 0 and _valid("args", "sampler", sampler) and sampler != "ddim":
        notes.append(f"ddim_eta={eta!r} is used as 0 (only the ddim sampler uses it; sampler={sampler!r})")
    return notes


# -------------------------------------------------------------------------------------------- prompts


_PROMPT_KEY = re.compile(r"\s*\d+\s*")


def prompt_problems(args: Mapping[str, Any], anim: Mapping[str, Any], prompts: Any,
                    animation_prompts: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) of the prompts the mode uses: None mode the ``prompts`` list, the animation modes
    ``animation_prompts`` (both when animation_mode is bad).

    Frame keys must be whole numbers >= 0 and prompts strings; back-ticked weights are checked and
    evaluated at every frame that generates with them (when prompt_weighting is on); the frames and images
    the prompts imply are bounded; prompts at or past max_frames (2D/3D) are named in a note.
    """
    mode = anim.get("animation_mode")
    found: list[str] = []
    notes: list[str] = []
    weighting = args.get("prompt_weighting") is not False
    if mode == "None" or mode not in ANIMATION_MODES:
        _still_prompt_problems(args, prompts, weighting, found)
    if mode != "None":
        _animation_prompt_problems(anim, animation_prompts, weighting, found, notes)
    return found, notes


def _still_prompt_problems(args: Mapping[str, Any], prompts: Any, weighting: bool, found: list[str]) -> None:
    if prompts is None:
        return
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        found.append(f"prompts={short_repr(prompts)}: must be a list of prompt strings")
        return
    if not prompts:
        found.append("prompts=[]: the None mode needs at least one prompt")
        return
    n_batch = args.get("n_batch")
    if _valid("args", "n_batch", n_batch) and n_batch * len(prompts) > MAX_FRAMES_LIMIT:
        found.append(f"n_batch={n_batch}: {len(prompts)} prompt(s) x n_batch {n_batch} = "
                     f"{n_batch * len(prompts)} images; at most {MAX_FRAMES_LIMIT} in one run")
    if weighting:
        from deforum.prompts import weight_problems

        for index, text in enumerate(prompts):
            found += [f"prompts[{index}]: {p}" for p in weight_problems(text, [0])]


def _animation_prompt_problems(anim: Mapping[str, Any], animation_prompts: Any, weighting: bool,
                               found: list[str], notes: list[str]) -> None:
    if animation_prompts is None:
        return
    if not isinstance(animation_prompts, Mapping):
        found.append(f"animation_prompts={short_repr(animation_prompts)}: must be an object frame -> prompt")
        return
    keyed: dict[int, str] = {}
    for key, text in animation_prompts.items():
        frame = key if isinstance(key, int) and not isinstance(key, bool) else (
            int(key) if isinstance(key, str) and _PROMPT_KEY.fullmatch(key) else None)
        if frame is None or frame < 0:
            found.append(f"animation_prompts[{key!r}]: the frame must be a whole number >= 0")
        elif not isinstance(text, str):
            found.append(f"animation_prompts[{key!r}]={short_repr(text)}: the prompt must be a string")
        else:
            keyed[frame] = text
    if not keyed:
        if not animation_prompts:
            found.append("animation_prompts={}: the animation modes need at least one prompt")
        return
    keys = sorted(keyed)
    mode = anim.get("animation_mode")
    if mode == "Interpolation":
        _interpolation_count_problems(anim, keys, found)
    max_frames = anim.get("max_frames")
    frames_known = _valid("anim_args", "max_frames", max_frames) and mode in ("2D", "3D", "Video Input")
    if frames_known and mode in ("2D", "3D"):
        past = [k for k in keys if k >= max_frames]
        shown = f"frames 0..{max_frames - 1}" if max_frames > 1 else "frame 0 only"
        if len(past) == len(keys):
            notes.append(f"animation_prompts: every prompt is at frame {max_frames} or later, past the last "
                         f"frame (max_frames={max_frames} renders {shown}); the prompt at frame {keys[0]} is "
                         "used for every frame")
        elif past:
            notes.append(f"animation_prompts: the prompt(s) at frame {', '.join(map(str, past))} are not used "
                         f"(max_frames={max_frames} renders {shown})")
    if not weighting:
        return
    from deforum.prompts import weight_problems

    for key, frames in _generated_frames(anim, keys, max_frames if frames_known else None).items():
        found += [f"animation_prompts[{key}]: {p}" for p in weight_problems(keyed[key], frames)]


def _generated_frames(anim: Mapping[str, Any], keys: list[int], max_frames: int | None) -> dict[int, list[int]]:
    """Prompt key -> the frames generated with that prompt (the value of ``t`` in its weights).

    The frames are those the plan diffuses (every diffusion_cadence-th in 2D/3D); Interpolation, or a bad
    max_frames, evaluates each prompt at its own key (Interpolation: at 0, as the renderer does).
    """
    if max_frames is None:
        frame0 = anim.get("animation_mode") == "Interpolation"
        return {k: [0 if frame0 else k] for k in keys}
    import numpy as np

    cadence = anim.get("diffusion_cadence")
    step = int(cadence) if anim.get("animation_mode") in ("2D", "3D") and _valid(
        "anim_args", "diffusion_cadence", cadence) else 1
    inside = np.array([k for k in keys if k < max_frames] or keys[:1])
    frames = np.arange(0, max_frames, step)
    which = np.clip(np.searchsorted(inside, frames, side="right") - 1, 0, None)
    return {int(k): frames[which == i].tolist() for i, k in enumerate(inside) if (which == i).any()}


def _interpolation_count_problems(anim: Mapping[str, Any], keys: list[int], found: list[str]) -> None:
    """The Interpolation frame count, computed without building the frames (plan.interpolation_frames)."""
    if anim.get("interpolate_key_frames") is True:
        count = keys[-1] - keys[0] + 1
        if count > MAX_FRAMES_LIMIT:
            found.append(f"animation_prompts: with interpolate_key_frames the prompts at frames {keys[0]} to "
                         f"{keys[-1]} give {count} frames; at most {MAX_FRAMES_LIMIT}")
        return
    x = anim.get("interpolate_x_frames")
    if _valid("anim_args", "interpolate_x_frames", x):
        count = (len(keys) - 1) * (x + 1) + 1
        if count > MAX_FRAMES_LIMIT:
            found.append(f"interpolate_x_frames={x}: {len(keys)} prompts give (prompts - 1) x "
                         f"(interpolate_x_frames + 1) + 1 = {count} frames; at most {MAX_FRAMES_LIMIT}")


# ------------------------------------------------------------------------------------ post-processing


def resolve_seed(seed: int, rng: random.Random | None = None) -> int:
    """``seed``, or for -1 a fresh random seed from the OS (not from a previous run's state, 12.1 #22)."""
    return (rng or random.SystemRandom()).randint(0, SEED_MAX) if seed == -1 else seed


def finalize(args: Any, anim_args: Any, root: Any = None, now: datetime.datetime | None = None,
             rng: random.Random | None = None) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The notebook's post-processing after the cells and the settings file (spec 1.4), on copies.

    timestring <- now; W/H rounded down to /64; strength clamped to [0, 1]; seed -1 -> a fresh random seed
    (from the OS, not from a previous run's state); init_image None unless use_init; ddim_eta 0 unless
    ddim; mode None -> max_frames 1; Video Input -> use_init True; outdir =
    {output_path}/{YYYY-MM}/{batch_name} (absolute; not created here). plms is kept with inits and
    animation (v0.6 switched it to klms; our plms supports img2img).
    """
    now = now or datetime.datetime.now()
    a = normalize("args", as_dict(args))
    anim = normalize("anim_args", as_dict(anim_args))
    root_d = as_dict(root)

    a["timestring"] = now.strftime("%Y%m%d%H%M%S")
    a["strength"] = min(1.0, max(0.0, float(a["strength"])))
    a["seed"] = resolve_seed(a["seed"], rng)
    if not a["use_init"]:
        a["init_image"] = None
    if a["sampler"] != "ddim":
        a["ddim_eta"] = 0
    if anim["animation_mode"] == "None":
        anim["max_frames"] = 1
    elif anim["animation_mode"] == "Video Input":
        a["use_init"] = True
    a["outdir"] = output_folder(root_d.get("output_path", DEFAULT_OUTPUT_PATH), a["batch_name"], now)
    return SimpleNamespace(**a), SimpleNamespace(**anim)


def output_folder(output_path: str, batch_name: str, now: datetime.datetime) -> str:
    """{output_path}/{YYYY-MM}/{batch_name}, absolute; an empty batch_name gives the month folder."""
    parts = [now.strftime("%Y-%m")] + ([batch_name] if batch_name else [])
    return os.path.abspath(os.path.join(os.path.expanduser(output_path), *parts))


# -------------------------------------------------------------------------------------- form and docs


def form_line(f: Field) -> str:
    """The v0.6-style notebook line for a field, e.g. ``W = 512 #@param``."""
    line = f"{f.name} = {f.fresh_default()!r}"
    if f.name == "grad_inject_timing":
        line = f"{f.name} = list(range(1,10))"
    if f.widget is None:
        return line
    if f.widget == "raw":
        return line + " #@param"
    if f.widget == "dropdown":
        suffix = " {type:'string'}" if f.group == "anim_args" else ""
        return line + " #@param " + json.dumps(list(f.choices)) + suffix
    return line + ' #@param {type:"' + f.widget + '"}'


def cli_help(f: Field) -> str:
    """One help line for a command-line option: the help text, what is allowed and the default."""
    return f"{f.help} Allowed: {_describe(f)}{' (or any other value)' if f.open_choices else ''}. " \
           f"Default: {json.dumps(f.fresh_default())}."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """The text of docs/settings.md: one table per group, generated from the field tables."""
    lines = [
        "# Settings reference",
        "",
        "Generated from `deforum/args.py` by `python -m deforum.args --write`; do not edit by hand.",
        "",
        "Names, defaults and choices are those of Deforum Stable Diffusion v0.6. Choice values are",
        "exact: v0.6 silently fell back on an unknown value (e.g. `'Iter'`, an unknown colour mode);",
        "here that is an error naming the allowed values. **new** marks a field this project adds; its",
        "default keeps the v0.6 behaviour. *hidden* fields are not in the notebook form but are saved in",
        "settings files. `outdir` and `timestring` are computed when a run starts (`outdir` from a",
        "settings file is not used).",
        "",
    ]
    for group, fields in GROUPS.items():
        lines += [f"## {GROUP_TITLES[group]}", "", "| name | type | default | allowed | form | help |",
                  "|---|---|---|---|---|---|"]
        for f in fields:
            allowed = _describe(f)
            if f.open_choices:
                allowed += " (suggested: " + ", ".join(repr(c) for c in f.choices) + ")"
            form = f.widget or "*hidden*"
            name = f"`{f.name}`" + (" **new**" if f.new else "")
            lines.append("| " + " | ".join(_cell(c) for c in (
                name, f.type, f"`{json.dumps(f.fresh_default())}`", allowed, form, f.help)) + " |")
        lines.append("")
    lines += ["## Prompts", "",
              "`prompts` (None mode, a list) default: " + _cell(json.dumps(DEFAULT_PROMPTS)), "",
              "`animation_prompts` (frame -> prompt) default: "
              + _cell(json.dumps({str(k): v for k, v in DEFAULT_ANIMATION_PROMPTS.items()})), ""]
    return "\n".join(lines)


def _main(argv: Iterable[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    text = settings_markdown()
    if "--write" in argv:
        target = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
