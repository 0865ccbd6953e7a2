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


# -- sizes read from a checkpoint's keys (no yaml) ---------------------------------------------------------------

UNET_KEY_PREFIX = "model.diffusion_model."
VAE_KEY_PREFIX = "first_stage_model."
HEAD_CHANNELS = 64  # attention head width of SD 2.x / SDXL UNets and of every CLIP / OpenCLIP text tower
SD1_HEADS = 8  # SD 1.x UNets use a fixed head count


def _shape(sd: Any, key: str, where: str) -> tuple[int, ...]:
    if key not in sd:
        raise ModelError(f"{where}: the checkpoint lacks '{key}', which its model family always has; the file is "
                         "incomplete or not of this family")
    return tuple(int(n) for n in sd[key].shape)


def _count(sd: Any, pattern: str) -> int:
    """How many consecutive indices i have ``pattern.format(i)`` in sd."""
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def unet_params_from_keys(sd: Any, where: str, heads: str = "channels", prefix: str = UNET_KEY_PREFIX) -> dict:
    """LDM ``unet_config.params`` read from an openaimodel / SGM UNet's key names and shapes.

    A state dict does not record the attention head count: ``heads`` 'channels' gives heads of 64 channels
    (SD 2.x, SDXL), 'sd1' SD 1.x's 8 heads. ``adm_in_channels`` is set when the UNet has a ``label_emb``
    (SDXL's pooled-text-and-size embedding).
    """
    first = _shape(sd, f"{prefix}input_blocks.0.0.weight", where)
    mc, in_ch = first[0], first[1]
    out_ch = _shape(sd, f"{prefix}out.2.weight", where)[0]
    mult: list[int] = []
    attn_levels: list[int] = []
    depth: list[int] = []
    nrb: int | None = None
    idx, count, level, context, linear = 1, 0, 0, None, False
    while True:
        block = f"{prefix}input_blocks.{idx}."
        if f"{block}0.op.weight" in sd:
            nrb = count if nrb is None else nrb
            if count != nrb:
                raise ModelError(f"{where}: UNet levels have different numbers of residual blocks ({nrb}, {count})")
            level, count, idx = level + 1, 0, idx + 1
            continue
        if f"{block}0.in_layers.2.weight" not in sd:
            break
        cout = _shape(sd, f"{block}0.in_layers.2.weight", where)[0]
        if count == 0:
            if cout % mc:
                raise ModelError(f"{where}: UNet level {level} is {cout} channels wide, not a multiple of {mc}")
            mult.append(cout // mc)
            depth.append(1)
        if f"{block}1.proj_in.weight" in sd:
            if level not in attn_levels:
                attn_levels.append(level)
            depth[level] = _count(sd, block + "1.transformer_blocks.{}.norm1.weight")
            linear = len(_shape(sd, f"{block}1.proj_in.weight", where)) == 2
            context = _shape(sd, f"{block}1.transformer_blocks.0.attn2.to_k.weight", where)[1]
        count, idx = count + 1, idx + 1
    if not mult:
        raise ModelError(f"{where}: no UNet blocks found under '{prefix}input_blocks.'")
    nrb = count if nrb is None else nrb
    mid = f"{prefix}middle_block.1."
    mid_depth = _count(sd, mid + "transformer_blocks.{}.norm1.weight")
    if context is None:
        context = _shape(sd, f"{mid}transformer_blocks.0.attn2.to_k.weight", where)[1]
        linear = len(_shape(sd, f"{mid}proj_in.weight", where)) == 2
    last = len(mult) - 1
    if last in attn_levels and mid_depth != depth[last]:
        raise ModelError(f"{where}: the middle block has {mid_depth} transformer layers and the deepest level "
                         f"{depth[last]}; diffusers' UNet needs them equal")
    depth[last] = mid_depth if mid_depth else depth[last]
    params: dict[str, Any] = dict(in_channels=in_ch, out_channels=out_ch, model_channels=mc, channel_mult=mult,
                                  num_res_blocks=nrb, attention_resolutions=[2 ** lv for lv in attn_levels],
                                  transformer_depth=depth, context_dim=context, use_linear_in_transformer=linear)
    if heads == "sd1":
        params["num_heads"] = SD1_HEADS
    else:
        params["num_head_channels"] = min(HEAD_CHANNELS, mc)
    if f"{prefix}label_emb.0.0.weight" in sd:
        params["adm_in_channels"] = _shape(sd, f"{prefix}label_emb.0.0.weight", where)[1]
    return params


def vae_ddconfig_from_keys(sd: Any, where: str, prefix: str = VAE_KEY_PREFIX) -> dict:
    """LDM ``first_stage_config.params.ddconfig`` read from an AutoencoderKL's key names and shapes."""
    conv_in = _shape(sd, f"{prefix}encoder.conv_in.weight", where)
    ch = conv_in[0]
    levels = _count(sd, prefix + "encoder.down.{}.block.0.conv1.weight")
    mult = []
    for i in range(levels):
        width = _shape(sd, f"{prefix}encoder.down.{i}.block.0.conv1.weight", where)[0]
        if width % ch:
            raise ModelError(f"{where}: VAE level {i} is {width} channels wide, not a multiple of {ch}")
        mult.append(width // ch)
    if not mult:
        raise ModelError(f"{where}: no VAE encoder blocks found under '{prefix}encoder.down.'")
    return dict(double_z=True, z_channels=_shape(sd, f"{prefix}encoder.conv_out.weight", where)[0] // 2,
                resolution=256, in_channels=conv_in[1], out_ch=_shape(sd, f"{prefix}decoder.conv_out.weight", where)[0],
                ch=ch, ch_mult=mult, num_res_blocks=_count(sd, prefix + "encoder.down.0.block.{}.conv1.weight"),
                attn_resolutions=[], dropout=0.0)


def clip_sizes_from_keys(sd: Any, prefix: str, where: str) -> dict:
    """CLIPTextConfig sizes of a transformers-named CLIP text tower under prefix (SD 1.x, SDXL's first)."""
    if f"{prefix}text_model.embeddings.token_embedding.weight" in sd:
        prefix += "text_model."
    vocab, hidden = _shape(sd, f"{prefix}embeddings.token_embedding.weight", where)
    layers = _count(sd, prefix + "encoder.layers.{}.mlp.fc1.weight")
    return text.check_text_sizes(dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
        intermediate_size=_shape(sd, f"{prefix}encoder.layers.0.mlp.fc1.weight", where)[0],
        num_attention_heads=max(1, hidden // HEAD_CHANNELS),
        max_position_embeddings=_shape(sd, f"{prefix}embeddings.position_embedding.weight", where)[0],
        hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=hidden), where)


def openclip_sizes_from_keys(sd: Any, prefix: str, where: str) -> dict:
    """CLIPTextConfig sizes of an OpenCLIP text tower under prefix (SD 2.x, SDXL's bigG)."""
    vocab, hidden = _shape(sd, f"{prefix}token_embedding.weight", where)
    projection = sd.get(f"{prefix}text_projection") if hasattr(sd, "get") else None
    return text.check_text_sizes(dict(
        vocab_size=vocab, hidden_size=hidden,
        num_hidden_layers=_count(sd, prefix + "transformer.resblocks.{}.mlp.c_fc.weight"),
        intermediate_size=_shape(sd, f"{prefix}transformer.resblocks.0.mlp.c_fc.weight", where)[0],
        num_attention_heads=max(1, hidden // HEAD_CHANNELS),
        max_position_embeddings=_shape(sd, f"{prefix}positional_embedding", where)[0], hidden_act="gelu",
        layer_norm_eps=1e-5, projection_dim=int(projection.shape[1]) if projection is not None else hidden), where)


def spec_from_keys(sd: Any, name: str, text_kind: str, parameterization: str = "eps",
                   scale_factor: float = 0.18215) -> LDMSpec:
    """An ``LDMSpec`` for an SD 1.x ('clip') or SD 2.x ('openclip') checkpoint whose sizes are not those of the
    bundled yamls (a tiny or unusual model), read from its keys; ``name`` names the checkpoint in messages."""
    where = f"{name} (sizes read from its keys)"
    unet_params = unet_params_from_keys(sd, where, heads="sd1" if text_kind == "clip" else "channels")
    if text_kind == "clip":
        text_spec = text.clip_spec(clip_sizes_from_keys(sd, "cond_stage_model.transformer.", where))
    else:
        text_spec = text.openclip_spec(openclip_sizes_from_keys(sd, "cond_stage_model.model.", where))
    image_size = 64
    return LDMSpec(path=Path(where), parameterization=parameterization, linear_start=0.00085, linear_end=0.012,
                   timesteps=1000, scale_factor=scale_factor, image_size=image_size,
                   unet=unet_config(unet_params, image_size, where),
                   vae=vae_config(vae_ddconfig_from_keys(sd, where), scale_factor, where), text=text_spec)
