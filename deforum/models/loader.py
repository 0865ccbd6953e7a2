"""From Root settings to a loaded model: checkpoint and config resolution, device, precision, cache."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deforum.errors import ModelError
from deforum.models import catalogue, convert, download, safe_load
from deforum.models import config as ldm_config
from deforum.models.ldm import LatentDiffusionModel, linear_alphas_cumprod
from deforum.models.text import Tokenizer

log = logging.getLogger(__name__)

_cache: dict[tuple, LatentDiffusionModel] = {}


def _field(root: Any, name: str, default: Any = None) -> Any:
    if isinstance(root, Mapping):
        return root.get(name, default)
    return getattr(root, name, default)


def choose_device(map_location: str | torch.device | None = None) -> torch.device:
    """'cuda', 'mps', 'cpu' (or 'cuda:1' ...) as asked; None/'auto' picks cuda, then mps, then cpu."""
    if map_location in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as e:
        raise ModelError(f"map_location = {map_location!r} is not a device; allowed: 'cuda', 'mps', 'cpu', "
                         "'auto'") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"map_location = {map_location!r} but no CUDA GPU is available; use 'cpu' or 'auto'")
    if device.type == "mps" and not (torch.backends.mps.is_available()):
        raise ModelError(f"map_location = {map_location!r} but MPS is not available; use 'cpu' or 'auto'")
    return device


def choose_dtype(device: torch.device, half_precision: bool = True) -> torch.dtype:
    """fp16 on CUDA when half_precision (v0.6's default), float32 elsewhere."""
    return torch.float16 if (half_precision and device.type == "cuda") else torch.float32


def load_model(checkpoint: str | Path, config: str | Path | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, *, cache: bool = True) -> LatentDiffusionModel:
    """Load an SD 1.x/2.x checkpoint (.safetensors or .ckpt) with its LDM yaml (detected when not given).

    ``config`` is the yaml path. With ``cache`` (default) a model already loaded
    with the same file, config, device and dtype is returned again instead of being reloaded.
    """
    config_path = config
    path = Path(checkpoint)
    device = torch.device(device)
    dtype = dtype or torch.float32
    key = (str(path.resolve()), str(Path(config_path).resolve()) if config_path else None, str(device), str(dtype))
    if cache and key in _cache:
        return _cache[key]
    state_dict = safe_load.load_state_dict(path)
    if config_path is None:
        config_path = ldm_config.config_path(ldm_config.detect_config_name(state_dict, path.name))
    spec = ldm_config.load_config(config_path)
    _check_family(state_dict, spec, path)
    modules = convert.build_modules(spec)
    parts, unused = convert.convert_checkpoint(state_dict, spec)
    del state_dict
    convert.check_weights(modules, parts, spec)
    if unused:
        log.warning("%s: %d checkpoint keys are not used by %s: %s", path.name, len(unused), spec.path.name,
                    convert._short(unused))
    convert.assign_weights(modules, parts, dtype)
    del parts
    model = LatentDiffusionModel(
        modules["unet"], modules["vae"], modules["text"], Tokenizer(spec.text.pad_id),
        linear_alphas_cumprod(spec.linear_start, spec.linear_end, spec.timesteps), spec.parameterization,
        spec.scale_factor, name=path.name, config_name=spec.path.name)
    model.to(device)
    if cache:
        _cache.clear()  # one model per process: a second one would double the memory
        _cache[key] = model
    return model


def _check_family(state_dict: dict, spec: ldm_config.LDMSpec, path: Path) -> None:
    """A clear error when an SD2 file meets an SD1 config or the other way round."""
    openclip = any(k.startswith(convert.OPENCLIP_PREFIX) for k in state_dict)
    clip = any(k.startswith("cond_stage_model.transformer.") for k in state_dict)
    if (openclip and spec.text.kind == "clip") or (clip and spec.text.kind == "openclip"):
        family = "SD 2.x (OpenCLIP text encoder)" if openclip else "SD 1.x (CLIP text encoder)"
        raise ModelError(f"{path.name} is an {family} checkpoint but model_config is {spec.path.name}; use "
                         f"{'v2-inference.yaml / v2-inference-v.yaml' if openclip else 'v1-inference.yaml'}, "
                         "or leave model_config empty to detect it")


def _models_path(root: Any) -> Path:
    return Path(_field(root, "models_path", "models") or "models")


def resolve_checkpoint(root: Any, *, endpoint: str | None = None) -> Path:
    """The checkpoint file named by Root's model_checkpoint (catalogue name, file in models_path, or 'custom').

    A catalogue checkpoint that is missing is downloaded into models_path; with check_sha256 (the default)
    its sha256 is verified (streamed, once per file).
    """
    name = _field(root, "model_checkpoint", "") or ""
    models_path = _models_path(root)
    if name == "custom":
        custom = _field(root, "custom_checkpoint_path", "") or ""
        if not custom or not Path(custom).is_file():
            raise ModelError(f"custom_checkpoint_path = {custom!r} is not a file (model_checkpoint is 'custom')")
        return Path(custom)
    entry = catalogue.lookup(name)
    candidate = models_path / name
    if not name:
        raise ModelError("model_checkpoint is empty; allowed: a catalogue name "
                         f"({', '.join(catalogue.CATALOGUE)}), a file in {models_path}, or 'custom'")
    if not candidate.is_file() and Path(name).is_file():
        candidate = Path(name)
    if candidate.is_file():
        if entry is not None and _field(root, "check_sha256", True):
            download.verify_sha256(candidate, entry.sha256)
        return candidate
    if entry is None:
        present = sorted(p.name for p in models_path.glob("*") if p.suffix in (".ckpt", ".safetensors")) \
            if models_path.is_dir() else []
        raise ModelError(f"model_checkpoint = {name!r} is not in {models_path} and not a catalogue name; "
                         f"files there: {', '.join(present) or 'none'}; catalogue: {', '.join(catalogue.CATALOGUE)}")
    path = download.download(entry, models_path, endpoint=endpoint)
    if _field(root, "check_sha256", True):
        download.verify_sha256(path, entry.sha256)
    return path


def resolve_config(root: Any, checkpoint: str | Path | dict | None = None) -> Path:
    """The LDM yaml for Root's model_config: a name in configs_path/configs, 'custom', or detected.

    An empty model_config (or 'auto') uses the catalogue's config for a catalogue checkpoint, otherwise it
    is detected from the checkpoint (a path or an already loaded state dict).
    """
    name = _field(root, "model_config", "") or ""
    configs_path = _field(root, "configs_path", None)
    if name == "custom":
        custom = _field(root, "custom_config_path", "") or ""
        if not custom or not Path(custom).is_file():
            raise ModelError(f"custom_config_path = {custom!r} is not a file (model_config is 'custom')")
        return Path(custom)
    if name not in ("", "auto"):
        return ldm_config.config_path(name, configs_path)
    entry = catalogue.lookup(_field(root, "model_checkpoint", "") or "")
    if entry is not None:
        return ldm_config.config_path(entry.config, configs_path)
    if checkpoint is None:
        raise ModelError("model_config is empty and no checkpoint was given to detect it from")
    if isinstance(checkpoint, Mapping):
        return ldm_config.config_path(ldm_config.detect_config_name(checkpoint), configs_path)
    sd = safe_load.load_state_dict(checkpoint)
    return ldm_config.config_path(ldm_config.detect_config_name(sd, Path(checkpoint).name), configs_path)


def load_root_model(root: Any, *, endpoint: str | None = None) -> LatentDiffusionModel:
    """Resolve Root's checkpoint and config, pick device and precision, load (once), and say what was chosen."""
    ckpt = resolve_checkpoint(root, endpoint=endpoint)
    cfg = None if (_field(root, "model_config", "") or "") in ("", "auto") and catalogue.lookup(
        _field(root, "model_checkpoint", "") or "") is None else resolve_config(root)
    device = choose_device(_field(root, "map_location", None))
    dtype = choose_dtype(device, bool(_field(root, "half_precision", True)))
    model = load_model(ckpt, cfg, device=device, dtype=dtype)
    print(f"Loaded {ckpt} with config {model.config_name} on {device} ({str(dtype).replace('torch.', '')})")
    return model
