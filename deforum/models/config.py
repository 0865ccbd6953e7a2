"""LDM yaml configs as data: read with omegaconf, checked, and turned into module configs.

A config's ``target`` names are compared against the known LDM classes and never imported (v0.6's
``instantiate_from_config`` imported whatever a yaml named; spec 11.3). When no config is given, the
family (SD1, SD2 eps, SD2 v) is detected from the state dict (``deforum.models.sd.detect_config_name``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deforum.errors import ModelError
from deforum.models import limits, text

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
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict) or part not in value:
            if default is not ...:
                return default
            if value is not None and not isinstance(value, dict):
                raise limits.fail(where, ".".join(parts[:i]) or "the top level", value, "a mapping of keys to values")
            raise ModelError(f"{where}: the LDM config lacks '{dotted}'")
        value = value[part]
    return value


def _check_target(node: Any, dotted: str, allowed: tuple[str, ...], where: Path) -> str:
    target = _get(node, dotted, where)
    if target not in allowed:
        raise ModelError(f"{where}: {dotted} = {target!r} is not supported; allowed: {', '.join(allowed)}")
    return target


def _int(node: dict, dotted: str, where: Path, low: int, high: int, default: Any = ...) -> int:
    return limits.integer(_get(node, dotted, where, default), where, dotted, low, high)


def unet_config(p: Any, image_size: int, where: Path | str = "the LDM config",
                prefix: str = "model.params.unet_config.params") -> dict:
    """diffusers UNet2DConditionModel config from the LDM unet_config params (SD 1.x / 2.x), checked."""
    p = limits.mapping(p, where, prefix)

    def key(name: str) -> str:
        return f"{prefix}.{name}"

    def need(name: str) -> Any:
        if name not in p:
            raise ModelError(f"{where}: the LDM config lacks '{key(name)}'")
        return p[name]

    model_channels = limits.integer(need("model_channels"), where, key("model_channels"), 1, limits.MAX_CHANNELS)
    mult = limits.integers(need("channel_mult"), where, key("channel_mult"), 1, limits.MAX_CHANNELS)
    channels = [model_channels * m for m in mult]
    if max(channels) > limits.MAX_CHANNELS:
        raise limits.fail(where, key("channel_mult"), mult, f"factors that keep model_channels * factor <= "
                                                          f"{limits.MAX_CHANNELS} (model_channels is {model_channels})")
    attn_levels = set(limits.integers(need("attention_resolutions"), where, key("attention_resolutions"), 1,
                                      2 ** limits.MAX_LEVELS, min_len=0))
    down, up, resolution = [], [], 1
    for i in range(len(channels)):
        down.append("CrossAttnDownBlock2D" if resolution in attn_levels else "DownBlock2D")
        resolution *= 2 if i < len(channels) - 1 else 1
    for _ in channels:
        up.append("CrossAttnUpBlock2D" if resolution in attn_levels else "UpBlock2D")
        resolution //= 2
    num_heads = p.get("num_heads", -1)
    if num_heads not in (None, -1):
        # diffusers' `attention_head_dim` is the head *count* for SD checkpoints
        heads: int | list[int] = limits.integer(num_heads, where, key("num_heads"), 1, limits.MAX_HEADS)
        if any(c % heads for c in channels):
            raise limits.fail(where, key("num_heads"), num_heads, f"a divisor of every block width {channels}")
    else:
        head_channels = limits.integer(need("num_head_channels"), where, key("num_head_channels"), 1,
                                       limits.MAX_HEAD_CHANNELS)
        if any(c % head_channels for c in channels):
            raise limits.fail(where, key("num_head_channels"), head_channels,
                              f"a divisor of every block width {channels}")
        heads = [c // head_channels for c in channels]
    depth = p.get("transformer_depth", 1)
    if isinstance(depth, (list, tuple)):
        depth = limits.integers(depth, where, key("transformer_depth"), 1, limits.MAX_BLOCKS,
                                min_len=len(channels), max_len=len(channels))
    else:
        depth = limits.integer(depth, where, key("transformer_depth"), 1, limits.MAX_BLOCKS)
    linear = p.get("use_linear_in_transformer", False)
    if not isinstance(linear, bool):
        raise limits.fail(where, key("use_linear_in_transformer"), linear, "true or false")
    return dict(sample_size=image_size,
                in_channels=limits.integer(need("in_channels"), where, key("in_channels"), 1, limits.MAX_IO_CHANNELS),
                out_channels=limits.integer(need("out_channels"), where, key("out_channels"), 1,
                                            limits.MAX_IO_CHANNELS),
                down_block_types=down, up_block_types=up, block_out_channels=channels,
                layers_per_block=limits.integer(need("num_res_blocks"), where, key("num_res_blocks"), 1,
                                                limits.MAX_BLOCKS),
                cross_attention_dim=limits.integer(need("context_dim"), where, key("context_dim"), 1,
                                                   limits.MAX_CHANNELS),
                attention_head_dim=heads, use_linear_projection=linear, transformer_layers_per_block=depth)


def vae_config(dd: Any, scale_factor: float, where: Path | str = "the LDM config",
               prefix: str = "model.params.first_stage_config.params.ddconfig") -> dict:
    """diffusers AutoencoderKL config from the LDM first_stage_config ddconfig, checked."""
    dd = limits.mapping(dd, where, prefix)

    def value(name: str, low: int, high: int) -> int:
        if name not in dd:
            raise ModelError(f"{where}: the LDM config lacks '{prefix}.{name}'")
        return limits.integer(dd[name], where, f"{prefix}.{name}", low, high)

    ch = value("ch", 1, limits.MAX_CHANNELS)
    if "ch_mult" not in dd:
        raise ModelError(f"{where}: the LDM config lacks '{prefix}.ch_mult'")
    mult = limits.integers(dd["ch_mult"], where, f"{prefix}.ch_mult", 1, limits.MAX_CHANNELS)
    channels = [ch * m for m in mult]
    if max(channels) > limits.MAX_CHANNELS:
        raise limits.fail(where, f"{prefix}.ch_mult", mult, f"factors that keep ch * factor <= {limits.MAX_CHANNELS} "
                                                           f"(ch is {ch})")
    return dict(sample_size=value("resolution", 1, limits.MAX_IMAGE_RESOLUTION),
                in_channels=value("in_channels", 1, limits.MAX_IO_CHANNELS),
                out_channels=value("out_ch", 1, limits.MAX_IO_CHANNELS),
                down_block_types=["DownEncoderBlock2D"] * len(channels),
                up_block_types=["UpDecoderBlock2D"] * len(channels), block_out_channels=channels,
                latent_channels=value("z_channels", 1, limits.MAX_IO_CHANNELS),
                layers_per_block=value("num_res_blocks", 1, limits.MAX_BLOCKS),
                scaling_factor=scale_factor)


def _text_spec(cond: Any, where: Path) -> text.TextEncoderSpec:
    key = "model.params.cond_stage_config"
    cond = limits.mapping(cond, where, key)
    target = _check_target(cond, "target", (_CLIP, _OPENCLIP), where)
    params = limits.mapping(cond.get("params") or {}, where, f"{key}.params")
    if target == _CLIP:
        version = limits.string(params.get("version", "openai/clip-vit-large-patch14"), where,
                                f"{key}.params.version")
        if version in text.KNOWN_CLIP_VERSIONS:
            return text.clip_spec(text.KNOWN_CLIP_VERSIONS[version])
        folder = Path(version) if Path(version).is_absolute() else where.parent / version
        if (folder / "config.json").is_file():
            return text.clip_spec(text.text_config_sizes(folder / "config.json"))
        raise ModelError(f"{where}: cond_stage_config.params.version = {version!r} is neither a known text "
                         f"encoder ({', '.join(text.KNOWN_CLIP_VERSIONS)}) nor a folder with a config.json")
    arch = limits.string(params.get("arch", "ViT-H-14"), where, f"{key}.params.arch")
    if arch not in text.KNOWN_OPENCLIP_ARCHS:
        raise ModelError(f"{where}: cond_stage_config.params.arch = {arch!r} is not supported; "
                         f"allowed: {', '.join(text.KNOWN_OPENCLIP_ARCHS)}")
    layer = limits.string(params.get("layer", "penultimate"), where, f"{key}.params.layer")
    return text.openclip_spec(text.KNOWN_OPENCLIP_ARCHS[arch], layer)


def read_yaml(path: Path) -> Any:
    """A yaml file as plain data, read with omegaconf's safe loader (no tags run, aliases bounded).

    Any failure (a python tag, an alias bomb, deep nesting, a bad interpolation, not UTF-8, too big) is a
    ModelError naming the file.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size > limits.MAX_CONFIG_BYTES:
        raise ModelError(f"{path}: {size} bytes; a model config may have at most {limits.MAX_CONFIG_BYTES}")
    try:
        _check_yaml_shape(path)
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError, OSError, ValueError, TypeError, RecursionError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a readable yaml config ({type(e).__name__}: {reason})") from None


def _check_yaml_shape(path: Path) -> None:
    """Count aliases and nesting in the yaml's event stream, before anything is built from it: an alias bomb
    or absurd nesting is refused whatever omegaconf's version guards (2.3 guards neither)."""
    import yaml

    aliases = depth = 0
    with open(path, "rb") as stream:
        for event in yaml.parse(stream, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > limits.MAX_YAML_ALIASES:
                    raise ValueError(f"more than {limits.MAX_YAML_ALIASES} aliases (a model config uses none)")
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > limits.MAX_YAML_DEPTH:
                    raise ValueError(f"nested more than {limits.MAX_YAML_DEPTH} deep")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1


def load_config(path: str | Path) -> LDMSpec:
    """Read and check an LDM yaml (v1-inference.yaml and friends): every value it is built from."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model config not found: {path}")
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: not an LDM config (expected a mapping with a 'model' key)")
    _check_target(cfg, "model.target", (_LDM,), path)
    p = limits.mapping(_get(cfg, "model.params", path), path, "model.params")
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
    scale = limits.number(p.get("scale_factor", 1.0), path, "model.params.scale_factor", 0.0,
                          limits.MAX_SCALE_FACTOR, low_open=True)
    image_size = _int(p, "image_size", path, 1, limits.MAX_LATENT_SIZE, 64)
    linear_start = limits.number(p.get("linear_start", 1e-4), path, "model.params.linear_start", 0.0, 1.0,
                                 low_open=True, high_open=True)
    linear_end = limits.number(p.get("linear_end", 2e-2), path, "model.params.linear_end", linear_start, 1.0,
                               high_open=True)
    timesteps = limits.integer(p.get("timesteps", 1000), path, "model.params.timesteps", 2, limits.MAX_TIMESTEPS)
    return LDMSpec(path=path, parameterization=parameterization, linear_start=linear_start,
                   linear_end=linear_end, timesteps=timesteps, scale_factor=scale, image_size=image_size,
                   unet=unet_config(_get(p, "unet_config.params", path), image_size, path),
                   vae=vae_config(_get(p, "first_stage_config.params.ddconfig", path), scale, path),
                   text=_text_spec(_get(p, "cond_stage_config", path), path))


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
