"""Stable Diffusion 1.x / 2.x in the diffusers folder layout (a hub repo id or a local folder), loaded safely.

A diffusers folder holds ``model_index.json`` and one subfolder per part: ``unet/``, ``vae/``,
``text_encoder/`` (config.json + weights), ``tokenizer/`` and ``scheduler/scheduler_config.json``.
The networks are built from their configs and given the folder's weights through the same strict path as a
single-file checkpoint: every weight must be present with the right shape (transformers' ``from_pretrained``
would silently initialise a missing text-encoder weight at random). Weights are read from ``.safetensors``;
a part that only has a pickle ``.bin`` goes through the restricted unpickler of ``safe_load``, so nothing in
the folder ever executes.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from deforum.errors import ModelError
from deforum.models import convert, limits, safe_load
from deforum.models.ldm import LatentDiffusionModel
from deforum.models.text import BOS_ID, EOS_ID, Tokenizer, check_text_sizes

log = logging.getLogger(__name__)

PARTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}
SDXL_PARTS = {**PARTS, "text_encoder_2": "model"}  # SDXL's second text encoder (OpenCLIP bigG, with projection)
# What snapshot_download fetches: configs, the full-precision safetensors weights, the tokenizer files (an SD
# 1.x / 2.x repo has no text_encoder_2/ or tokenizer_2/: those patterns match nothing there).
HUB_PATTERNS = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/*", "tokenizer_2/*",
                *(f"{part}/config.json" for part in SDXL_PARTS),
                *(f"{part}/{stem}.safetensors" for part, stem in SDXL_PARTS.items()),
                *(f"{part}/{stem}.safetensors.index.json" for part, stem in SDXL_PARTS.items()),
                *(f"{part}/{stem}-*-of-*.safetensors" for part, stem in SDXL_PARTS.items())]
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v"}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
VOCAB_SIZE = 49408


def is_diffusers_folder(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def looks_like_repo_id(name: str) -> bool:
    """'owner/name' with no checkpoint suffix: a Hugging Face repo id rather than a file name."""
    return bool(_REPO_ID.fullmatch(name)) and not name.endswith((".ckpt", ".safetensors", ".bin", ".pt"))


def repo_folder(repo_id: str, models_path: str | Path) -> Path:
    """Where a hub repo's diffusers folders go: models_path/<repo name> (as the depth models do)."""
    return Path(models_path) / repo_id.split("/")[-1]


def _read_json(path: Path) -> dict:
    """A JSON object of the folder (bounded size, any failure a ModelError naming the file)."""
    try:
        return limits.read_json(path)
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: a diffusers folder needs model_index.json, unet/, vae/, "
                         "text_encoder/ (config.json + weights), tokenizer/ and scheduler/scheduler_config.json") \
            from None


def _int_or_list(value: Any, where: Path, key: str, low: int, high: int) -> int | list[int]:
    if isinstance(value, (list, tuple)):
        return limits.integers(value, where, key, low, high)
    return limits.integer(value, where, key, low, high)


def check_unet_config(cfg: dict, where: Path) -> None:
    """The sizes of a diffusers UNet config.json, checked before the UNet is built."""
    levels = limits.integers(cfg.get("block_out_channels", [320, 640, 1280, 1280]), where, "block_out_channels", 1,
                             limits.MAX_CHANNELS)
    _int_or_list(cfg.get("sample_size", 64), where, "sample_size", 1, limits.MAX_LATENT_SIZE)
    for key in ("in_channels", "out_channels"):
        limits.integer(cfg.get(key, 4), where, key, 1, limits.MAX_IO_CHANNELS)
    _int_or_list(cfg.get("layers_per_block", 2), where, "layers_per_block", 1, limits.MAX_BLOCKS)
    _int_or_list(cfg.get("cross_attention_dim", 1280), where, "cross_attention_dim", 1, limits.MAX_CHANNELS)
    for key in ("attention_head_dim", "num_attention_heads"):
        if cfg.get(key) is not None:
            _int_or_list(cfg[key], where, key, 1, limits.MAX_HEAD_CHANNELS)
    if cfg.get("transformer_layers_per_block") is not None:
        _int_or_list(cfg["transformer_layers_per_block"], where, "transformer_layers_per_block", 1, limits.MAX_BLOCKS)
    for key in ("down_block_types", "up_block_types"):
        if key in cfg and (not isinstance(cfg[key], (list, tuple)) or len(cfg[key]) != len(levels)
                           or not all(isinstance(t, str) for t in cfg[key])):
            raise limits.fail(where, key, cfg[key], f"a list of {len(levels)} block type names "
                                                    "(one per block_out_channels entry)")


def check_vae_config(cfg: dict, where: Path) -> None:
    """The sizes of a diffusers AutoencoderKL config.json, checked before the VAE is built."""
    levels = limits.integers(cfg.get("block_out_channels", [64]), where, "block_out_channels", 1,
                             limits.MAX_CHANNELS)
    limits.integer(cfg.get("sample_size", 32), where, "sample_size", 1, limits.MAX_IMAGE_RESOLUTION)
    for key, default in (("in_channels", 3), ("out_channels", 3), ("latent_channels", 4)):
        limits.integer(cfg.get(key, default), where, key, 1, limits.MAX_IO_CHANNELS)
    limits.integer(cfg.get("layers_per_block", 1), where, "layers_per_block", 1, limits.MAX_BLOCKS)
    limits.number(cfg.get("scaling_factor", 0.18215), where, "scaling_factor", 0.0, limits.MAX_SCALE_FACTOR,
                  low_open=True)
    for key in ("down_block_types", "up_block_types"):
        if key in cfg and (not isinstance(cfg[key], (list, tuple)) or len(cfg[key]) != len(levels)
                           or not all(isinstance(t, str) for t in cfg[key])):
            raise limits.fail(where, key, cfg[key], f"a list of {len(levels)} block type names")


def is_sdxl_folder(folder: Path, index: dict | None = None) -> bool:
    """An SDXL pipeline folder: a second text encoder in model_index.json or on disk."""
    if index is None:
        index = _read_json(folder / "model_index.json") if (folder / "model_index.json").is_file() else {}
    return "text_encoder_2" in index or (folder / "text_encoder_2").is_dir()


def missing_files(folder: Path) -> list[str]:
    """The files a complete diffusers SD / SDXL folder needs that folder lacks (empty when it can be loaded)."""
    parts = SDXL_PARTS if is_sdxl_folder(folder) else PARTS
    need = ["model_index.json", "scheduler/scheduler_config.json", *(f"{part}/config.json" for part in parts)]
    missing = [n for n in need if not (folder / n).is_file()]
    for part, stem in parts.items():
        if not (folder / part).is_dir() or not _weight_files(folder / part, stem):
            missing.append(f"{part}/{stem}.safetensors")
    return missing


def _weight_files(sub: Path, stem: str) -> list[Path]:
    """The weight files of one part: safetensors (single or sharded) first; a pickle .bin only as a fallback."""
    index = sub / f"{stem}.safetensors.index.json"
    if index.is_file():
        weight_map = limits.mapping(_read_json(index).get("weight_map", {}), index, "weight_map")
        shards = sorted(set(weight_map.values()), key=str)
        if any(not isinstance(s, str) or "/" in s or "\\" in s or s.startswith(".") for s in shards):
            raise ModelError(f"{index}: shard names must be plain file names, got {shards}")
        return [sub / s for s in shards]
    for name in (f"{stem}.safetensors", f"{stem}.bin"):
        if (sub / name).is_file():
            return [sub / name]
    return []


def read_weights(sub: Path, stem: str) -> dict[str, torch.Tensor]:
    """All tensors of one part (unet/, vae/, text_encoder/), read without executing anything."""
    files = _weight_files(sub, stem)
    if not files:
        raise ModelError(f"{sub} has no weights: put {stem}.safetensors there")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        if path.suffix == ".bin":
            log.warning("%s: pickle weights, read with the restricted unpickler (prefer .safetensors)", path)
        weights.update(safe_load.load_state_dict(path))
    return weights


def alphas_cumprod_from_scheduler(cfg: dict, where: str | Path = "scheduler_config") -> torch.Tensor:
    """alphas_cumprod of a diffusers scheduler config, computed in float64 and returned as float32.

    diffusers' 'scaled_linear' (betas linear in sqrt space) is LDM's 'linear' schedule, the one SD was
    trained with; diffusers' 'linear' is linear in beta itself.
    """
    if cfg.get("rescale_betas_zero_snr"):
        raise ModelError(f"{where}: rescale_betas_zero_snr = true is not supported")
    n = limits.integer(cfg.get("num_train_timesteps", 1000), where, "num_train_timesteps", 2, limits.MAX_TIMESTEPS)
    start = limits.number(cfg.get("beta_start", 0.0001), where, "beta_start", 0.0, 1.0, low_open=True,
                          high_open=True)
    end = limits.number(cfg.get("beta_end", 0.02), where, "beta_end", start, 1.0, high_open=True)
    schedule = cfg.get("beta_schedule", "linear")
    if cfg.get("trained_betas") is not None:
        trained = cfg["trained_betas"]
        if not isinstance(trained, (list, tuple)) or not 2 <= len(trained) <= limits.MAX_TIMESTEPS:
            raise limits.fail(where, "trained_betas", trained, f"a list of 2 to {limits.MAX_TIMESTEPS} numbers")
        betas = torch.tensor([limits.number(b, where, f"trained_betas[{i}]", 0.0, 1.0, high_open=True)
                              for i, b in enumerate(trained)], dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    elif schedule == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    else:
        raise ModelError(f"{where}: beta_schedule = {schedule!r} is not supported; "
                         "allowed: 'scaled_linear' (Stable Diffusion), 'linear'")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def parameterization_from_scheduler(cfg: dict) -> str:
    """'eps' or 'v' from the scheduler's prediction_type."""
    kind = cfg.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ModelError(f"scheduler_config: prediction_type = {kind!r} is not supported; "
                         f"allowed: {', '.join(PREDICTION_TYPES)}")
    return PREDICTION_TYPES[kind]


def _pad_id(folder: Path, tokenizer: str = "tokenizer") -> int:
    """SD1 pads with <|endoftext|> (49407), SD2's OpenCLIP tokenizer with '!' (id 0), as the folder says."""
    pad = None
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / tokenizer / name
        if path.is_file():
            pad = _read_json(path).get("pad_token")
            if pad is not None:
                break
    if isinstance(pad, dict):
        pad = pad.get("content")
    vocab_file = folder / tokenizer / "vocab.json"
    vocab = _read_json(vocab_file) if vocab_file.is_file() else {}
    if vocab and len(vocab) != VOCAB_SIZE:
        log.warning("%s has %d tokens, not CLIP's %d: added tokens are not used", vocab_file, len(vocab), VOCAB_SIZE)
    if pad in (None, "<|endoftext|>"):
        return EOS_ID
    if pad == "<|startoftext|>":
        return BOS_ID
    if pad == "!":
        return 0
    if isinstance(pad, str) and pad in vocab:
        return limits.integer(vocab[pad], vocab_file, repr(pad), 0, VOCAB_SIZE - 1)
    raise ModelError(f"{folder / tokenizer}: pad_token {pad!r} is not a CLIP token; "
                     "allowed: '<|endoftext|>' (SD 1.x) or '!' (SD 2.x)")


def _check_family(folder: Path, index: dict, unet_cfg: dict) -> None:
    """SD 1.x/2.x and SDXL text-to-image folders only: no refiner, no other addition embeddings, no
    inpainting/depth UNets."""
    sdxl = is_sdxl_folder(folder, index)
    kind = unet_cfg.get("addition_embed_type")
    text_encoder = index.get("text_encoder")
    refiner = bool(index.get("requires_aesthetics_score")) or (isinstance(text_encoder, list) and bool(text_encoder)
                                                               and text_encoder[0] is None)
    if (sdxl and (kind != "text_time" or refiner)) or (not sdxl and kind):
        raise ModelError(f"{folder} is an SDXL-type model ({index.get('_class_name')}) this package does not "
                         "support (the refiner, or another addition embedding); supported: Stable Diffusion "
                         "1.x / 2.x and SDXL base / fine-tunes with unet addition_embed_type 'text_time'")
    if unet_cfg.get("in_channels", 4) != 4:
        raise ModelError(f"{folder}: the UNet takes {unet_cfg.get('in_channels')} input channels (an inpainting "
                         "or depth model); only 4-channel text-to-image models are supported")


def build_modules(folder: Path) -> dict[str, torch.nn.Module]:
    """Empty UNet, VAE and text encoder from the folder's config.json files, on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_path = folder / "text_encoder" / "config.json"
    text_cfg = _read_json(text_path)
    if text_cfg.get("model_type", "clip_text_model") != "clip_text_model":
        raise ModelError(f"{folder / 'text_encoder'}: model_type = {text_cfg.get('model_type')!r}; "
                         "allowed: 'clip_text_model'")
    check_text_sizes(text_cfg, text_path)
    unet_path, vae_path = folder / "unet" / "config.json", folder / "vae" / "config.json"
    unet_cfg, vae_cfg = _read_json(unet_path), _read_json(vae_path)
    check_unet_config(unet_cfg, unet_path)
    check_vae_config(vae_cfg, vae_path)
    with torch.device("meta"):
        return convert.modules_from_builders((
            ("unet", unet_path, lambda: UNet2DConditionModel.from_config(unet_cfg)),
            ("vae", vae_path, lambda: AutoencoderKL.from_config(vae_cfg)),
            ("text", text_path, lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(
                str(folder / "text_encoder"), local_files_only=True)))))


def _text_module(folder: Path, sub: str, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = folder / sub / "config.json"
    cfg = _read_json(path)
    if cfg.get("model_type", "clip_text_model") != "clip_text_model":
        raise ModelError(f"{folder / sub}: model_type = {cfg.get('model_type')!r}; allowed: 'clip_text_model'")
    check_text_sizes(cfg, path)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return path, lambda: cls(CLIPTextConfig.from_pretrained(str(folder / sub), local_files_only=True))


def _fit_text(module: torch.nn.Module, weights: dict) -> dict:
    """Text weights with the module's 'text_model.' prefix (or without), whichever transformers saved."""
    from deforum.models.sdxl import _fit_text_keys

    return _fit_text_keys(module, {k: v for k, v in weights.items() if not k.endswith("position_ids")})


def load_sdxl_folder(folder: Path, index: dict, dtype: torch.dtype):
    """An ``SDXLModel`` from a diffusers SDXL folder (both text encoders; tokenizer_2 pads with '!')."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from deforum.models.sdxl import SDXLModel, assign_sdxl_weights

    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path)
    alphas_cumprod = alphas_cumprod_from_scheduler(scheduler, scheduler_path)
    parameterization = parameterization_from_scheduler(scheduler)
    pads = (_pad_id(folder), _pad_id(folder, "tokenizer_2") if (folder / "tokenizer_2").is_dir() else 0)
    unet_path, vae_path = folder / "unet" / "config.json", folder / "vae" / "config.json"
    unet_cfg, vae_cfg = _read_json(unet_path), _read_json(vae_path)
    check_unet_config(unet_cfg, unet_path)
    check_vae_config(vae_cfg, vae_path)
    text_path, text_build = _text_module(folder, "text_encoder", False)
    text2_path, text2_build = _text_module(folder, "text_encoder_2", True)
    with torch.device("meta"):
        main = convert.modules_from_builders((
            ("unet", unet_path, lambda: UNet2DConditionModel.from_config(unet_cfg)),
            ("vae", vae_path, lambda: AutoencoderKL.from_config(vae_cfg)), ("text", text_path, text_build)))
        second = convert.modules_from_builders((("text", text2_path, text2_build),))
    parts = {"unet": read_weights(folder / "unet", SDXL_PARTS["unet"]),
             "vae": read_weights(folder / "vae", SDXL_PARTS["vae"]),
             "text": _fit_text(main["text"], read_weights(folder / "text_encoder", "model"))}
    parts_2 = {"text": _fit_text(second["text"], read_weights(folder / "text_encoder_2", "model"))}
    convert.check_weights(main, parts, folder.name)
    convert.check_weights(second, parts_2, f"{folder.name}/text_encoder_2")
    assign_sdxl_weights(main, parts, second, parts_2, dtype)
    model = SDXLModel(main["unet"], main["vae"], main["text"], second["text"], alphas_cumprod, parameterization,
                      float(main["vae"].config.get("scaling_factor", 0.13025)), name=folder.name,
                      config_name="diffusers")
    model.tokenizer.pad_id, model.tokenizer_2.pad_id = pads
    return model


def load_folder(folder: str | Path, dtype: torch.dtype = torch.float32) -> LatentDiffusionModel:
    """A LatentDiffusionModel (on the CPU) from a local diffusers SD 1.x/2.x or SDXL folder."""
    folder = Path(folder)
    missing = missing_files(folder)
    index = _read_json(folder / "model_index.json") if (folder / "model_index.json").is_file() else {}
    if missing:
        kind = "SDXL " if is_sdxl_folder(folder, index) else ""
        raise ModelError(f"{folder} is not a complete diffusers {kind}folder: missing {', '.join(missing)}")
    _check_family(folder, index, _read_json(folder / "unet" / "config.json"))
    if is_sdxl_folder(folder, index):
        return load_sdxl_folder(folder, index, dtype)
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(scheduler_path)
    # Every config is checked before any weight is read.
    alphas_cumprod = alphas_cumprod_from_scheduler(scheduler, scheduler_path)
    parameterization = parameterization_from_scheduler(scheduler)
    pad_id = _pad_id(folder)
    modules = build_modules(folder)
    parts = {"unet": read_weights(folder / "unet", PARTS["unet"]),
             "vae": read_weights(folder / "vae", PARTS["vae"]),
             "text": {k: v for k, v in read_weights(folder / "text_encoder", PARTS["text_encoder"]).items()
                      if not k.endswith("position_ids")}}
    convert.check_weights(modules, parts, folder.name)
    convert.assign_weights(modules, parts, dtype)
    return LatentDiffusionModel(
        modules["unet"], modules["vae"], modules["text"], Tokenizer(pad_id), alphas_cumprod, parameterization,
        float(modules["vae"].config.get("scaling_factor", 0.18215)), name=folder.name, config_name="diffusers")


def download_repo(repo_id: str, models_path: str | Path, token: str | None = None,
                  endpoint: str | None = None) -> Path:
    """The diffusers folders of a hub repo in models_path/<name>: used as they are when complete, else fetched."""
    dest = repo_folder(repo_id, models_path)
    if dest.is_dir() and not missing_files(dest):
        return dest
    from huggingface_hub import snapshot_download

    from deforum.models.download import fetch_from_hub

    fetch_from_hub(lambda tok: snapshot_download(repo_id, local_dir=dest, allow_patterns=HUB_PATTERNS, token=tok,
                                                 endpoint=endpoint),
                   what=f"model_checkpoint = {repo_id!r}", repo_id=repo_id, place=dest, token=token, endpoint=endpoint,
                   where=f"put its diffusers folders (model_index.json, unet/, vae/, text_encoder/, tokenizer/, "
                         f"scheduler/; .safetensors weights) from https://huggingface.co/{repo_id} into {dest}")
    missing = missing_files(dest)
    if missing:
        raise ModelError(f"{repo_id} is not a diffusers Stable Diffusion repository with .safetensors weights: "
                         f"{dest} lacks {', '.join(missing)}")
    return dest
