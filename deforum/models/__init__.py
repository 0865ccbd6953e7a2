"""Stable Diffusion 1.x / 2.x and SDXL checkpoints: catalogue, download + sha256, safe loading, LDM yaml -> modules.

    model = load_model("models/v1-5-pruned-emaonly.safetensors")           # config detected
    model = load_model("models/stable-diffusion-v1-5")                      # a diffusers folder
    model = load_root_model(root)                                           # v0.6 Root fields
    eps = model.apply_model(x, t, model.get_learned_conditioning(["a cat"]))
    model.family.encode_prompt(model, "a cat")                               # a Conditioning
"""

from deforum.models.catalogue import CATALOGUE, CatalogueEntry
from deforum.models.config import LDMSpec, load_config
from deforum.models.family import FAMILIES, DiffusionModel, ModelFamily, detect_family, family_of
from deforum.models.ldm import DiagonalGaussian, LatentDiffusionModel, LatentFormat, linear_alphas_cumprod
from deforum.models.loader import (
    choose_device,
    choose_dtype,
    load_model,
    load_root_model,
    resolve_checkpoint,
    resolve_config,
)
from deforum.models.safe_load import load_state_dict
from deforum.models.sd import SD1, SD2, detect_config_name
from deforum.models.sdxl import SDXL, SDXLModel
from deforum.models.tiny import TINY_FAMILIES, write_tiny_checkpoint

__all__ = [
    "CATALOGUE", "FAMILIES", "SD1", "SD2", "SDXL", "SDXLModel", "TINY_FAMILIES", "write_tiny_checkpoint",
    "DiffusionModel", "LatentFormat", "ModelFamily", "detect_family",
    "family_of", "CatalogueEntry", "DiagonalGaussian", "LDMSpec", "LatentDiffusionModel", "choose_device",
    "choose_dtype", "detect_config_name", "linear_alphas_cumprod", "load_config", "load_model",
    "load_root_model", "load_state_dict", "resolve_checkpoint", "resolve_config",
]
