"""LDM state dict -> diffusers UNet/VAE and transformers text-encoder weights, checked key by key.

The tensors come from our safe loader; diffusers' ``single_file_utils`` converters only rename them, so the
safe unpickler stays the one thing that reads the file (``from_single_file`` would re-read it with its own
loader). Modules are built on the meta device and receive the checkpoint's tensors directly
(``load_state_dict(assign=True)``), so no random initialisation runs and no weight is copied twice.
A key the module needs but the checkpoint lacks is an error (v0.6's ``strict=False`` silently kept random
weights).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

from deforum.errors import ModelError
from deforum.models.config import LDMSpec

log = logging.getLogger(__name__)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIXES = ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.")
OPENCLIP_PREFIX = "cond_stage_model.model."

# Keys a released checkpoint may hold that inference does not use (spec 1.6 and oracle README section 5).
SCHEDULE_BUFFERS = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights"}
IGNORED_PREFIXES = ("model_ema.", "first_stage_model.loss.", "cond_stage_model.model.visual.")
IGNORED_SUFFIXES = ("embeddings.position_ids",  # int64 buffer that newer transformers no longer keep
                    "model.text_projection", "model.logit_scale", "model.attn_mask")


def build_modules(spec: LDMSpec, device: str | torch.device = "meta") -> dict[str, torch.nn.Module]:
    """Empty diffusers/transformers modules for the spec ('unet', 'vae', 'text'), on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet_cfg = dict(spec.unet)
    if spec.parameterization == "v":
        unet_cfg["upcast_attention"] = True  # SD 2.x 768-v overflows in fp16 attention otherwise
    with torch.device(device):
        return modules_from_builders((("unet", spec.path, lambda: UNet2DConditionModel(**unet_cfg)),
                              ("vae", spec.path, lambda: AutoencoderKL(**spec.vae)),
                              ("text", spec.path, lambda: CLIPTextModel(spec.text.clip_config()))))


def modules_from_builders(builders: Iterable[tuple[str, Any, Callable[[], Any]]]) -> dict[str, Any]:
    """``{name: build()}`` for each ``(name, config file, build)``; a config that diffusers or transformers
    cannot build a module from (they reject bad sizes with many exception types) is a ModelError naming the
    file."""
    modules = {}
    for name, path, build in builders:
        try:
            modules[name] = build()
        except Exception as e:
            raise ModelError(f"{path}: no {name} can be built from this config ({type(e).__name__}: "
                             f"{str(e)[:300]})") from None
    return modules


def _diffusers_unet_keys(sd: dict, unet_cfg: dict) -> dict:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(sd, unet_cfg)


def _diffusers_vae_keys(sd: dict, vae_cfg: dict) -> dict:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return convert_ldm_vae_checkpoint(sd, vae_cfg)


class _Recorder(dict):
    """A dict that remembers which keys were read, so unused checkpoint keys can be reported."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            self.read.add(key)
        return super().get(key, default)


def _clip_keys(sd: dict) -> tuple[dict, set]:
    out, used = {}, set()
    for key, value in sd.items():
        for prefix in CLIP_PREFIXES:
            if key.startswith(prefix) and not key.endswith("position_ids"):
                out[key[len(prefix):]] = value
                used.add(key)
                break
    return out, used


def convert_checkpoint(sd: dict, spec: LDMSpec) -> tuple[dict[str, dict], list[str]]:
    """Split and rename an LDM state dict: ({'unet': .., 'vae': .., 'text': ..}, unused checkpoint keys)."""
    from deforum.models import text as text_mod

    unet_src = _Recorder({k: v for k, v in sd.items() if k.startswith(UNET_PREFIX)})
    vae_src = _Recorder({k: v for k, v in sd.items() if k.startswith(VAE_PREFIX)})
    try:
        parts = {"unet": _diffusers_unet_keys(unet_src, spec.unet), "vae": _diffusers_vae_keys(vae_src, spec.vae)}
    except (KeyError, IndexError) as e:
        raise ModelError(f"the checkpoint does not fit {spec.path.name}: key {e} is missing; "
                         "is model_config right for this checkpoint?") from e
    except (ValueError, RuntimeError, TypeError, AttributeError) as e:  # a tensor of a shape no SD model has
        raise ModelError(f"the checkpoint does not fit {spec.path.name} ({type(e).__name__}: {str(e)[:300]}); "
                         "is model_config right for this checkpoint?") from e
    if spec.text.kind == "clip":
        parts["text"], text_used = _clip_keys(sd)
    else:
        parts["text"], text_used = text_mod.convert_openclip_text(sd, OPENCLIP_PREFIX, spec.text.hidden_size,
                                                                  spec.text.layers_used)
    used = unet_src.read | vae_src.read | text_used
    if spec.text.kind == "openclip":  # blocks after the one SD 2 reads from are never run
        used |= {k for k in sd if k.startswith(OPENCLIP_PREFIX + "transformer.resblocks.")}
    unused = [k for k in sd if k not in used and k not in SCHEDULE_BUFFERS
              and not k.startswith(IGNORED_PREFIXES) and not k.endswith(IGNORED_SUFFIXES)]
    return parts, unused


def _short(keys: Iterable[str], n: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def check_weights(modules: dict[str, torch.nn.Module], parts: dict[str, dict], source: LDMSpec | str) -> None:
    """ModelError if any module weight is missing from the checkpoint or has the wrong shape.

    ``source`` names what the modules were built from in the messages: the LDM config or a diffusers folder.
    """
    what = source if isinstance(source, str) else source.path.name
    for name, module in modules.items():
        expected = module.state_dict()
        got = parts[name]
        missing = [k for k in expected if k not in got]
        if missing:
            raise ModelError(f"the checkpoint lacks {len(missing)} {name} weights for {what}: "
                             f"{_short(missing)}. The file is incomplete or model_config does not match it.")
        wrong = [f"{k} {tuple(got[k].shape)} (config wants {tuple(v.shape)})" for k, v in expected.items()
                 if tuple(got[k].shape) != tuple(v.shape)]
        if wrong:
            raise ModelError(f"{len(wrong)} {name} weights have the wrong shape for {what}: "
                             f"{_short(wrong, 4)}. model_config does not match this checkpoint.")
        extra = [k for k in got if k not in expected]
        if extra:
            raise ModelError(f"the checkpoint has {name} weights that {what} does not describe: "
                             f"{_short(extra)}. model_config does not match this checkpoint.")


def assign_weights(modules: dict[str, torch.nn.Module], parts: dict[str, dict], dtype: torch.dtype) -> None:
    """Give the meta modules the checkpoint's tensors (cast to dtype), then restore non-persistent buffers."""
    for name, module in modules.items():
        weights = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in parts[name].items()}
        module.load_state_dict(weights, strict=True, assign=True)
    emb = modules["text"].get_submodule(
        "text_model.embeddings" if hasattr(modules["text"], "text_model") else "embeddings")
    n = emb.position_embedding.weight.shape[0]
    emb.register_buffer("position_ids", torch.arange(n).expand((1, -1)), persistent=False)
    for name, module in modules.items():
        left = [k for k, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
        if left:
            raise ModelError(f"internal: {name} tensors left uninitialised: {_short(left)}")
