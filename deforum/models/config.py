"""LDM yaml configs as data: read with omegaconf, checked, and turned into module configs.

A config's ``target`` names are compared against the known LDM classes and never imported (v0.6's
``instantiate_from_config`` imported whatever a yaml named; spec 11.3). When no config is given, the
family (SD1, SD2 eps, SD2 v) is detected from the state dict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deforum.errors import ModelError
from deforum.models import text

log = logging.getLogger(__name__)

# The top-level configs/ of a checkout (or an editable install); a wheel installs them as data files.
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
DISTRIBUTION = "deforum-stable-diffusion"  # pyproject's [project] name
CONFIG_NAMES = ("v1-inference.yaml", "v2-inference.yaml", "v2-inference-v.yaml")

_LDM = "ldm.models.diffusion.ddpm.LatentDiffusion"
_UNET = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
_VAE = "ldm.models.autoencoder.AutoencoderKL"
_CLIP = "ldm.modules.encoders.modules.FrozenCLIPEmbedder"
_OPENCLIP = "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder"

# Names of released SD 2 768-v checkpoints: `parameterization` is not stored in a checkpoint.
V_PREDICTION_NAMES = ("768-v-ema", "v2-1_768-ema-pruned", "v2-1_768-nonema-pruned", "768-v")


@dataclass(frozen=True)
class LDMSpec:
    """Everything the loader needs from an LDM yaml."""

    path: Path
    parameterization: str  # 'eps' or 'v'
    linear_start: float
    linear_end: float
    timesteps: int
    scale_factor: float
    image_size: int  # latent side length the model was trained at
    unet: dict  # diffusers UNet2DConditionModel config
    vae: dict  # diffusers AutoencoderKL config
    text: text.TextEncoderSpec


def _get(node: Any, dotted: str, where: Path, default: Any = ...) -> Any:
    value = node
    for part in dotted.split("."):
        if value is None or part not in value:
            if default is not ...:
                return default
            raise ModelError(f"{where}: the LDM config lacks '{dotted}'")
        value = value[part]
    return value


def _check_target(node: Any, dotted: str, allowed: tuple[str, ...], where: Path) -> str:
    target = _get(node, dotted, where)
    if target not in allowed:
        raise ModelError(f"{where}: {dotted} = {target!r} is not supported; allowed: {', '.join(allowed)}")
    return target


def unet_config(p: Any, image_size: int) -> dict:
    """diffusers UNet2DConditionModel config from the LDM unet_config params (SD 1.x / 2.x)."""
    channels = [p["model_channels"] * m for m in p["channel_mult"]]
    attn_levels = set(p["attention_resolutions"])
    down, up, resolution = [], [], 1
    for i in range(len(channels)):
        down.append("CrossAttnDownBlock2D" if resolution in attn_levels else "DownBlock2D")
        resolution *= 2 if i < len(channels) - 1 else 1
    for _ in channels:
        up.append("CrossAttnUpBlock2D" if resolution in attn_levels else "UpBlock2D")
        resolution //= 2
    if p.get("num_heads", -1) not in (None, -1):
        heads = p["num_heads"]  # diffusers' `attention_head_dim` is the head *count* for SD checkpoints
    else:
        heads = [c // p["num_head_channels"] for c in channels]
    return dict(sample_size=image_size, in_channels=p["in_channels"], out_channels=p["out_channels"],
                down_block_types=down, up_block_types=up, block_out_channels=channels,
                layers_per_block=p["num_res_blocks"], cross_attention_dim=p["context_dim"],
                attention_head_dim=heads, use_linear_projection=bool(p.get("use_linear_in_transformer", False)),
                transformer_layers_per_block=p.get("transformer_depth", 1))


def vae_config(dd: Any, scale_factor: float) -> dict:
    """diffusers AutoencoderKL config from the LDM first_stage_config ddconfig."""
    channels = [dd["ch"] * m for m in dd["ch_mult"]]
    return dict(sample_size=dd["resolution"], in_channels=dd["in_channels"], out_channels=dd["out_ch"],
                down_block_types=["DownEncoderBlock2D"] * len(channels),
                up_block_types=["UpDecoderBlock2D"] * len(channels), block_out_channels=channels,
                latent_channels=dd["z_channels"], layers_per_block=dd["num_res_blocks"],
                scaling_factor=scale_factor)


def _text_spec(cond: Any, where: Path) -> text.TextEncoderSpec:
    target = _check_target(cond, "target", (_CLIP, _OPENCLIP), where)
    params = cond.get("params") or {}
    if target == _CLIP:
        version = params.get("version", "openai/clip-vit-large-patch14")
        if version in text.KNOWN_CLIP_VERSIONS:
            return text.clip_spec(text.KNOWN_CLIP_VERSIONS[version])
        folder = Path(version) if Path(version).is_absolute() else where.parent / version
        if (folder / "config.json").is_file():
            import json

            raw = json.loads((folder / "config.json").read_text())
            return text.clip_spec({k: raw[k] for k in text.TEXT_CONFIG_FIELDS if k in raw})
        raise ModelError(f"{where}: cond_stage_config.params.version = {version!r} is neither a known text "
                         f"encoder ({', '.join(text.KNOWN_CLIP_VERSIONS)}) nor a folder with a config.json")
    arch = params.get("arch", "ViT-H-14")
    if arch not in text.KNOWN_OPENCLIP_ARCHS:
        raise ModelError(f"{where}: cond_stage_config.params.arch = {arch!r} is not supported; "
                         f"allowed: {', '.join(text.KNOWN_OPENCLIP_ARCHS)}")
    return text.openclip_spec(text.KNOWN_OPENCLIP_ARCHS[arch], params.get("layer", "penultimate"))


def load_config(path: str | Path) -> LDMSpec:
    """Read and check an LDM yaml (v1-inference.yaml and friends)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model config not found: {path}")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a readable yaml config ({e})") from e
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: not an LDM config (expected a mapping with a 'model' key)")
    _check_target(cfg, "model.target", (_LDM,), path)
    p = _get(cfg, "model.params", path)
    _check_target(p, "unet_config.target", (_UNET,), path)
    _check_target(p, "first_stage_config.target", (_VAE,), path)
    if p.get("beta_schedule", "linear") != "linear":
        raise ModelError(f"{path}: beta_schedule = {p['beta_schedule']!r} is not supported; allowed: 'linear'")
    parameterization = p.get("parameterization", "eps")
    if parameterization not in ("eps", "v"):
        raise ModelError(f"{path}: parameterization = {parameterization!r}; allowed: 'eps', 'v'")
    if p.get("conditioning_key", "crossattn") != "crossattn":
        raise ModelError(f"{path}: conditioning_key = {p['conditioning_key']!r} is not supported "
                         "(inpainting/depth models); allowed: 'crossattn'")
    scale = float(p.get("scale_factor", 1.0))
    image_size = int(p.get("image_size", 64))
    return LDMSpec(path=path, parameterization=parameterization,
                   linear_start=float(p.get("linear_start", 1e-4)), linear_end=float(p.get("linear_end", 2e-2)),
                   timesteps=int(p.get("timesteps", 1000)), scale_factor=scale, image_size=image_size,
                   unet=unet_config(_get(p, "unet_config.params", path), image_size),
                   vae=vae_config(_get(p, "first_stage_config.params.ddconfig", path), scale),
                   text=_text_spec(_get(p, "cond_stage_config", path), path))


_ATTN2_K = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def detect_config_name(state_dict: dict, checkpoint_name: str = "") -> str:
    """v1-inference.yaml, v2-inference.yaml or v2-inference-v.yaml, from the state dict (and the file name)."""
    openclip = any(k.startswith("cond_stage_model.model.") for k in state_dict)
    context = state_dict[_ATTN2_K].shape[1] if _ATTN2_K in state_dict else None
    if not openclip and context in (768, None) and any(k.startswith("cond_stage_model.transformer.")
                                                       for k in state_dict):
        name, why = "v1-inference.yaml", "CLIP ViT-L text encoder keys, 768-wide cross-attention"
    elif openclip or context == 1024:
        stem = Path(checkpoint_name).stem
        if any(stem.startswith(n) for n in V_PREDICTION_NAMES):
            name, why = "v2-inference-v.yaml", f"OpenCLIP keys and a 768-v file name ({stem})"
        else:
            name, why = "v2-inference.yaml", ("OpenCLIP keys; eps-prediction assumed (a checkpoint does not "
                                              "store it: for a 768-v model set model_config='v2-inference-v.yaml')")
    else:
        raise ModelError(f"cannot tell the model family of {checkpoint_name or 'the checkpoint'} from its keys "
                         f"(cross-attention context width {context}); set model_config to one of "
                         f"{', '.join(CONFIG_NAMES)} or 'custom' with custom_config_path")
    log.info("model_config: detected %s (%s)", name, why)
    print(f"model_config: detected {name} ({why})")
    return name


def installed_configs_dir() -> Path | None:
    """Where a wheel install put the configs (pyproject's ``[tool.setuptools.data-files]``), or None.

    Found through the installed distribution's RECORD, so any install scheme (venv, --user, /usr/local)
    works; then <install dir>/share/... (``pip install --target`` records wrong paths) and sys.prefix/share.
    """
    import sys
    from importlib import metadata

    candidates = []
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        files = []
    candidates += [Path(str(f.locate())).parent for f in files if f.name in CONFIG_NAMES]
    candidates += [base / "share" / DISTRIBUTION / "configs" for base in (CONFIGS_DIR.parent, Path(sys.prefix))]
    for folder in candidates:
        if all((folder / name).is_file() for name in CONFIG_NAMES):
            return folder.resolve()
    return None


def config_dirs(configs_path: str | Path | None = None) -> list[Path]:
    """Folders searched for a config name, in order: configs_path, the checkout's configs/, the installed data."""
    dirs = [Path(configs_path)] if configs_path else []
    dirs.append(CONFIGS_DIR)
    installed = installed_configs_dir()
    if installed is not None:
        dirs.append(installed)
    return dirs


def config_path(name: str, configs_path: str | Path | None = None) -> Path:
    """A config name looked up in configs_path, then in the checkout's configs/, then in the installed copy."""
    dirs = config_dirs(configs_path)
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"model_config = {name!r} not found in {', '.join(str(d) for d in dirs)}; "
                     f"allowed: {', '.join(CONFIG_NAMES)}, or 'custom' with custom_config_path")
