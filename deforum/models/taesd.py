"""TAESD: the tiny autoencoder (diffusers' ``AutoencoderTiny``) in place of a model's own VAE (``vae = 'taesd'``).

TAESD (madebyollin/taesd, for SD 1.x/2.x) and TAESDXL (madebyollin/taesdxl, for SDXL) encode images to and
decode them from the latents the UNet works on, with about 1.2M parameters per half instead of the full VAE's
~34M / ~49M: a fraction of the decode time, at some loss of fine detail.

``use_vae(model, 'taesd')`` swaps the loaded model's autoencoder for a ``TinyVAE`` adapter around AutoencoderTiny;
``use_vae(model, 'default')`` puts the checkpoint's own back (the very module, so its output is bit-identical to
before the swap). The runner keeps one model per process across runs, so each run calls ``use_vae`` with its
setting after the model loads.

Latent scaling. ``LatentDiffusionModel`` treats its VAE as diffusers' ``AutoencoderKL``: it encodes with
``vae.encode(x).latent_dist.parameters`` (mean and log-variance), samples that posterior and multiplies by the
model's ``scale_factor`` (0.18215 for SD, 0.13025 for SDXL); it decodes with ``vae.decode(z / scale_factor)``.
AutoencoderTiny's ``scaling_factor`` is 1.0: its latents already are the UNet's scaled latents (in about
[-latent_magnitude, latent_magnitude] = [-3, 3]). The adapter therefore hands out ``latent / scale_factor`` as
the posterior mean with a log-variance of -30 (the lowest ``DiagonalGaussian`` keeps: std ~3e-7), so the
model's "sample" times ``scale_factor`` is the TAESD latent; and it multiplies what ``decode`` gets by
``scale_factor`` again before AutoencoderTiny decodes it.

The weights are a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``) in
``models_path/taesd`` or ``models_path/taesdxl``, as the hub repos lay them out; a missing folder is
downloaded through ``deforum.models.download.fetch_from_hub`` (offline: the same clear message as the SD
checkpoints). Loading is the safe path of diffusers folders: the config's sizes are checked, the module is built
empty and given the safetensors weights, every one present with the right shape; nothing in the folder runs.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deforum.errors import ModelError, SettingsError
from deforum.models import convert, limits

log = logging.getLogger(__name__)

VAES = ("default", "taesd")
WEIGHTS_STEM = "diffusion_pytorch_model"
HUB_FILES = ["config.json", f"{WEIGHTS_STEM}.safetensors"]
LICENCE = "MIT"
# Which tiny autoencoder goes with which model family (deforum.models.family names).
REPOS = {"sd1": "madebyollin/taesd", "sd2": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}
LOG_VARIANCE = -30.0  # DiagonalGaussian clamps to [-30, 20]: std = exp(-15) ~ 3e-7, the posterior is its mean


@dataclass
class _Posterior:
    """What ``LatentDiffusionModel.encode_first_stage`` reads: ``parameters`` = mean and log-variance."""

    parameters: torch.Tensor


@dataclass
class _Encoded:
    latent_dist: _Posterior


class TinyVAE(torch.nn.Module):
    """AutoencoderTiny behind AutoencoderKL's interface, for a model whose latent scale is ``scale_factor``.

    ``encode(x).latent_dist.parameters`` are (latent / scale_factor, -30): the model multiplies its sample by
    ``scale_factor`` and gets TAESD's latent. ``decode(z).sample`` decodes ``z * scale_factor``. Tiling and
    slicing, ``config``, ``dtype`` and ``use_tiling`` are AutoencoderTiny's own.
    """

    def __init__(self, taesd: torch.nn.Module, scale_factor: float, repo_id: str = ""):
        super().__init__()
        self.taesd = taesd
        self.scale_factor = float(scale_factor)
        self.repo_id = repo_id
        # AutoencoderTiny's latents times its scaling_factor (1.0 for TAESD) are the UNet's latents
        self.tiny_scale = float(taesd.config.get("scaling_factor", 1.0))

    @property
    def config(self) -> Any:
        return self.taesd.config

    @property
    def dtype(self) -> torch.dtype:
        return self.taesd.dtype

    @property
    def device(self) -> torch.device:
        return self.taesd.device

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> _Encoded:
        latents = self.taesd.encode(x).latents * (self.tiny_scale / self.scale_factor)
        return _Encoded(_Posterior(torch.cat([latents, torch.full_like(latents, LOG_VARIANCE)], dim=1)))

    def decode(self, z: torch.Tensor, return_dict: bool = True) -> Any:
        return self.taesd.decode(z * (self.scale_factor / self.tiny_scale))

    # tiling and slicing, as LatentDiffusionModel.set_vae_tiling / vae_tiling use them on AutoencoderKL
    @property
    def use_tiling(self) -> bool:
        return bool(self.taesd.use_tiling)

    @property
    def tile_sample_min_size(self) -> int:
        return self.taesd.tile_sample_min_size

    @tile_sample_min_size.setter
    def tile_sample_min_size(self, value: int) -> None:
        self.taesd.tile_sample_min_size = value

    @property
    def tile_latent_min_size(self) -> int:
        return self.taesd.tile_latent_min_size

    @tile_latent_min_size.setter
    def tile_latent_min_size(self, value: int) -> None:
        self.taesd.tile_latent_min_size = value

    def enable_tiling(self) -> None:
        self.taesd.enable_tiling()

    def disable_tiling(self) -> None:
        self.taesd.disable_tiling()

    def enable_slicing(self) -> None:
        self.taesd.enable_slicing()

    def disable_slicing(self) -> None:
        self.taesd.disable_slicing()

    def extra_repr(self) -> str:
        return f"repo_id={self.repo_id!r}, scale_factor={self.scale_factor}"


def compile_tiny_vae(vae: TinyVAE, *, mode: str | None = None, backend: str = "inductor") -> None:
    """torch.compile TAESD's encoder and decoder in place, with static shapes (a run's frame size never changes).

    The companion of ``compile_unet`` for few-step models, where the decode is a large share of a frame; on
    CUDA ``mode='reduce-overhead'`` also records CUDA graphs. The first encode and decode are slow.
    """
    options = {"dynamic": False, "backend": backend} | ({"mode": mode} if mode is not None else {})
    for part in (vae.taesd.encoder, vae.taesd.decoder):
        part.compile(**options)


def repo_for(model: Any) -> str:
    """The TAESD repo for the model's family: madebyollin/taesd (SD 1.x/2.x) or madebyollin/taesdxl (SDXL)."""
    from deforum.models.family import family_of

    family = family_of(model)
    name = getattr(family, "name", None)
    if name not in REPOS:
        raise ModelError(f"vae = 'taesd': there is no TAESD for the {getattr(family, 'label', name)} family; "
                         f"allowed for families {', '.join(sorted(set(REPOS)))}; set vae = 'default'")
    return REPOS[name]


def folder_for(repo_id: str, models_path: str | Path) -> Path:
    """models_path/<repo name>: models_path/taesd or models_path/taesdxl."""
    from deforum.models.diffusers_folder import repo_folder

    return repo_folder(repo_id, models_path)


def missing_files(folder: Path) -> list[str]:
    """What a TAESD folder lacks (empty when it can be loaded)."""
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    weights = (f"{WEIGHTS_STEM}.safetensors", f"{WEIGHTS_STEM}.safetensors.index.json", f"{WEIGHTS_STEM}.bin")
    if not any((folder / name).is_file() for name in weights):
        missing.append(f"{WEIGHTS_STEM}.safetensors")
    return missing


def _snapshot(repo_id: str, dest: Path, token: str | None, endpoint: str | None) -> Path:
    """The one network call: the config and safetensors weights of repo_id into dest."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, local_dir=dest, allow_patterns=HUB_FILES, token=token,
                                  endpoint=endpoint))


def download_taesd(repo_id: str, models_path: str | Path, token: str | None = None,
                   endpoint: str | None = None) -> Path:
    """The TAESD folder in models_path: used as it is when complete, else fetched from the hub."""
    from deforum.models.download import fetch_from_hub

    dest = folder_for(repo_id, models_path)
    if dest.is_dir() and not missing_files(dest):
        return dest
    fetch_from_hub(lambda tok: _snapshot(repo_id, dest, tok, endpoint), what=f"vae = 'taesd' ({repo_id})",
                   repo_id=repo_id, place=dest, token=token, endpoint=endpoint,
                   where=f"put {' and '.join(HUB_FILES)} from https://huggingface.co/{repo_id} into {dest}")
    missing = missing_files(dest)
    if missing:
        raise ModelError(f"{repo_id} is not a diffusers AutoencoderTiny repository with .safetensors weights: "
                         f"{dest} lacks {', '.join(missing)}")
    return dest


def check_config(cfg: dict, where: Path) -> None:
    """The sizes of an AutoencoderTiny config.json, checked before the module is built."""
    for key in ("encoder_block_out_channels", "decoder_block_out_channels"):
        limits.integers(cfg.get(key, [64, 64, 64, 64]), where, key, 1, limits.MAX_CHANNELS)
    for key, default in (("num_encoder_blocks", [1, 3, 3, 3]), ("num_decoder_blocks", [3, 3, 3, 1])):
        limits.integers(cfg.get(key, default), where, key, 1, limits.MAX_BLOCKS)
    for key, default in (("in_channels", 3), ("out_channels", 3), ("latent_channels", 4)):
        limits.integer(cfg.get(key, default), where, key, 1, limits.MAX_IO_CHANNELS)
    limits.integer(cfg.get("upsampling_scaling_factor", 2), where, "upsampling_scaling_factor", 1, 8)
    limits.number(cfg.get("scaling_factor", 1.0), where, "scaling_factor", 0.0, limits.MAX_SCALE_FACTOR,
                  low_open=True)
    cls = cfg.get("_class_name", "AutoencoderTiny")
    if cls != "AutoencoderTiny":
        raise limits.fail(where, "_class_name", cls, "'AutoencoderTiny'")


def load_taesd(folder: str | Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """An AutoencoderTiny (on the CPU, frozen) from a diffusers folder, built from its config, weights checked."""
    from diffusers import AutoencoderTiny

    from deforum.models.diffusers_folder import read_weights

    folder = Path(folder)
    missing = missing_files(folder)
    if missing:
        raise ModelError(f"{folder} is not an AutoencoderTiny folder: missing {', '.join(missing)}")
    config_path = folder / "config.json"
    cfg = limits.read_json(config_path)
    check_config(cfg, config_path)
    # AutoencoderTiny writes block_out_channels (= decoder_block_out_channels) into its config itself
    build_cfg = {k: v for k, v in cfg.items() if k != "block_out_channels"}
    with torch.device("meta"):
        modules = convert.modules_from_builders((("vae", config_path,
                                                  lambda: AutoencoderTiny.from_config(build_cfg)),))
    parts = {"vae": read_weights(folder, WEIGHTS_STEM)}
    convert.check_weights(modules, parts, folder.name)
    taesd = modules["vae"]
    taesd.load_state_dict({k: (v.to(dtype) if v.is_floating_point() else v) for k, v in parts["vae"].items()},
                          strict=True, assign=True)
    left = [k for k, t in list(taesd.named_parameters()) + list(taesd.named_buffers()) if t.is_meta]
    if left:
        raise ModelError(f"internal: AutoencoderTiny tensors left uninitialised: {left[:8]}")
    taesd.eval()
    taesd.requires_grad_(False)
    return taesd


# model -> its checkpoint's own VAE while TAESD is in use (the model object itself is left as ldm.py made it)
_own_vae: weakref.WeakKeyDictionary[Any, torch.nn.Module] = weakref.WeakKeyDictionary()


def _move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> None:
    module.to(device=device, **({"dtype": dtype} if dtype is not None else {}))


def _tiling_of(vae: Any) -> tuple[bool, int]:
    return bool(getattr(vae, "use_tiling", False)), int(getattr(vae, "tile_sample_min_size", 512) or 512)


def _set_tiling(model: Any, enabled: bool, tile_size: int) -> None:
    if hasattr(model, "set_vae_tiling"):
        model.set_vae_tiling(enabled, tile_size)


def use_vae(model: Any, vae: str, *, models_path: str | Path = "models", endpoint: str | None = None) -> None:
    """Encode and decode with ``vae``: 'default' (the checkpoint's own) or 'taesd' (TAESD / TAESDXL by family).

    'taesd' loads the tiny autoencoder from models_path/taesd (or taesdxl), downloading it when missing, and keeps
    the checkpoint's own VAE (on the CPU) to put back on 'default'. VAE tiling carries over. Calling it again with
    the setting already in use does nothing.
    """
    if vae not in VAES:
        raise SettingsError(f"vae = {vae!r} is not allowed; allowed: {', '.join(repr(v) for v in VAES)}")
    current = model.vae
    if vae == "default":
        own = _own_vae.pop(model, None)
        if own is None:
            return  # the checkpoint's VAE is already in place
        tiling, tile_size = _tiling_of(current)
        _move(own, model.device)
        model.vae = own
        _set_tiling(model, tiling, tile_size)
        log.info("VAE: the checkpoint's own")
        return
    repo_id = repo_for(model)
    if isinstance(current, TinyVAE) and current.repo_id == repo_id:
        return
    folder = download_taesd(repo_id, models_path or "models", endpoint=endpoint)
    own = _own_vae.get(model, current)
    dtype = own.dtype if isinstance(getattr(own, "dtype", None), torch.dtype) else model.dtype
    tiny = TinyVAE(load_taesd(folder, dtype), float(model.scale_factor), repo_id)
    tiny.eval()
    tiny.requires_grad_(False)
    _move(tiny, model.device)
    tiling, tile_size = _tiling_of(current)
    if model not in _own_vae:
        _own_vae[model] = current
        _move(current, torch.device("cpu"))  # frees its accelerator memory while TAESD is in use
    model.vae = tiny
    _set_tiling(model, tiling, tile_size)
    if getattr(model, "unet_compiled", False):  # compile_unet covers the autoencoder of few-step runs too
        compile_tiny_vae(tiny, mode=model.compile_options().get("mode"))
    log.info("VAE: %s from %s", repo_id, folder)


__all__ = ["LICENCE", "REPOS", "TinyVAE", "VAES", "compile_tiny_vae", "download_taesd", "load_taesd", "repo_for",
           "use_vae"]
