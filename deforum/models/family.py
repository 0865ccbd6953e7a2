"""The model-family seam: what the loader and the Generator ask of a kind of model (SD 1.x, SD 2.x, SDXL).

A family knows how to recognise its checkpoints (``detect``), how to build a loaded model from one
(``build``), how to turn prompt text into a ``Conditioning`` (``encode_prompt``) and the shape of its latents
(``latent_format``). ``FAMILIES`` is the ordered list the loader asks; the first family whose ``detect`` says
yes builds the model, and the loaded model names it as ``model.family``. A new family is one module
implementing ``ModelFamily`` and one entry in ``FAMILIES``; ``render/`` does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from deforum.errors import ModelError
from deforum.models.ldm import LatentFormat
from deforum.models.sd import SD1, SD2
from deforum.models.sdxl import SDXL

if TYPE_CHECKING:
    from deforum.conditioning import Conditioning


@runtime_checkable
class DiffusionModel(Protocol):
    """What samplers and the Generator use of a loaded model (``LatentDiffusionModel`` is one)."""

    alphas_cumprod: torch.Tensor
    parameterization: str
    scale_factor: float

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor: ...

    def encode_first_stage(self, img: torch.Tensor) -> Any: ...

    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ModelFamily(Protocol):
    """One kind of model. ``detect`` takes a state dict (or its keys), a parsed config, or a loaded model."""

    name: str  # short id, e.g. 'sd1'
    label: str  # for messages, e.g. 'SD 1.x (CLIP ViT-L text encoder)'
    latent_format: LatentFormat

    def detect(self, source: Any) -> bool: ...

    def build(self, checkpoint: Path, state_dict: Mapping[str, torch.Tensor], config: str | Path | None,
              dtype: torch.dtype) -> DiffusionModel: ...

    def encode_prompt(self, model: Any, text: str) -> Conditioning: ...


def family_names(families: list[ModelFamily] | None = None) -> str:
    return ", ".join(f.label for f in (FAMILIES if families is None else families))


def detect_family(source: Any, where: str | Path = "the checkpoint") -> ModelFamily:
    """The first family in ``FAMILIES`` that recognises ``source``; a ModelError naming ``where`` otherwise."""
    for family in FAMILIES:
        if family.detect(source):
            return family
    raise ModelError(f"cannot tell the model family of {where} from its keys: it is none of the known families "
                     f"({family_names()}); set model_config to a config of one of them, or use a checkpoint "
                     "of a supported family")


def family_of(model: Any) -> ModelFamily:
    """``model.family``; the SD 1.x family for a model that names none (stand-ins with an SD interface)."""
    family = getattr(model, "family", None)
    if family is not None:
        return family
    return SD1


def latent_format_of(model: Any) -> LatentFormat:
    """The model's latent format: its family's, unless the model itself says otherwise."""
    base = family_of(model).latent_format
    return LatentFormat(channels=int(getattr(model, "latent_channels", base.channels)),
                        downscale=int(getattr(model, "downsample_factor", base.downscale)),
                        scale_factor=float(getattr(model, "scale_factor", base.scale_factor)))


# The families the loader asks, in order (sd.py and sdxl.py implement the interface above). No SD 1.x / 2.x
# detection claims an SGM file (their text-encoder prefixes differ) or a model with a second text encoder.
FAMILIES: list[ModelFamily] = [SD1, SD2, SDXL]

__all__ = ["FAMILIES", "DiffusionModel", "LatentFormat", "ModelFamily", "detect_family", "family_names",
           "family_of", "latent_format_of"]
