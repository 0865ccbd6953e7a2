"""Stable Diffusion 1.x and 2.x as model families: how a checkpoint is recognised, built and prompted.

The detection facts, one place each:

* SD 1.x: CLIP ViT-L text-encoder keys (``cond_stage_model.transformer.``), no OpenCLIP keys, and a
  cross-attention context that is not 1024 wide; its config is ``v1-inference.yaml`` when the context is
  768 wide (or unknown). A parsed config says SD 1.x by its CLIP text encoder.
* SD 2.x: OpenCLIP text-encoder keys (``cond_stage_model.model.``) or a 1024-wide cross-attention context;
  ``v2-inference-v.yaml`` (v-prediction) when the file name is a released 768-v name (a checkpoint does not
  store its parameterization), ``v2-inference.yaml`` (eps) otherwise. A parsed config says SD 2.x by its
  OpenCLIP text encoder; a loaded model by OpenCLIP's padding (id 0) or its 1024-wide context.

Both build the same ``LatentDiffusionModel`` through the LDM yaml and the key conversion, and encode a
prompt with the model's own text encoder (no pooled embedding, no extras).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from deforum.conditioning import Conditioning
from deforum.errors import ModelError
from deforum.models.ldm import LatentFormat

log = logging.getLogger(__name__)

CLIP_PREFIX = "cond_stage_model.transformer."
OPENCLIP_PREFIX = "cond_stage_model.model."
ATTN2_K = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
SD2_CONTEXT = 1024
SD1_CONTEXT = 768
# Names of released SD 2 768-v checkpoints: `parameterization` is not stored in a checkpoint.
V_PREDICTION_NAMES = ("768-v-ema", "v2-1_768-ema-pruned", "v2-1_768-nonema-pruned", "768-v")


def key_facts(source: Mapping[str, Any] | Iterable[str]) -> tuple[bool, bool, int | None]:
    """(CLIP keys present, OpenCLIP keys present, cross-attention context width or None) of a state dict."""
    keys = list(source.keys()) if isinstance(source, Mapping) else list(source)
    clip = any(k.startswith(CLIP_PREFIX) for k in keys)
    openclip = any(k.startswith(OPENCLIP_PREFIX) for k in keys)
    context = None
    if isinstance(source, Mapping) and ATTN2_K in source:
        context = int(source[ATTN2_K].shape[1])
    return clip, openclip, context


class StableDiffusion:
    """The SD 1.x / 2.x family interface; ``text_kind`` is the yaml's text encoder ('clip' or 'openclip')."""

    name = ""
    label = ""
    text_kind = ""
    latent_format = LatentFormat(channels=4, downscale=8, scale_factor=0.18215)

    def __repr__(self) -> str:
        return f"<model family {self.name}: {self.label}>"

    # -- detection -------------------------------------------------------------------------------------------

    def detect(self, source: Any) -> bool:
        """Whether ``source`` (a state dict or its keys, a parsed ``LDMSpec``, a loaded model) is this family."""
        from deforum.models.config import LDMSpec
        from deforum.models.ldm import LatentDiffusionModel

        if isinstance(source, LDMSpec):
            return source.text.kind == self.text_kind
        if isinstance(source, LatentDiffusionModel):
            return self._detect_model(source)
        return self._detect_keys(*key_facts(source))

    def _detect_keys(self, clip: bool, openclip: bool, context: int | None) -> bool:
        raise NotImplementedError

    def _detect_model(self, model: Any) -> bool:
        if hasattr(model, "text_encoder_2"):  # SDXL's two text encoders
            return False
        context = getattr(getattr(model.unet, "config", None), "cross_attention_dim", None)
        sd2 = model.tokenizer.pad_id == 0 or context == SD2_CONTEXT
        return sd2 == (self.text_kind == "openclip")

    def bundled_sizes(self, state_dict: Mapping[str, Any]) -> bool:
        """Whether the checkpoint has the released sizes the bundled yamls describe (its cross-attention width,
        or no width to read); a checkpoint of other sizes (a tiny one) is built from its keys instead."""
        context = key_facts(state_dict)[2]
        return context is None or context == (SD1_CONTEXT if self.text_kind == "clip" else SD2_CONTEXT)

    def config_name(self, state_dict: Mapping[str, Any], checkpoint_name: str = "") -> str:
        """The bundled LDM yaml for a checkpoint of this family (said out loud in the log)."""
        raise NotImplementedError

    # -- build -----------------------------------------------------------------------------------------------

    def build(self, checkpoint: Path, state_dict: dict, config: str | Path | None, dtype: torch.dtype):
        """A ``LatentDiffusionModel`` from a loaded state dict and its LDM yaml (detected when None)."""
        from deforum.models import config as ldm_config
        from deforum.models import convert
        from deforum.models.ldm import LatentDiffusionModel, linear_alphas_cumprod
        from deforum.models.text import Tokenizer

        path = Path(checkpoint)
        if config is None and not self.bundled_sizes(state_dict):
            spec = ldm_config.spec_from_keys(state_dict, path.name, self.text_kind)
            log.info("model_config: %s is an %s checkpoint of its own sizes (cross-attention %s wide): the "
                     "model is built from its keys", path.name, self.label, key_facts(state_dict)[2])
        else:
            if config is None:
                config = ldm_config.config_path(self.config_name(state_dict, path.name))
            spec = ldm_config.load_config(config)
        check_config(state_dict, spec, path)
        modules = convert.build_modules(spec)
        try:
            parts, unused = convert.convert_checkpoint(state_dict, spec)
            if isinstance(state_dict, dict):
                state_dict.clear()  # the converted parts hold the tensors now (the loader's dict, read for this)
            convert.check_weights(modules, parts, spec)
        except ModelError as error:  # name the checkpoint too, not only the config
            raise (error if str(path) in str(error) else ModelError(f"{path}: {error}")) from None
        if unused:
            log.warning("%s: %d checkpoint keys are not used by %s: %s", path.name, len(unused), spec.path.name,
                        convert._short(unused))
        convert.assign_weights(modules, parts, dtype)
        del parts
        return LatentDiffusionModel(
            modules["unet"], modules["vae"], modules["text"], Tokenizer(spec.text.pad_id),
            linear_alphas_cumprod(spec.linear_start, spec.linear_end, spec.timesteps), spec.parameterization,
            spec.scale_factor, name=path.name, config_name=spec.path.name, family=self)

    # -- prompts ---------------------------------------------------------------------------------------------

    def encode_prompt(self, model: Any, text: str) -> Conditioning:
        """The text encoder's hidden states (1 x 77 x C): SD's cross-attention context; no pooled, no extras."""
        return Conditioning(model.get_learned_conditioning([text]))


class StableDiffusion1(StableDiffusion):
    name = "sd1"
    label = "SD 1.x (CLIP text encoder)"
    text_kind = "clip"

    def _detect_keys(self, clip: bool, openclip: bool, context: int | None) -> bool:
        return clip and not openclip and context != SD2_CONTEXT

    def config_name(self, state_dict: Mapping[str, Any], checkpoint_name: str = "") -> str:
        _, _, context = key_facts(state_dict)
        if context not in (SD1_CONTEXT, None):
            raise cannot_tell(checkpoint_name, context)
        name = "v1-inference.yaml"
        log.info("model_config: detected %s (%s)", name, "CLIP ViT-L text encoder keys, 768-wide cross-attention")
        return name


class StableDiffusion2(StableDiffusion):
    name = "sd2"
    label = "SD 2.x (OpenCLIP text encoder)"
    text_kind = "openclip"

    def _detect_keys(self, clip: bool, openclip: bool, context: int | None) -> bool:
        return openclip or context == SD2_CONTEXT

    def config_name(self, state_dict: Mapping[str, Any], checkpoint_name: str = "") -> str:
        stem = Path(checkpoint_name).stem
        if any(stem.startswith(n) for n in V_PREDICTION_NAMES):
            name, why = "v2-inference-v.yaml", f"OpenCLIP keys and a 768-v file name ({stem})"
        else:
            name, why = "v2-inference.yaml", ("OpenCLIP keys; eps-prediction assumed (a checkpoint does not "
                                              "store it: for a 768-v model set model_config='v2-inference-v.yaml')")
        log.info("model_config: detected %s (%s)", name, why)
        return name


SD1 = StableDiffusion1()
SD2 = StableDiffusion2()


def cannot_tell(checkpoint_name: str, context: int | None) -> ModelError:
    from deforum.models.config import CONFIG_NAMES

    return ModelError(f"cannot tell the model family of {checkpoint_name or 'the checkpoint'} from its keys "
                      f"(cross-attention context width {context}); set model_config to one of "
                      f"{', '.join(CONFIG_NAMES)} or 'custom' with custom_config_path")


def detect_config_name(state_dict: Mapping[str, Any], checkpoint_name: str = "") -> str:
    """v1-inference.yaml, v2-inference.yaml or v2-inference-v.yaml, from the state dict (and the file name)."""
    for family in (SD1, SD2):
        if family.detect(state_dict):
            return family.config_name(state_dict, checkpoint_name)
    raise cannot_tell(checkpoint_name, key_facts(state_dict)[2])


def check_config(state_dict: Mapping[str, Any], spec: Any, path: Path) -> None:
    """A clear error when an SD2 file meets an SD1 config or the other way round."""
    clip, openclip, _ = key_facts(state_dict)
    if (openclip and spec.text.kind == "clip") or (clip and spec.text.kind == "openclip"):
        family = SD2.label if openclip else SD1.label
        raise ModelError(f"{path.name} is an {family} checkpoint but model_config is {spec.path.name}; use "
                         f"{'v2-inference.yaml / v2-inference-v.yaml' if openclip else 'v1-inference.yaml'}, "
                         "or leave model_config empty to detect it")


__all__ = ["SD1", "SD2", "StableDiffusion", "StableDiffusion1", "StableDiffusion2", "V_PREDICTION_NAMES",
           "check_config", "detect_config_name", "key_facts"]
