"""Stable Diffusion XL (base 1.0 and its fine-tunes) as a model family: detected, built and prompted.

A single-file SDXL checkpoint is in Stability's SGM layout: the UNet under ``model.diffusion_model.`` (with a
``label_emb`` taking the pooled text embedding and six size numbers), the VAE under ``first_stage_model.``,
CLIP ViT-L under ``conditioner.embedders.0.transformer.`` and OpenCLIP ViT-bigG under
``conditioner.embedders.1.model.``. diffusers' ``infer_diffusers_model_type`` calls such a file ``xl_base``
(the refiner, ``xl_refiner``, has only the bigG encoder and is out of scope). Every size is read from the
keys (no yaml); diffusers' single-file converters rename the keys; our safe loader read the tensors.

A prompt becomes (as diffusers' SDXL pipelines make it): ``cross_attn`` = both encoders' penultimate hidden
states side by side (768 + 1280 = 2048 wide), ``pooled`` = bigG's projected pooled output, and
``extras["time_ids"]`` = (original height, width, crop top, left, target height, width) when the image size is
given; without it ``apply_model`` uses the latent's own size with no crop, which is what a render asks for.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deforum.conditioning import Conditioning
from deforum.errors import ModelError
from deforum.models.ldm import LatentDiffusionModel, LatentFormat, linear_alphas_cumprod
from deforum.models.text import EOS_ID, Tokenizer

log = logging.getLogger(__name__)

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
BIGG_PREFIX = "conditioner.embedders.1.model."
# diffusers' xl_base key (single_file_utils.CHECKPOINT_KEY_NAMES); the family accepts any bigG depth.
XL_BASE_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
SCALE_FACTOR = 0.13025
TRAINING_SIZE = 1024
SIZE_TOLERANCE = 0.5  # warn when W*H is under half or over twice the training area ...
ASPECT_LIMIT = 4.0  # ... or one side is 4x the other
CONFIG_NAME = "SDXL (sizes read from its keys)"


def size_warning(W: int, H: int, training: int = TRAINING_SIZE) -> str | None:
    """Why W x H is far from a family's training size, or None when it is close enough."""
    area = (W * H) / float(training * training)
    aspect = max(W, H) / max(1, min(W, H))
    if SIZE_TOLERANCE <= area <= 1 / SIZE_TOLERANCE and aspect <= ASPECT_LIMIT:
        return None
    return (f"W x H = {W} x {H} is far from the {training} x {training} pixels this model was trained at "
            f"(area {area:.2f}x, sides {aspect:.1f}:1); images this far off are often poor: use about "
            f"{training * training / 1e6:.1f} megapixels with sides at most {ASPECT_LIMIT:.0f}:1 "
            "(1024 x 1024, 1152 x 896, 1216 x 832 ...)")


def time_ids(width: int, height: int, crop: tuple[int, int] = (0, 0), original: tuple[int, int] | None = None,
             batch: int = 1) -> torch.Tensor:
    """SDXL's add_time_ids (batch x 6, float32): original (h, w), crop (top, left), target (h, w)."""
    original_hw = (height, width) if original is None else (original[1], original[0])
    row = [*original_hw, *crop, height, width]
    return torch.tensor([row] * batch, dtype=torch.float32)


class SDXLModel(LatentDiffusionModel):
    """An SDXL UNet + VAE + two text encoders; ``apply_model`` feeds the UNet the pooled text and time ids."""

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module,
                 text_encoder_2: torch.nn.Module, alphas_cumprod: torch.Tensor, parameterization: str,
                 scale_factor: float, name: str = "", config_name: str = CONFIG_NAME, family: Any = None):
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = Tokenizer(0)  # OpenCLIP pads with '!' (id 0), as diffusers' tokenizer_2 does
        self._warned_sizes: set[tuple[int, int]] = set()
        super().__init__(unet, vae, text_encoder, Tokenizer(EOS_ID), alphas_cumprod, parameterization, scale_factor,
                         name=name, config_name=config_name, family=family)
        self._upcast_vae()

    def _upcast_vae(self) -> None:
        """SDXL's VAE overflows in float16 (diffusers' force_upcast): it stays float32 in a half model."""
        if self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", True):
            self.vae.to(torch.float32)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> SDXLModel:
        super().to(device, dtype)
        self._upcast_vae()
        return self

    def __repr__(self) -> str:
        return (f"SDXLModel({self.name!r}, config={self.config_name!r}, parameterization={self.parameterization!r}, "
                f"device={self.device}, dtype={self.dtype})")

    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.unet, self.vae, self.text_encoder, self.text_encoder_2)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-attention states B x 77 x (C1 + C2), pooled B x P) for prompts, as diffusers' encode_prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids_1 = self.tokenizer(list(prompts)).to(self.device)
        ids_2 = self.tokenizer_2(list(prompts)).to(self.device)
        out_1 = self.text_encoder(input_ids=ids_1, output_hidden_states=True)
        out_2 = self.text_encoder_2(input_ids=ids_2, output_hidden_states=True)
        states = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
        return states, out_2.text_embeds

    def get_learned_conditioning(self, prompts: list[str]) -> torch.Tensor:
        """The cross-attention states alone (the pooled embedding is in ``family.encode_prompt``'s value)."""
        return self.encode_text(prompts)[0]

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning | torch.Tensor) -> torch.Tensor:
        if not isinstance(cond, Conditioning) or cond.pooled is None:
            raise ModelError("an SDXL model needs the pooled text embedding with the cross-attention states: "
                             "pass the Conditioning that model.family.encode_prompt returns, not a bare tensor")
        batch, height, width = x.shape[0], x.shape[-2] * 8, x.shape[-1] * 8
        self._check_size(width, height)
        ids = cond.extras.get("time_ids")
        if ids is None:
            ids = time_ids(width, height, batch=batch)
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(batch)
        added = {"text_embeds": cond.pooled.to(device=x.device, dtype=self.dtype),
                 "time_ids": ids.to(device=x.device, dtype=self.dtype)}
        out = self.unet(x.to(self.dtype), t.to(torch.float32), encoder_hidden_states=cond.cross_attn.to(self.dtype),
                        added_cond_kwargs=added).sample
        return out.to(x.dtype)

    def _check_size(self, width: int, height: int) -> None:
        if (width, height) in self._warned_sizes:
            return
        self._warned_sizes.add((width, height))
        why = size_warning(width, height)
        if why:
            warnings.warn(f"{self.name or 'SDXL'}: {why}", UserWarning, stacklevel=3)


class StableDiffusionXL:
    """The SDXL family (base 1.0 and fine-tunes; not the refiner)."""

    name = "sdxl"
    label = "SDXL (CLIP ViT-L + OpenCLIP bigG text encoders)"
    latent_format = LatentFormat(channels=4, downscale=8, scale_factor=SCALE_FACTOR)
    training_size = TRAINING_SIZE

    def __repr__(self) -> str:
        return f"<model family {self.name}: {self.label}>"

    def detect(self, source: Any) -> bool:
        """A state dict (or its keys) with SGM's two text encoders, or a loaded SDXL model."""
        if isinstance(source, SDXLModel):
            return True
        if isinstance(source, LatentDiffusionModel) or not hasattr(source, "__iter__"):
            return False
        keys = source.keys() if isinstance(source, Mapping) else source
        clip = bigg = False
        for key in keys:
            if not isinstance(key, str):
                return False
            clip = clip or key.startswith(CLIP_L_PREFIX)
            bigg = bigg or key.startswith(BIGG_PREFIX)
            if clip and bigg:
                return True
        return False

    def size_warning(self, W: int, H: int) -> str | None:
        return size_warning(W, H, self.training_size)

    def build(self, checkpoint: Path, state_dict: dict, config: str | Path | None, dtype: torch.dtype) -> SDXLModel:
        if config is not None:
            log.info("%s is an SDXL checkpoint: its sizes come from its keys; model_config %s is not used",
                     Path(checkpoint).name, config)
        return build_from_state_dict(state_dict, Path(checkpoint), dtype, family=self)

    def encode_prompt(self, model: Any, text: str, width: int | None = None,
                      height: int | None = None) -> Conditioning:
        """Both encoders' penultimate states (cross_attn), bigG's pooled embedding, and the time ids of a
        width x height image (original size = target size, no crop) when the size is given."""
        states, pooled = model.encode_text([text])
        extras = {} if width is None or height is None else {"time_ids": time_ids(int(width), int(height))}
        return Conditioning(states, pooled, extras)


SDXL = StableDiffusionXL()


def unet_config_from_keys(sd: Mapping[str, Any], where: str, pooled_dim: int) -> dict:
    """The diffusers UNet2DConditionModel config of an SGM SDXL UNet ('text_time' addition embedding)."""
    from deforum.models import config as ldm_config

    params = ldm_config.unet_params_from_keys(sd, where, heads="channels")
    adm_in = params.pop("adm_in_channels", None)
    if adm_in is None:
        raise ModelError(f"{where}: the UNet has no label_emb (SDXL's pooled-text and size embedding)")
    if (adm_in - pooled_dim) <= 0 or (adm_in - pooled_dim) % 6:
        raise ModelError(f"{where}: label_emb takes {adm_in} numbers, which is not the pooled embedding "
                         f"({pooled_dim}) plus 6 time-id embeddings")
    cfg = ldm_config.unet_config(params, TRAINING_SIZE // 8, where)
    cfg.update(addition_embed_type="text_time", addition_time_embed_dim=(adm_in - pooled_dim) // 6,
               projection_class_embeddings_input_dim=adm_in)
    return cfg


def _text_config(sizes: dict, pad_id: int):
    from transformers import CLIPTextConfig

    from deforum.models.text import BOS_ID

    return CLIPTextConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=pad_id, **sizes)


def _fit_text_keys(module: torch.nn.Module, weights: dict) -> dict:
    """The weights' 'text_model.' prefix as the transformers version's module has it (5.x's CLIPTextModel has
    none, CLIPTextModelWithProjection has it)."""
    wants = any(k.startswith("text_model.") for k in module.state_dict())
    out = {}
    for key, value in weights.items():
        if key.startswith("text_projection"):
            out[key] = value
        elif wants and not key.startswith("text_model."):
            out["text_model." + key] = value
        elif not wants and key.startswith("text_model."):
            out[key[len("text_model."):]] = value
        else:
            out[key] = value
    return out


def vae_dtype(dtype: torch.dtype) -> torch.dtype:
    """SDXL's VAE overflows in float16 (diffusers' force_upcast): a half model keeps its VAE in float32."""
    return torch.float32 if dtype == torch.float16 else dtype


def assign_sdxl_weights(main: dict, parts: dict, second: dict, parts_2: dict, dtype: torch.dtype) -> None:
    """Give the meta modules their tensors: UNet and text encoders in dtype, the VAE in ``vae_dtype(dtype)``."""
    from deforum.models import convert

    vae = main["vae"]
    vae.load_state_dict({k: v.to(vae_dtype(dtype)) for k, v in parts["vae"].items()}, strict=True, assign=True)
    convert.assign_weights({"unet": main["unet"], "text": main["text"]},
                           {"unet": parts["unet"], "text": parts["text"]}, dtype)
    convert.assign_weights(second, parts_2, dtype)


def build_from_state_dict(sd: dict, path: Path, dtype: torch.dtype, family: Any = None) -> SDXLModel:
    """An ``SDXLModel`` from an SGM state dict: sizes from the keys, diffusers' converters for the names."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from deforum.models import config as ldm_config
    from deforum.models import convert

    where = f"{path.name} (SDXL, sizes read from its keys)"
    clip_sizes = ldm_config.clip_sizes_from_keys(sd, CLIP_L_PREFIX, where)
    bigg_sizes = ldm_config.openclip_sizes_from_keys(sd, BIGG_PREFIX, where)
    if BIGG_PREFIX + "text_projection" not in sd:
        raise ModelError(f"{where}: the checkpoint lacks '{BIGG_PREFIX}text_projection' (the pooled embedding's "
                         "projection)")
    unet_cfg = unet_config_from_keys(sd, where, bigg_sizes["projection_dim"])
    vae_cfg = ldm_config.vae_config(ldm_config.vae_ddconfig_from_keys(sd, where), SCALE_FACTOR, where)
    parameterization = "v" if "v_pred" in sd else "eps"
    with torch.device("meta"):
        modules = convert.modules_from_builders((
            ("unet", where, lambda: UNet2DConditionModel(**unet_cfg)),
            ("vae", where, lambda: AutoencoderKL(**vae_cfg)),
            ("text", where, lambda: CLIPTextModel(_text_config(clip_sizes, EOS_ID))),
            ("text_2", where, lambda: CLIPTextModelWithProjection(_text_config(bigg_sizes, 0)))))
    unet_src = {k: v for k, v in sd.items() if k.startswith(convert.UNET_PREFIX)}
    vae_src = {k: v for k, v in sd.items() if k.startswith(convert.VAE_PREFIX)}
    clip_src = {k: v for k, v in sd.items() if k.startswith(CLIP_L_PREFIX) and not k.endswith("position_ids")}
    bigg_src = {k: v for k, v in sd.items() if k.startswith(BIGG_PREFIX)}
    try:
        parts = {"unet": convert_ldm_unet_checkpoint(unet_src, unet_cfg),
                 "vae": convert_ldm_vae_checkpoint(vae_src, vae_cfg),
                 "text": convert_ldm_clip_checkpoint(clip_src, remove_prefix=CLIP_L_PREFIX)}
        parts_2 = {"text": {k: v for k, v in convert_open_clip_checkpoint(modules["text_2"], bigg_src,
                                                                           prefix=BIGG_PREFIX).items()
                            if not k.endswith("position_ids")}}
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise ModelError(f"{where}: the checkpoint cannot be converted ({type(e).__name__}: {str(e)[:300]})") from e
    parts["text"] = _fit_text_keys(modules["text"], parts["text"])
    parts_2["text"] = _fit_text_keys(modules["text_2"], parts_2["text"])
    used = set(unet_src) | set(vae_src) | set(clip_src) | set(bigg_src)
    unused = [k for k in sd if k not in used and k not in convert.SCHEDULE_BUFFERS and k != "v_pred"
              and not k.startswith(convert.IGNORED_PREFIXES)]
    if unused:
        log.warning("%s: %d checkpoint keys are not used by SDXL: %s", path.name, len(unused), convert._short(unused))
    if isinstance(sd, dict):
        sd.clear()  # the converted parts hold the tensors now
    main = {"unet": modules["unet"], "vae": modules["vae"], "text": modules["text"]}
    second = {"text": modules["text_2"]}
    try:
        convert.check_weights(main, parts, where)
        convert.check_weights(second, parts_2, where)
    except ModelError as error:
        raise (error if path.name in str(error) else ModelError(f"{path}: {error}")) from None
    assign_sdxl_weights(main, parts, second, parts_2, dtype)
    return SDXLModel(modules["unet"], modules["vae"], modules["text"], modules["text_2"],
                     linear_alphas_cumprod(0.00085, 0.012, 1000), parameterization, SCALE_FACTOR, name=path.name,
                     family=family)


__all__ = ["SDXL", "SDXLModel", "StableDiffusionXL", "build_from_state_dict", "size_warning", "time_ids"]
