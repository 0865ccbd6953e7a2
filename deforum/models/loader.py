"""From the model settings to a loaded model: checkpoint and config resolution, device, precision, cache.

The functions here take the typed ``ModelSettings`` (``settings.model``); models/ never imports deforum.settings
at run time (DESIGN.md section 3), so the type is named for the checker only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from deforum import device as devices
from deforum.errors import ModelError
from deforum.models import catalogue, diffusers_folder, download, family, safe_load, sd
from deforum.models import config as ldm_config
from deforum.models.ldm import LatentDiffusionModel

if TYPE_CHECKING:
    from deforum.settings.types import ModelSettings

log = logging.getLogger(__name__)

_cache: dict[tuple, LatentDiffusionModel] = {}


def choose_device(map_location: str | torch.device | None = None) -> torch.device:
    """'cuda', 'mps', 'cpu' (or 'cuda:1' ...) as asked; None/'auto' picks cuda, then mps, then cpu.

    A device that is not there (v0.6's default 'cuda' on a laptop) falls back to the best one that is,
    with one warning, so a notebook run locally on CPU/MPS still works.
    """
    if map_location in (None, "", "auto"):
        return torch.device(devices.best_device())
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as e:
        raise ModelError(f"map_location = {map_location!r} is not a device; allowed: 'cuda', 'mps', 'cpu', "
                         "'auto'") from e
    if device.type not in devices.DEVICE_TYPES:
        raise ModelError(f"map_location = {map_location!r}; allowed: 'cuda', 'mps', 'cpu', 'auto'")
    if not devices.available(device.type):
        fallback = torch.device(devices.best_device())
        warnings.warn(f"map_location = {map_location!r} but no {device.type.upper()} device is available here; "
                      f"the model runs on {fallback.type} instead (set map_location to 'cpu' or 'auto' to "
                      "silence this)", UserWarning, stacklevel=2)
        return fallback
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ModelError(f"map_location = {map_location!r} but there are {torch.cuda.device_count()} CUDA "
                         "devices; use 'cuda' or 'cuda:0'")
    return device


def choose_dtype(device: torch.device, half_precision: bool = True) -> torch.dtype:
    """fp16 on CUDA when half_precision (v0.6's default), float32 elsewhere."""
    return torch.float16 if (half_precision and device.type == "cuda") else torch.float32


def _fingerprint(path: Path) -> tuple:
    """Identity of a checkpoint's bytes for the cache: resolved path, size and mtime (a replaced file reloads)."""
    target = path / "model_index.json" if path.is_dir() else path
    st = target.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def load_model(checkpoint: str | Path, config: str | Path | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, *, cache: bool = True, vae_tiling: bool = False,
               compile_unet: bool = False) -> LatentDiffusionModel:
    """Load an SD 1.x/2.x or SDXL model: a .safetensors/.ckpt file (an LDM yaml for SD 1.x/2.x, or sizes read from
    its keys), or a local diffusers folder.

    ``config`` is the yaml path (detected when None; not used for a diffusers folder). ``vae_tiling`` encodes
    and decodes large images in tiles; ``compile_unet`` torch.compiles the UNet. With ``cache`` (default) a
    model already loaded from the same bytes, config, device, dtype and compile_unet is returned again
    instead of being reloaded (vae_tiling is switched on it in place).
    """
    path = Path(checkpoint)
    device = torch.device(device)
    dtype = dtype or torch.float32
    folder = diffusers_folder.is_diffusers_folder(path)
    if not folder and not path.is_file():
        raise ModelError(f"checkpoint not found: {path} (neither a file nor a diffusers folder with "
                         "model_index.json)")
    config_key = None if folder or config is None else str(Path(config).resolve())
    key = (_fingerprint(path), config_key, str(device), str(dtype), bool(compile_unet))
    if cache and key in _cache:
        model = _cache[key]
        model.set_vae_tiling(vae_tiling)
        return model
    if folder:
        if config is not None:
            log.info("%s is a diffusers folder: its own configs are used, not %s", path, config)
        model = diffusers_folder.load_folder(path, dtype)
        model.family = family.detect_family(model, path)
    else:
        model = _load_single_file(path, config, dtype)
    model.to(device)
    if device.type == "cuda":
        model.use_channels_last()
    model.set_vae_tiling(vae_tiling)
    if compile_unet:
        model.compile_unet()
    if cache:
        _cache.clear()  # one model per process: a second one would double the memory
        _cache[key] = model
    return model


def _load_single_file(path: Path, config_path: str | Path | None, dtype: torch.dtype) -> LatentDiffusionModel:
    """Ask ``FAMILIES`` which family the checkpoint is (from its keys; from the config when the keys say
    nothing), and let that family build it."""
    state_dict = safe_load.load_state_dict(path)
    chosen = _family_for(state_dict, config_path, path)
    model = chosen.build(path, state_dict, config_path, dtype)
    del state_dict
    model.family = chosen
    return model


def _family_for(state_dict: Mapping, config_path: str | Path | None, path: Path) -> family.ModelFamily:
    for candidate in family.FAMILIES:
        if candidate.detect(state_dict):
            return candidate
    if config_path is not None:  # a given config may still say which family it is
        spec = ldm_config.load_config(config_path)
        for candidate in family.FAMILIES:
            if candidate.detect(spec):
                return candidate
    raise ModelError(f"cannot tell the model family of {path} from its keys: it is none of the known families "
                     f"({family.family_names()}); set model_config to one of {', '.join(ldm_config.CONFIG_NAMES)} "
                     "or 'custom' with custom_config_path, or use a checkpoint of a supported family")


def _check_family(state_dict: dict, spec: ldm_config.LDMSpec, path: Path) -> None:
    """A clear error when an SD2 file meets an SD1 config or the other way round (``sd.check_config``)."""
    sd.check_config(state_dict, spec, path)


def _models_path(settings: ModelSettings) -> Path:
    return Path(settings.models_path or "models")  # an empty models_path is the models folder, as before


def _is_model(path: Path) -> bool:
    return path.is_file() or diffusers_folder.is_diffusers_folder(path)


def _verify(path: Path, entry: catalogue.CatalogueEntry | None, settings: ModelSettings) -> None:
    """Check a catalogue file's sha256 unless check_sha256 is off or the catalogue has no hash for it."""
    if entry is None or not settings.check_sha256:
        return
    if entry.sha256 is None:  # the size is the check the catalogue can make (it says why it has no hash)
        problem = catalogue.size_problem(entry, path)
        if problem:
            raise ModelError(problem)
        log.warning("%s: the catalogue has no sha256 for this file; %s", path.name,
                    "only its size is checked" if entry.size is not None else "its integrity is not checked")
        return
    download.verify_sha256(path, entry.sha256)


def resolve_checkpoint(settings: ModelSettings, *, endpoint: str | None = None) -> Path:
    """The checkpoint named by model_checkpoint: a file or a diffusers folder.

    model_checkpoint may be a catalogue name, a file or diffusers folder in models_path (or a path), 'custom'
    (custom_checkpoint_path), or a Hugging Face repo id ('owner/name'), whose diffusers folders are fetched into
    models_path/<name>. A missing catalogue checkpoint is downloaded into models_path; with check_sha256 (the
    default) its sha256 is verified (streamed, once per file).
    """
    name = str(settings.model_checkpoint or "")
    models_path = _models_path(settings)
    if name == "custom":
        custom = str(settings.custom_checkpoint_path or "")
        if not custom or not _is_model(Path(custom)):
            raise ModelError(f"custom_checkpoint_path = {custom!r} is neither a checkpoint file nor a diffusers "
                             "folder with model_index.json (model_checkpoint is 'custom')")
        return Path(custom)
    if not name:
        raise ModelError("model_checkpoint is empty; allowed: a catalogue name "
                         f"({', '.join(catalogue.CATALOGUE)}), a file in {models_path}, a Hugging Face repo id, "
                         "or 'custom'")
    entry = catalogue.lookup(name)
    for candidate in (models_path / name, Path(name)):
        if _is_model(candidate):
            _verify(candidate, entry, settings)
            return candidate
        if candidate.is_dir() and not diffusers_folder.looks_like_repo_id(name):
            raise ModelError(f"model_checkpoint = {name!r}: {candidate} is a folder without model_index.json, "
                             "not a diffusers model folder")
    if entry is not None:
        path = download.download(entry, models_path, endpoint=endpoint)
        _verify(path, entry, settings)
        return path
    if diffusers_folder.looks_like_repo_id(name):
        return diffusers_folder.download_repo(name, models_path, endpoint=endpoint)
    present = sorted(p.name for p in models_path.glob("*") if p.suffix in (".ckpt", ".safetensors")
                     or diffusers_folder.is_diffusers_folder(p)) if models_path.is_dir() else []
    raise ModelError(f"model_checkpoint = {name!r} is not in {models_path} and not a catalogue name or a Hugging "
                     f"Face repo id; there: {', '.join(present) or 'nothing'}; catalogue: "
                     f"{', '.join(catalogue.CATALOGUE)}")


def resolve_config(settings: ModelSettings, checkpoint: str | Path | dict | None = None) -> Path:
    """The LDM yaml for model_config: a name in configs_path/configs, 'custom', or detected.

    An empty model_config (or 'auto') uses the catalogue's config for a catalogue checkpoint, otherwise it
    is detected from the checkpoint (a path or an already loaded state dict).
    """
    name = settings.model_config or ""
    configs_path = settings.configs_path
    if name == "custom":
        custom = settings.custom_config_path or ""
        if not custom or not Path(custom).is_file():
            raise ModelError(f"custom_config_path = {custom!r} is not a file (model_config is 'custom')")
        return Path(custom)
    if name not in ("", "auto"):
        return ldm_config.config_path(name, configs_path)
    entry = catalogue.lookup(settings.model_checkpoint or "")
    if entry is not None and entry.config:
        return ldm_config.config_path(entry.config, configs_path)
    if checkpoint is None:
        raise ModelError("model_config is empty and no checkpoint was given to detect it from")
    if isinstance(checkpoint, Mapping):
        return ldm_config.config_path(sd.detect_config_name(checkpoint), configs_path)
    state_dict = safe_load.load_state_dict(checkpoint)
    return ldm_config.config_path(sd.detect_config_name(state_dict, Path(checkpoint).name), configs_path)


def yaml_beside(checkpoint: Path) -> Path | None:
    """``model.yaml`` next to ``model.safetensors`` / ``model.ckpt`` (A1111's rule), or None. It is used when
    model_config is empty and the checkpoint is not a catalogue one; the keys still pick the family."""
    for candidate in (checkpoint.with_suffix(".yaml"), checkpoint.with_suffix(".yml")):
        if candidate.is_file():
            log.info("model_config: %s (beside the checkpoint)", candidate)
            return candidate
    return None


def load_root_model(settings: ModelSettings, *, endpoint: str | None = None) -> LatentDiffusionModel:
    """Resolve the checkpoint and config, pick device and precision, load (once), and say what was chosen.

    With model_config empty, a yaml with the checkpoint's stem beside it is its config; with none there, the
    family and every size come from the checkpoint's keys.

    Fields read (``settings.model``): model_checkpoint, custom_checkpoint_path, models_path, model_config,
    custom_config_path, configs_path, check_sha256, map_location, half_precision, vae_tiling, compile_unet.
    """
    ckpt = resolve_checkpoint(settings, endpoint=endpoint)
    config_name = settings.model_config or ""
    entry = catalogue.lookup(settings.model_checkpoint or "")
    if diffusers_folder.is_diffusers_folder(ckpt):
        if config_name == "custom":
            log.info("%s is a diffusers folder: model_config 'custom' is not used", ckpt)
        cfg = None
    elif config_name in ("", "auto") and (entry is None or not entry.config):
        cfg = yaml_beside(ckpt)  # no yaml there: the family and every size come from the keys (SDXL: always)
    else:
        cfg = resolve_config(settings)
    device = choose_device(settings.map_location)
    dtype = choose_dtype(device, bool(settings.half_precision))
    model = load_model(ckpt, cfg, device=device, dtype=dtype, vae_tiling=bool(settings.vae_tiling),
                       compile_unet=bool(settings.compile_unet))
    extras = [n for n, on in (("vae tiling", model.vae_tiling), ("compiled UNet", model.unet_compiled)) if on]
    log.info("Loaded %s with config %s on %s (%s)%s", ckpt, model.config_name, device,
             str(dtype).replace("torch.", ""), f", {', '.join(extras)}" if extras else "")
    return model
