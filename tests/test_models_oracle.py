"""The tiny SD-1 checkpoint, loaded from .safetensors and .ckpt, reproduces the original CompVis outputs.

Oracle: tests/data/ldm/tiny-sd1-oracle.npz (see tests/data/ldm/README in the shared oracle notes).
Tolerances are the oracle README's: single forward passes rtol=atol=1e-4, exact quantities 1e-6 relative.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from deforum.models import LatentDiffusionModel, load_model
from deforum.testing import tiny_checkpoint

DATA = Path(__file__).parent / "data" / "ldm"
ORACLE = np.load(DATA / "tiny-sd1-oracle.npz")


def oracle(name: str) -> torch.Tensor:
    return torch.from_numpy(ORACLE[name])


@pytest.fixture(scope="module", params=["safetensors", "ckpt"])
def model(request, tmp_path_factory) -> LatentDiffusionModel:
    if request.param == "safetensors":
        ckpt, yaml = DATA / "tiny-sd1.safetensors", DATA / "tiny-sd1-inference.yaml"
    else:
        ckpt, yaml = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), fmt="ckpt")
    return load_model(ckpt, yaml, device="cpu", cache=False)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    torch.testing.assert_close(actual.float(), expected, rtol=tol, atol=tol)


def compvis_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def sigma_to_t(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """k-diffusion's CompVisDenoiser.sigma_to_t: interpolation in log sigma, not quantised."""
    log_sigmas = sigmas.log()
    dists = sigma.log() - log_sigmas[:, None]
    low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = ((log_sigmas[low] - sigma.log()) / (log_sigmas[low] - log_sigmas[high])).clamp(0, 1)
    return (1 - w) * low + w * high


def test_alphas_cumprod_is_float32_and_matches_the_schedule(model):
    assert model.alphas_cumprod.dtype == torch.float32
    torch.testing.assert_close(model.alphas_cumprod, oracle("out_alphas_cumprod"), rtol=1e-6, atol=0)
    torch.testing.assert_close(compvis_sigmas(model.alphas_cumprod), oracle("out_kd_sigmas"), rtol=1e-6, atol=0)


def test_unet_eps_at_integer_timesteps(model):
    with torch.no_grad():
        eps = model.apply_model(oracle("in_unet_x"), oracle("in_unet_t"), oracle("in_unet_context"))
    close(eps, oracle("out_unet_eps"))


def test_compvis_denoiser_at_fractional_timesteps(model):
    sigma, x, ctx = oracle("in_kd_sigma"), oracle("in_kd_x"), oracle("in_unet_context")
    t = sigma_to_t(sigma, compvis_sigmas(model.alphas_cumprod))
    torch.testing.assert_close(t, oracle("out_kd_t"), rtol=1e-6, atol=1e-4)
    assert t[1] != t[1].round()  # the UNet really gets a fractional timestep
    c_in, c_out = 1 / (sigma ** 2 + 1) ** 0.5, -sigma
    with torch.no_grad():
        eps = model.apply_model(x * c_in[:, None, None, None], t, ctx)
    close(eps, oracle("out_kd_eps"))
    close(x + eps * c_out[:, None, None, None], oracle("out_kd_denoised"))


def test_vae_decode_divides_by_scale_factor(model):
    assert model.scale_factor == pytest.approx(0.18215)
    with torch.no_grad():
        close(model.decode_first_stage(oracle("in_vae_z")), oracle("out_vae_decode_first_stage"))
        raw = model.vae.decode(oracle("in_vae_z")).sample
    close(raw, oracle("out_vae_decode_raw"))


def test_vae_encode_posterior(model):
    with torch.no_grad():
        posterior = model.encode_first_stage(oracle("in_vae_img"))
    close(posterior.mean, oracle("out_vae_encode_mean"))
    close(posterior.logvar, oracle("out_vae_encode_logvar"))
    close(posterior.std, oracle("out_vae_encode_std"))
    a = posterior.sample(torch.Generator().manual_seed(7))
    b = posterior.sample(torch.Generator().manual_seed(7))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, posterior.mean + posterior.std * noise)
    latent = model.get_first_stage_encoding(posterior, torch.Generator().manual_seed(7))
    torch.testing.assert_close(latent, model.scale_factor * a)


@pytest.mark.parametrize("prompt, ids_name, hidden_name", [
    ("a photo of a cat", "in_text_ids", "out_text_hidden"),
    ("", "in_text_uncond_ids", "out_text_uncond_hidden"),
])
def test_text_encoder_and_tokenizer(model, prompt, ids_name, hidden_name):
    assert torch.equal(model.tokenizer([prompt]), oracle(ids_name))
    close(model.get_learned_conditioning([prompt]), oracle(hidden_name))


def test_model_is_frozen_and_in_eval_mode(model):
    for module in model.modules():
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert model.parameterization == "eps"
    assert model.device == torch.device("cpu") and model.dtype == torch.float32


def test_apply_model_keeps_autograd_for_the_latent(model):
    """Gradient conditioning differentiates the UNet output with respect to x (spec 6)."""
    x = oracle("in_unet_x")[:1].clone().requires_grad_(True)
    eps = model.apply_model(x, torch.tensor([500.0]), oracle("in_unet_context")[:1])
    eps.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
