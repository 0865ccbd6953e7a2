"""Every setting of the v0.6 notebook, declared once: the Root, DeforumArgs and DeforumAnimArgs cells, the
prompt cell, the Load Settings cell and the video cell (spec animation 1.1-1.5, generation 1.1).

Each field has its v0.6 name, default, type, allowed values, Colab form widget and a one-line help text.
Settings files, validation, the typed settings, the notebook form cells, CLI help and docs/settings.md are
all derived from these tables, so a fact about a field lives here and nowhere else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from deforum.errors import SettingsError
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
SCHEDULED_MODES = ("2D", "3D", "Video Input")  # v0.6 parses its schedules in these modes only (so do we)
DEFAULT_OUTPUT_PATH = "output"

TYPES = ("int", "float", "bool", "str", "intstr", "schedule", "inject_timing", "lora", "runtime")
WIDGETS = ("dropdown", "boolean", "number", "integer", "string", "raw")


@dataclass(frozen=True)
class Field:
    """One setting.

    ``type``: int, float (int or float accepted, as v0.6 number fields), bool, str, intstr (a string holding
    an integer, e.g. diffusion_cadence '1'), schedule (a keyframe string), inject_timing (None, int or list),
    runtime (state the renderer fills in; null in settings files).
    ``widget``: the Colab ``#@param`` kind; None means the field is not in the form (hidden).
    ``choices`` are enforced exactly unless ``open_choices`` (then they are only the dropdown's suggestions).
    ``kind``: "setting", "schedule", "runtime" (v0.6's renderer state) or "computed" (the run's identity: ``identify``).
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
    concern: str = ""
    shapes_image: bool = True

    @property
    def hidden(self) -> bool:
        return self.widget is None

    def fresh_default(self) -> Any:
        """The default as a new object (lists are stored as tuples so the table stays immutable)."""
        if isinstance(self.default, tuple):
            return list(self.default)
        return copy.deepcopy(self.default)


def _section(group: str, title: str, *fields: Field, concern: str) -> tuple[Field, ...]:
    """The fields of one form section; ``concern`` is the typed-settings part of those that do not name their
    own (runtime and computed fields belong to none: the renderer and ``RunIdentity`` hold them)."""
    def placed(f: Field) -> Field:
        own = "" if f.kind in ("runtime", "computed") else (f.concern or concern)
        return replace(f, group=group, section=title, concern=own)
    return tuple(placed(f) for f in fields)


def _schedule(name: str, default: str, help: str, concern: str = "", new: bool = False) -> Field:
    return Field(name, "schedule", default, help, widget="string", kind="schedule", concern=concern, new=new)


_URL_BEETLE = "https://cdn.pixabay.com/photo/2022/07/30/13/10/green-longhorn-beetle-7353749_1280.jpg"
_URL_MASK = ("https://www.filterforge.com/wiki/images/archive/b/b7/"
             "20080927223728%21Polygonal_gradient_thumb.jpg")
_URL_PALETTE = "https://www.saasdesign.io/wp-content/uploads/2021/02/palette-3-min-980x588.png"

# The sampler dropdown: a live view of the sampler registry (deforum/sampling/registry.py: v0.6's names, then
# the two SDE samplers added here, then any sampler registered later). The one import of sampling here: the
# registry module imports no torch, and the dropdown, validation and docs cannot drift from what runs.
SAMPLERS = sampler_registry.NAMES
# The model_checkpoint dropdown: 'custom' plus every checkpoint name of the catalogue (deforum/models/catalogue.py,
# kind 'checkpoint'; a test keeps the two equal). Any file name in models_path, a Hugging Face repo id or a
# diffusers folder also works.
CHECKPOINTS = ("custom", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.ckpt", "sd-v1-4-full-ema.ckpt", "sd-v1-4.ckpt",
               "sd-v1-3-full-ema.ckpt", "sd-v1-3.ckpt", "sd-v1-2-full-ema.ckpt", "sd-v1-2.ckpt",
               "sd-v1-1-full-ema.ckpt", "sd-v1-1.ckpt", "robo-diffusion-v1.ckpt", "wd-v1-3-float16.ckpt",
               "Protogen_V2.2.ckpt", "v2-1_768-ema-pruned.ckpt", "v2-1_512-ema-pruned.ckpt", "768-v-ema.ckpt",
               "512-base-ema.ckpt", "v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors",
               "sd_turbo.safetensors", "sd_xl_turbo_1.0_fp16.safetensors")
PRESETS = ("512x512_aesthetic_0.json", "512x512_aesthetic_1.json", "512x512_colormatch_0.json",
           "512x512_colormatch_1.json", "512x512_colormatch_2.json", "512x512_colormatch_3.json")
FILENAME_FORMATS = ("{timestring}_{index}_{seed}.png", "{timestring}_{index}_{prompt}.png")
DEPTH_MODELS = ("midas", "depth_anything")
VAES = ("default", "taesd")
SOUNDTRACKS = ("None", "File", "Init Video")
# A1111 Deforum's names for the motion tools beyond v0.6 (deforum/motion/flow.py, hybrid.py; image/noise.py).
SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
FLOW_METHODS = ("RAFT", "DIS Medium", "DIS Fine", "Farneback")
FLOW_CADENCES = ("None", *FLOW_METHODS)
HYBRID_MOTIONS = ("None", "Optical Flow", "Perspective", "Affine")
HYBRID_COMPOSITES = ("None", "Normal", "Before Motion", "After Generation")
HYBRID_MASK_TYPES = ("None", "Depth", "Video Depth", "Blend", "Difference")
NOISE_TYPES = ("uniform", "perlin")
FRAME_LOOPS = ("auto", "device", "host")
MAX_PERLIN_OCTAVES = 8
MAX_BLUR_KERNEL = 255  # anti-blur kernel_schedule: pixels; far beyond any sharpening radius
MAX_LORAS = 16  # LoRA files applied at once
LORA_WEIGHT_LIMIT = 10.0  # |weight|: LoRAs are used at -2..2; far beyond, the UNet's activations overflow

ROOT_FIELDS: tuple[Field, ...] = (
    *_section(
        "root", "Paths",
        Field("models_path", "str", "models", "Folder with model checkpoints (local runs).", widget="string",
              concern="model"),
        Field("configs_path", "str", "configs", "Folder with the LDM yaml configs.", widget="string", concern="model"),
        Field("output_path", "str", DEFAULT_OUTPUT_PATH, "Root of the output folders (local runs).",
              widget="string"),
        Field("mount_google_drive", "bool", True, "In Colab, mount Google Drive and use the gdrive paths.",
              widget="boolean"),
        Field("models_path_gdrive", "str", "/content/drive/MyDrive/AI/models",
              "Checkpoint folder when Drive is mounted.", widget="string", concern="model"),
        Field("output_path_gdrive", "str", "/content/drive/MyDrive/AI/StableDiffusion",
              "Output root when Drive is mounted.", widget="string"),
        concern="output",
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
        concern="model",
    ),
    *_section(
        "root", "New in this version",
        Field("compile_unet", "bool", False, "torch.compile the UNet (slow first frame, faster after).",
              widget="boolean", new=True),
        Field("offload_depth_model", "bool", False, "Keep the depth model on the CPU between frames.",
              widget="boolean", new=True, concern="depth"),
        Field("vae_tiling", "bool", False, "Decode/encode large images in VAE tiles to save memory.",
              widget="boolean", new=True),
        Field("vae", "str", "default",
              "Autoencoder for images: 'default' (the checkpoint's own) or 'taesd' (tiny and fast: TAESD for SD "
              "1.x/2.x, TAESDXL for SDXL).", widget="dropdown", choices=VAES, new=True),
        Field("lora", "lora", (),
              'LoRA files applied to the model: a list of {"path": file, "weight": number} (weight 0: off).',
              widget="raw", new=True),
        concern="model",
    ),
)

ARGS_FIELDS: tuple[Field, ...] = (
    *_section(
        "args", "Image Settings",
        Field("W", "int", 512, "Width in pixels; rounded down to a multiple of 64.", widget="raw",
              minimum=64, maximum=MAX_IMAGE_SIZE),
        Field("H", "int", 512, "Height in pixels; rounded down to a multiple of 64.", widget="raw",
              minimum=64, maximum=MAX_IMAGE_SIZE),
        concern="image",
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
        concern="image",
    ),
    *_section(
        "args", "Save & Display Settings",
        Field("save_samples", "bool", True, "Save images (None mode; animations always save).",
              widget="boolean", shapes_image=False),
        Field("save_settings", "bool", True,
              "Write {timestring}_settings.txt (None mode; animations always).",
              widget="boolean", shapes_image=False),
        Field("display_samples", "bool", True, "Show images in the notebook (None mode).", widget="boolean",
              shapes_image=False),
        Field("save_sample_per_step", "bool", False, "Save x and x0_pred images of every sampler step.",
              widget="boolean", shapes_image=False),
        Field("show_sample_per_step", "bool", False, "Show a preview of every sampler step.",
              widget="boolean", shapes_image=False),
        concern="output",
    ),
    *_section(
        "args", "Prompt Settings",
        Field("prompt_weighting", "bool", True, "Parse 'text:weight' sub-prompts.", widget="boolean"),
        Field("normalize_prompt_weights", "bool", True, "Scale positive and negative weights to sum to 1.",
              widget="boolean"),
        Field("log_weighted_subprompts", "bool", False, "Print the weighted sub-prompts and their tokens.",
              widget="boolean", shapes_image=False),
        concern="prompts",
    ),
    *_section(
        "args", "Batch Settings",
        Field("n_batch", "int", 1, "Images per prompt in None mode.", widget="raw", minimum=1,
              maximum=MAX_FRAMES_LIMIT, shapes_image=False),
        Field("batch_name", "str", "StableFun", "Output sub-folder name (a plain name, no path).",
              widget="string", shapes_image=False),
        Field("filename_format", "str", "{timestring}_{index}_{prompt}.png", "Still image file names.",
              widget="dropdown", choices=FILENAME_FORMATS, shapes_image=False),
        Field("seed_behavior", "str", "iter",
              "How the seed changes after each image: iter +1 (every seed_iter_N images), fixed, random, "
              "ladder (+2, -1), alternate (+1, -1) or schedule (seed_schedule).", widget="dropdown",
              choices=SEED_BEHAVIORS, concern="image"),
        Field("make_grid", "bool", False, "Save a grid of each prompt's images (None mode).",
              widget="boolean", shapes_image=False),
        Field("grid_rows", "int", 2, "Grid layout: images per row = count // grid_rows.", widget="raw",
              minimum=1, maximum=MAX_FRAMES_LIMIT, shapes_image=False),
        Field("outdir", "str", None, "Output folder {output_path}/{YYYY-MM}/{batch_name}, the run's (identify).",
              nullable=True, kind="computed", shapes_image=False),
        concern="output",
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
              minimum=0, maximum=MAX_IMAGE_SIZE),  # a wider blur changes nothing more; its kernel is 8 sigma,
        concern="init",
    ),
    *_section(
        "args", "Exposure/Contrast Conditional Settings",
        Field("mean_scale", "float", 0, "Gradient guidance towards mid-grey.", widget="number"),
        Field("var_scale", "float", 0, "Gradient guidance towards lower pixel variance.", widget="number"),
        Field("exposure_scale", "float", 0, "Gradient guidance towards exposure_target.", widget="number"),
        Field("exposure_target", "float", 0.5, "Target mean pixel value for exposure_scale, -1..1.",
              widget="number"),
        concern="guidance",
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
        concern="guidance",
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
        concern="guidance",
    ),
    *_section(
        "args", "Other Conditional Settings",
        Field("init_mse_scale", "float", 0, "Gradient guidance towards init_mse_image, pixel by pixel.",
              widget="number"),
        Field("init_mse_image", "str", _URL_BEETLE, "Target image for init_mse_scale.", widget="string",
              nullable=True),
        Field("blue_scale", "float", 0, "Gradient guidance towards blue.", widget="number"),
        concern="guidance",
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
        concern="guidance",
    ),
    *_section(
        "args", "Speed vs VRAM Settings",
        Field("cond_uncond_sync", "bool", True,
              "Run cond and uncond guidance in one batch (faster, more VRAM).",
              widget="boolean"),
        concern="image",
    ),
    *_section(
        "args", "Runtime",
        Field("n_samples", "int", 1, "Images per sampler call (v0.6: always 1).", minimum=1, maximum=1,
              concern="image"),
        Field("precision", "str", "autocast", "Autocast or full precision.", choices=("autocast", "full")),
        Field("C", "int", 4, "Latent channels.", minimum=4, maximum=4),
        Field("f", "int", 8, "Latent downsampling factor.", minimum=8, maximum=8),
        Field("prompt", "str", "", "The prompt of the current image (set by the renderer).", kind="runtime",
              shapes_image=False),
        Field("timestring", "str", "", "Run id YYYYmmddHHMMSS, the file name prefix (the run's: identify).",
              kind="computed", shapes_image=False),
        Field("init_latent", "runtime", None, "Init latent of the current image (renderer state).",
              nullable=True, kind="runtime", shapes_image=False),
        Field("init_sample", "runtime", None, "Init pixels of the current image (renderer state).",
              nullable=True, kind="runtime", shapes_image=False),
        Field("init_sample_raw", "runtime", None, "Overlay source image (renderer state).", nullable=True,
              kind="runtime", shapes_image=False),
        Field("mask_sample", "runtime", None, "Cached overlay mask (renderer state).", nullable=True,
              kind="runtime", shapes_image=False),
        Field("init_c", "runtime", None, "Conditioning override for Interpolation (renderer state).",
              nullable=True, kind="runtime", shapes_image=False),
        concern="model",
    ),
    *_section(
        "args", "New in this version",
        Field("karras_schedule", "bool", False, "Use the Karras et al. sigma spacing instead of v0.6's.",
              widget="boolean", new=True),
        Field("seed_iter_N", "int", 1, "seed_behavior 'iter': the seed goes up by 1 every N images (A1111's "
              "field).", widget="number", minimum=1, maximum=MAX_FRAMES_LIMIT, new=True),
        concern="image",
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
              widget="dropdown", choices=("wrap", "replicate"), concern="motion"),
        concern="animation",
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
        _schedule("noise_schedule", "0: (0.02)", "Gaussian noise added to each init (frames >= 1).",
                  concern="coherence"),
        _schedule("strength_schedule", "0: (0.65)", "Init strength of frames >= 1 (clamped to 0..1).",
                  concern="coherence"),
        _schedule("contrast_schedule", "0: (1.0)", "Gain applied to the warped frame (1 = unchanged).",
                  concern="coherence"),
        concern="motion",
    ),
    *_section(
        "anim_args", "Coherence",
        Field("color_coherence", "str", "Match Frame 0 LAB", "Match each frame's colours to frame 0.",
              widget="dropdown",
              choices=("None", "Match Frame 0 HSV", "Match Frame 0 LAB", "Match Frame 0 RGB")),
        Field("diffusion_cadence", "intstr", "1", "Diffuse every N-th frame and blend the frames between.",
              widget="dropdown", choices=tuple(str(n) for n in range(1, 9)), minimum=1, maximum=8),
        concern="coherence",
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
        concern="depth",
    ),
    *_section(
        "anim_args", "Video Input",
        Field("video_init_path", "str", "/content/video_in.mp4", "Source video for Video Input.",
              widget="string", shapes_image=False),
        Field("extract_nth_frame", "int", 1, "Use every n-th video frame.", widget="number", minimum=1,
              maximum=MAX_FRAMES_LIMIT, shapes_image=False),
        Field("overwrite_extracted_frames", "bool", True, "Re-extract frames even if the folder exists.",
              widget="boolean", shapes_image=False),
        Field("use_mask_video", "bool", False, "Use video_mask_path as per-frame masks.", widget="boolean"),
        Field("video_mask_path", "str", "/content/video_in.mp4", "Mask video for Video Input.",
              widget="string", shapes_image=False),
        concern="video_input",
    ),
    *_section(
        "anim_args", "Interpolation",
        Field("interpolate_key_frames", "bool", False, "Use the prompt frame numbers as in-between counts.",
              widget="boolean"),
        Field("interpolate_x_frames", "int", 4, "In-between frames per prompt pair.", widget="number",
              minimum=0, maximum=MAX_FRAMES_LIMIT - 1),
        concern="interpolation",
    ),
    *_section(
        "anim_args", "Resume Animation",
        Field("resume_from_timestring", "bool", False, "Continue the 2D/3D run named resume_timestring.",
              widget="boolean", shapes_image=False),
        Field("resume_timestring", "str", "20220829210106",
              "Timestring (YYYYmmddHHMMSS) of the run to resume.",
              widget="string", shapes_image=False),
        concern="resume",
    ),
    *_section(
        "anim_args", "Anti Blur",
        _schedule("amount_schedule", "0: (0)", "Unsharp-mask amount applied to the warped frame before "
                  "diffusion (0 = off; A1111's field).", concern="coherence", new=True),
        _schedule("kernel_schedule", "0: (5)", "Unsharp-mask blur kernel in pixels (made odd).",
                  concern="coherence", new=True),
        _schedule("sigma_schedule", "0: (1.0)", "Unsharp-mask blur sigma (0: from the kernel).",
                  concern="coherence", new=True),
        _schedule("threshold_schedule", "0: (0.0)", "Unsharp mask: pixels that differ from the blur by less "
                  "(0..255) are left as they are.", concern="coherence", new=True),
        concern="coherence",
    ),
    *_section(
        "anim_args", "Noise",
        Field("noise_type", "str", "uniform", "Noise added to each init: 'uniform' (v0.6's Gaussian noise) or "
              "'perlin' (Gaussian noise shaped by Perlin noise).", widget="dropdown", choices=NOISE_TYPES,
              new=True),
        Field("perlin_w", "float", 8, "Perlin noise: lattice cells across the width.", widget="number",
              minimum=0.1, maximum=MAX_IMAGE_SIZE, new=True),
        Field("perlin_h", "float", 8, "Perlin noise: lattice cells down the height.", widget="number",
              minimum=0.1, maximum=MAX_IMAGE_SIZE, new=True),
        Field("perlin_octaves", "int", 4, "Perlin noise: octaves (each twice the frequency of the last).",
              widget="number", minimum=1, maximum=MAX_PERLIN_OCTAVES, new=True),
        Field("perlin_persistence", "float", 0.5, "Perlin noise: amplitude of each octave relative to the last.",
              widget="number", minimum=0, maximum=1, new=True),
        concern="coherence",
    ),
    *_section(
        "anim_args", "Optical Flow Cadence",
        Field("optical_flow_cadence", "str", "None", "Make the frames between diffused frames by warping both "
              "along the optical flow between them (with diffusion_cadence > 1), not only cross-fading.",
              widget="dropdown", choices=FLOW_CADENCES, new=True),
        _schedule("cadence_flow_factor_schedule", "0: (1)", "How far along the flow the in-between frames "
                  "move (1 = all the way).", concern="coherence", new=True),
        Field("optical_flow_redo_generation", "str", "None", "Generate each frame twice: the flow from the "
              "previous frame to the first generation moves the init of the second (twice as slow).",
              widget="dropdown", choices=FLOW_CADENCES, new=True),
        _schedule("redo_flow_factor_schedule", "0: (1)", "How far along that flow the second init moves.",
                  concern="coherence", new=True),
        concern="coherence",
    ),
    *_section(
        "anim_args", "Hybrid Video",
        Field("hybrid_motion", "str", "None", "Move each frame with the motion of video_init_path: its optical "
              "flow, or a perspective / affine fit of matched features (2D, 3D, Video Input).",
              widget="dropdown", choices=HYBRID_MOTIONS, new=True),
        Field("hybrid_motion_use_prev_img", "bool", False, "Optical Flow: take the flow between the previous "
              "image and the video frame instead of between two video frames.", widget="boolean", new=True),
        Field("hybrid_flow_method", "str", "RAFT", "Optical-flow method of hybrid_motion 'Optical Flow'.",
              widget="dropdown", choices=FLOW_METHODS, new=True),
        _schedule("hybrid_flow_factor_schedule", "0: (1)", "Scale of the hybrid optical flow (1 = as measured).",
                  new=True),
        Field("hybrid_composite", "str", "None", "Blend the video frame into each init: 'Normal' (after the "
              "motion), 'Before Motion', or 'After Generation' (into the generated image).", widget="dropdown",
              choices=HYBRID_COMPOSITES, new=True),
        Field("hybrid_use_first_frame_as_init_image", "bool", True, "With hybrid_composite, start frame 0 "
              "from the video's first frame.", widget="boolean", new=True),
        _schedule("hybrid_comp_alpha_schedule", "0:(0.5)", "How much of the video frame is blended in, 0..1.",
                  new=True),
        Field("hybrid_comp_mask_type", "str", "None", "Where the video frame is blended: everywhere (None), by "
              "the depth of the image or of the video frame, by their blend, or by their difference.",
              widget="dropdown", choices=HYBRID_MASK_TYPES, new=True),
        Field("hybrid_comp_mask_inverse", "bool", False, "Invert the composite mask.", widget="boolean",
              new=True),
        _schedule("hybrid_comp_mask_blend_alpha_schedule", "0:(0.5)", "Mask type 'Blend': weight of the video "
                  "frame against the image, 0..1.", new=True),
        _schedule("hybrid_comp_mask_contrast_schedule", "0:(1)", "Contrast gain of the composite mask "
                  "(1 = unchanged).", new=True),
        Field("hybrid_comp_mask_auto_contrast", "bool", False, "Stretch the composite mask to 0..255.",
              widget="boolean", new=True),
        concern="hybrid",
    ),
    *_section(
        "anim_args", "New in this version",
        Field("seed_schedule", "schedule", '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
              "seed_behavior 'schedule': the seed of each frame; s is the run's seed, -1 a random one "
              "(A1111's field).", widget="string", new=True, concern="image"),
        Field("frame_loop", "str", "auto", "Where a frame's warp, colour match and noise run: 'device' keeps "
              "the frame on the GPU, 'host' is the CPU loop, 'auto' picks the device loop on CUDA.",
              widget="dropdown", choices=FRAME_LOOPS, new=True, concern="animation", shapes_image=False),
        Field("depth_every", "int", 1, "3D: predict depth at most every N frames and reuse the last map in "
              "between (1 = whenever the image changes, as v0.6; faster with a larger N).", widget="number",
              minimum=1, maximum=MAX_FRAMES_LIMIT, new=True,
              concern="depth"),
        Field("depth_model", "str", "midas",
              "3D depth: 'midas' (DPT-Large, v0.6), 'depth_anything' (V2 small) or a local model folder.",
              widget="dropdown", choices=DEPTH_MODELS, open_choices=True, new=True, concern="depth"),
        Field("correct_2d_flip", "bool", False,
              "Perspective flip keeps x/y translation and is the identity at zero angles (v0.6: off).",
              widget="boolean", new=True),
        Field("correct_3d_aspect", "bool", False,
              "3D warp without v0.6's horizontal squeeze on non-square frames.", widget="boolean", new=True),
        Field("interpolation_method", "str", "linear",
              "Interpolation mode: blend prompt conditionings linearly (v0.6) or by slerp.",
              widget="dropdown", choices=("linear", "slerp"), new=True, concern="interpolation"),
        Field("parseq_manifest", "str", "",
              "A Parseq manifest (a .json file, a URL, or its JSON text) whose per-frame values override the "
              "schedules it carries (A1111 Deforum's field; empty: none).", widget="string", new=True,
              concern="animation"),
        Field("parseq_use_deltas", "bool", True,
              "With a Parseq manifest, take 2D/3D motion from its per-frame deltas (A1111 Deforum's field).",
              widget="boolean", new=True, concern="animation"),
        Field("animation_prompts_positive", "str", "",
              "Added before every animation frame's prompt (A1111 Deforum's field).", widget="string", new=True,
              concern="prompts"),
        Field("animation_prompts_negative", "str", "",
              "Added after every animation frame's negative prompt (after --neg; A1111 Deforum's field).",
              widget="string", new=True, concern="prompts"),
        concern="motion",
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
    Field("add_soundtrack", "str", "None",
          "Sound in the mp4: 'None', 'File' (soundtrack_path) or 'Init Video' (video_init_path's audio); trimmed "
          "to the video's length (A1111 Deforum's field).", widget="dropdown", choices=SOUNDTRACKS, new=True),
    Field("soundtrack_path", "str", "", "The audio file (wav, flac, ogg, mp3, ...) muxed when add_soundtrack is "
          "'File'.", widget="string", new=True),
    concern="video",
)

LOAD_FIELDS: tuple[Field, ...] = _section(
    "load", "Load Settings",
    Field("override_settings_with_file", "bool", False, "Override the cells with a settings file.",
          widget="boolean"),
    Field("settings_file", "str", "custom", "A preset in settings/, or 'custom' for custom_settings_file.",
          widget="dropdown", choices=("custom", *PRESETS), open_choices=True),
    Field("custom_settings_file", "str", "/content/drive/MyDrive/Settings.txt",
          "Path of the settings file used when settings_file is 'custom'.", widget="string"),
    concern="load",
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


def group_fields(group: str) -> tuple[Field, ...]:
    if group not in GROUPS:
        raise SettingsError(f"unknown settings group {group!r}; groups are {', '.join(GROUPS)}")
    return GROUPS[group]


def defaults(group: str) -> dict[str, Any]:
    """A fresh dict of the group's v0.6 defaults, in v0.6 order (outdir is None: a run's folder is ``identify``'s)."""
    return {f.name: f.fresh_default() for f in group_fields(group)}


def concern_fields(concern: str) -> tuple[Field, ...]:
    """The fields of one concern of the typed settings, in table order (root, args, anim_args, video, load)."""
    return tuple(f for fields in GROUPS.values() for f in fields if f.concern == concern)


def schedule_fields() -> tuple[str, ...]:
    """The keyframe-schedule fields of DeforumAnimArgs: v0.6's 15 in its order, then the new ones (anti-blur,
    flow cadence, hybrid video) in table order."""
    return tuple(f.name for f in ANIM_ARGS_FIELDS if f.kind == "schedule")
