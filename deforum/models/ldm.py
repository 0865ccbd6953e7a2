"""The loaded Stable Diffusion model, with the interface CompVis/k-diffusion code expects of LatentDiffusion.

Samplers wrap it unchanged: ``apply_model(x, t, cond)`` (fractional t allowed), ``alphas_cumprod`` (float32,
never half: spec 3.1) and ``parameterization`` are what ``CompVisDenoiser`` / ``CompVisVDenoiser`` read.
``apply_model`` and ``decode_first_stage`` keep autograd (gradient conditioning differentiates through them
with respect to the latent); callers wrap plain sampling in ``torch.no_grad()``. The weights themselves
are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deforum.conditioning import Conditioning
from deforum.models.text import Tokenizer


@dataclass(frozen=True)
class LatentFormat:
    """A family's latent space: channels, the VAE's pixel downscale and its latent scale factor."""

    channels: int = 4
    downscale: int = 8
    scale_factor: float = 0.18215

    def shape(self, W: int, H: int, batch: int = 1) -> tuple[int, int, int, int]:
        """The latent shape of a W x H image."""
        return (batch, self.channels, H // self.downscale, W // self.downscale)


def linear_alphas_cumprod(linear_start: float, linear_end: float, timesteps: int) -> torch.Tensor:
    """LDM's 'linear' schedule (betas linear in sqrt, float64), cumulative product cast to float32."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    return torch.tensor(np.cumprod(1.0 - betas.numpy(), axis=0), dtype=torch.float32)


class DiagonalGaussian:
    """The VAE posterior: mean and log-variance (clamped to [-30, 20] as in LDM)."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise; the noise is drawn on the CPU (from generator, else torch's CPU RNG) as v0.6 did."""
        noise = torch.randn(self.mean.shape, generator=generator, dtype=torch.float32, device="cpu")
        return self.mean + self.std * noise.to(device=self.mean.device, dtype=self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean


class LatentDiffusionModel:
    """UNet + VAE + text encoder of one SD checkpoint, frozen, on one device and dtype."""

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module,
                 tokenizer: Tokenizer, alphas_cumprod: torch.Tensor, parameterization: str, scale_factor: float,
                 name: str = "", config_name: str = "", family: Any = None):
        self.family = family  # the ModelFamily that built it (deforum.models.family); the loader sets it too
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.alphas_cumprod = alphas_cumprod.to(torch.float32)
        self.parameterization = parameterization
        self.scale_factor = scale_factor
        self.num_timesteps = int(alphas_cumprod.shape[0])
        self.name, self.config_name = name, config_name
        self.unet_compiled = False
        for module in self.modules():
            module.eval()
            module.requires_grad_(False)

    def modules(self) -> tuple[torch.nn.Module, ...]:
        return (self.unet, self.vae, self.text_encoder)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LatentDiffusionModel:
        """Move (and cast) the networks; alphas_cumprod follows the device but stays float32."""
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in self.modules():
            module.to(**kwargs)
        self.alphas_cumprod = self.alphas_cumprod.to(device=device)
        return self

    def set_vae_tiling(self, enabled: bool, tile_size: int = 512) -> None:
        """Encode/decode in overlapping tiles of tile_size pixels (and one image at a time) for large W x H.

        Images no larger than a tile are processed whole, exactly as without tiling.
        """
        vae = self.vae
        if enabled:
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
            vae.tile_sample_min_size, vae.tile_latent_min_size = tile_size, tile_size // factor
            vae.enable_tiling()
            vae.enable_slicing()
        else:
            vae.disable_tiling()
            vae.disable_slicing()

    @property
    def vae_tiling(self) -> bool:
        return bool(self.vae.use_tiling)

    def use_channels_last(self) -> None:
        """Store the UNet's weights channels-last (NHWC): faster convolutions with cuDNN on CUDA."""
        self.unet.to(memory_format=torch.channels_last)

    def attention_processors(self) -> set[str]:
        """Class names of the UNet's attention processors (diffusers' SDPA one is ``AttnProcessor2_0``)."""
        return {type(p).__name__ for p in self.unet.attn_processors.values()}

    def compile_unet(self) -> None:
        """torch.compile the UNet in place with static shapes (a run's frame size never changes); on CUDA in
        'reduce-overhead' mode, which also records CUDA graphs. The first call is slow; later calls are faster.
        A TAESD autoencoder in use then (``deforum.models.taesd.use_vae``) is compiled the same way."""
        self.unet.compile(**self.compile_options())
        self.unet_compiled = True

    def compile_options(self) -> dict:
        """The ``torch.compile`` options of ``compile_unet``: static shapes, CUDA graphs on CUDA."""
        return {"dynamic": False} | ({"mode": "reduce-overhead"} if torch.device(self.device).type == "cuda" else {})

    def __repr__(self) -> str:
        return (f"LatentDiffusionModel({self.name!r}, config={self.config_name!r}, "
                f"family={getattr(self.family, 'name', None)!r}, "
                f"parameterization={self.parameterization!r}, device={self.device}, dtype={self.dtype})")

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning | torch.Tensor) -> torch.Tensor:
        """The UNet's prediction (eps or v) for latents x at (possibly fractional) timesteps t, context cond
        (a ``Conditioning``, of which SD uses the cross-attention states, or those states as a tensor)."""
        if isinstance(cond, Conditioning):
            cond = cond.cross_attn
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        out = self.unet(x.to(self.dtype), t.to(torch.float32), encoder_hidden_states=cond.to(self.dtype)).sample
        return out.to(x.dtype)

    @torch.no_grad()
    def get_learned_conditioning(self, prompts: list[str]) -> torch.Tensor:
        """(len(prompts), 77, C) text-encoder hidden states, as SD's cond stage returns them."""
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = self.tokenizer(list(prompts)).to(self.device)
        return self.text_encoder(input_ids=ids).last_hidden_state

    @torch.no_grad()
    def encode_first_stage(self, img: torch.Tensor) -> DiagonalGaussian:
        """The VAE posterior of images in [-1, 1]; sample it and multiply by scale_factor for a latent."""
        # AutoencoderKL.encode = encoder + quant_conv, in tiles / per image when vae tiling is on
        moments = self.vae.encode(img.to(device=self.device, dtype=self.vae.dtype)).latent_dist.parameters
        return DiagonalGaussian(moments)

    def get_first_stage_encoding(self, posterior: DiagonalGaussian,
                                 generator: torch.Generator | None = None) -> torch.Tensor:
        """A latent in the model's scaled space: scale_factor * a sample of the posterior."""
        return self.scale_factor * posterior.sample(generator)

    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """Images in about [-1, 1] from scaled latents (divides by scale_factor first)."""
        return self.vae.decode(z.to(device=self.device, dtype=self.vae.dtype) / self.scale_factor).sample
