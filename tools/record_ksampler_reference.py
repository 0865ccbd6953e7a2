"""Record k-diffusion's sampler trajectories into tests/data/ksampler_reference.npz (run once, by hand).

k-diffusion is the numerical reference for deforum.sampling but is never installed with the package or
its tests (its dctorch dependency pins numpy<2). Run this in a separate virtual environment:

    python3 -m venv /work/kdiff-venv
    /work/kdiff-venv/bin/pip install 'setuptools<82' torch==2.14.1 numpy scipy torchdiffeq torchsde tqdm \
        pillow safetensors
    /work/kdiff-venv/bin/pip install --no-deps k-diffusion==0.1.1.post1
    /work/kdiff-venv/bin/python tools/record_ksampler_reference.py

Model: a deterministic toy eps/v network (`ToyLDM` below: conv -> tanh(+ timestep and pooled-context
embeddings) -> conv) with seeded weights that are saved into the npz, so the test rebuilds it exactly.
It has the LDM interface (`apply_model(x, t, cond)`, float32 `alphas_cumprod` of SD's linear schedule,
`parameterization`). The conditioning is the tiny SD1 oracle's text hidden states for "a photo of a cat"
and "" (oracle/ldm/tiny-sd1-oracle.npz), with CFG scale 7.5 in the [uncond, cond] batch form of v0.6's
model_wrap.CFGDenoiser.

Noise: one CPU torch.Generator per trajectory, seeded; start noise first (x = init + noise * sigmas[0]),
then every sampler draw, in order. Samplers that take `noise_sampler` get one drawing from that generator;
those that call torch.randn_like directly (euler/heun/dpm2 churn) see a randn_like patched to draw from it.
dpmpp_sde / dpmpp_2m_sde get the same noise_sampler instead of their BrownianTree default.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

STEPS = 6
SCALE = 7.5
SHAPE = (1, 4, 8, 8)
HIDDEN = 16
CONTEXT = 32
TOY_SEED = 20240601
INIT_SEED = 7
NOISE_SEED = 1234

# k-diffusion function name, our guide name, extra keyword arguments
SAMPLERS = [
    ("sample_euler", "euler", {}),
    ("sample_euler_ancestral", "euler_ancestral", {}),
    ("sample_heun", "heun", {}),
    ("sample_dpm_2", "dpm2", {}),
    ("sample_dpm_2_ancestral", "dpm2_ancestral", {}),
    ("sample_lms", "klms", {}),
    ("sample_dpm_fast", "dpm_fast", {}),
    ("sample_dpm_adaptive", "dpm_adaptive", {}),
    ("sample_dpmpp_2s_ancestral", "dpmpp_2s_a", {}),
    ("sample_dpmpp_2m", "dpmpp_2m", {}),
    ("sample_dpmpp_sde", "dpmpp_sde", {}),
    ("sample_dpmpp_2m_sde", "dpmpp_2m_sde", {}),
]
# (case name, guide name, strength, parameterization, karras, extra keyword arguments)
EXTRA_CASES = [
    ("heun_churn", "heun", 0.0, "eps", False, {"s_churn": 1.0}),
    ("euler_karras", "euler", 0.0, "eps", True, {}),
    ("euler_v", "euler", 0.0, "v", False, {}),
    ("dpmpp_2m_v", "dpmpp_2m", 0.5, "v", False, {}),
]


def linear_alphas_cumprod(start: float = 0.00085, end: float = 0.012, n: int = 1000) -> torch.Tensor:
    """SD's 'linear' beta schedule (linspace in sqrt space, squared), cumprod in float64, stored float32."""
    betas = np.linspace(start ** 0.5, end ** 0.5, n, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas)).float()


def toy_weights(seed: int = TOY_SEED) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)

    def draw(*shape, scale):
        return (torch.randn(shape, generator=g) * scale).numpy()
    return {
        "w1": draw(HIDDEN, 4, 3, 3, scale=1 / 6), "b1": draw(HIDDEN, scale=0.1),
        "wt": draw(HIDDEN, 8, scale=0.3), "wc": draw(HIDDEN, CONTEXT, scale=0.3),
        "w2": draw(4, HIDDEN, 3, 3, scale=1 / 12), "b2": draw(4, scale=0.05),
    }


class ToyLDM:
    """A tiny deterministic stand-in for LatentDiffusion: eps = conv(tanh(conv(x) + emb(t) + emb(cond)))."""

    def __init__(self, weights: dict[str, np.ndarray], alphas_cumprod: torch.Tensor, parameterization="eps"):
        self.w = {k: torch.from_numpy(np.asarray(v)).float() for k, v in weights.items()}
        self.alphas_cumprod = alphas_cumprod.float()
        self.parameterization = parameterization
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.calls = 0

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        w = self.w
        freqs = torch.exp(-math.log(1e4) * torch.arange(4) / 4)
        angles = t.float().reshape(-1, 1) * freqs
        t_emb = torch.cat([angles.cos(), angles.sin()], dim=1) @ w["wt"].T
        c_emb = cond.float().mean(dim=1) @ w["wc"].T
        h = F.conv2d(x, w["w1"], w["b1"], padding=1) + (t_emb + c_emb)[:, :, None, None]
        return F.conv2d(torch.tanh(h), w["w2"], w["b2"], padding=1)


class KCFG:
    """v0.6's model_wrap.CFGDenoiser form: one [uncond, cond] batch, uncond + (cond - uncond) * scale."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, x, sigma, uncond, cond, cond_scale):
        x_in, sigma_in = torch.cat([x] * 2), torch.cat([sigma] * 2)
        u, c = self.inner(x_in, sigma_in, cond=torch.cat([uncond, cond])).chunk(2)
        return u + (c - u) * cond_scale


def import_k_diffusion():
    """k_diffusion.sampling and .external without the package __init__ (which pulls in training deps)."""
    import importlib.util
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        sys.exit("k-diffusion is not installed in this environment; see this script's docstring")
    try:
        import torchvision.transforms.functional  # noqa: F401
    except ImportError:  # only k_diffusion.utils' image helpers use it
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules[name] = types.ModuleType(name)
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    from k_diffusion import external, sampling
    return sampling, external


def record(out: Path, oracle: Path) -> None:
    sampling, external = import_k_diffusion()
    ref = np.load(oracle)
    cond = torch.from_numpy(ref["out_text_hidden"])
    uncond = torch.from_numpy(ref["out_text_uncond_hidden"])
    alphas = linear_alphas_cumprod()
    weights = toy_weights()
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(INIT_SEED))
    arrays: dict[str, np.ndarray] = {f"toy_{k}": v for k, v in weights.items()}
    arrays.update(alphas_cumprod=alphas.numpy(), cond=cond.numpy(), uncond=uncond.numpy(),
                  init_latent=init.numpy(), meta_steps=np.array(STEPS), meta_scale=np.array(SCALE),
                  meta_noise_seed=np.array(NOISE_SEED))

    cases = [(f"{name}_{'img2img' if s else 'txt2img'}", name, s, "eps", False, {})
             for _, name, _ in SAMPLERS for s in (0.0, 0.5)] + EXTRA_CASES
    k_names = {name: fn for fn, name, _ in SAMPLERS}
    for case, name, strength, param, karras, kwargs in cases:
        toy = ToyLDM(weights, alphas, param)
        wrap = external.CompVisVDenoiser(toy) if param == "v" else external.CompVisDenoiser(toy)
        model = KCFG(wrap)
        if karras:
            sigmas = sampling.get_sigmas_karras(STEPS, wrap.sigma_min.item(), wrap.sigma_max.item())
        else:
            sigmas = wrap.get_sigmas(STEPS)
        t_enc = int((1.0 - strength) * STEPS)
        sigmas = sigmas[len(sigmas) - t_enc - 1:]
        g = torch.Generator().manual_seed(NOISE_SEED)

        def randn(*_args, generator=g, **_kwargs):
            return torch.randn(SHAPE, generator=generator)
        start = init if strength > 0 else torch.zeros(SHAPE)
        x = start + randn() * sigmas[0]
        xs, denoised, step_sigmas = [], [], []

        def callback(info, xs=xs, denoised=denoised, step_sigmas=step_sigmas):
            xs.append(info["x"].clone())
            denoised.append(info["denoised"].clone())
            step_sigmas.append(float(info["sigma"]))
        extra = {"cond": cond, "uncond": uncond, "cond_scale": SCALE}
        fn = getattr(sampling, k_names[name])
        kw = dict(kwargs)
        if "noise_sampler" in inspect.signature(fn).parameters:
            kw["noise_sampler"] = lambda sigma, sigma_next: randn()
        real_randn_like = torch.randn_like
        torch.randn_like = lambda t, *a, **k: randn().to(t.dtype)
        try:
            if name in ("dpm_fast", "dpm_adaptive"):
                bounds = (sigmas[sigmas > 0].min(), sigmas[0])
                if name == "dpm_fast":
                    final = fn(model, x, *bounds, STEPS, extra_args=extra, callback=callback, disable=True,
                               **kw)
                else:
                    final = fn(model, x, *bounds, extra_args=extra, callback=callback, disable=True, **kw)
            else:
                final = fn(model, x, sigmas, extra_args=extra, callback=callback, disable=True, **kw)
        finally:
            torch.randn_like = real_randn_like
        arrays.update({
            f"{case}/sigmas": sigmas.numpy(), f"{case}/x": torch.stack(xs).numpy(),
            f"{case}/denoised": torch.stack(denoised).numpy(), f"{case}/step_sigmas": np.array(step_sigmas),
            f"{case}/final": final.numpy(), f"{case}/model_calls": np.array(toy.calls),
            f"{case}/strength": np.array(strength), f"{case}/karras": np.array(karras),
            f"{case}/parameterization": np.array(param), f"{case}/sampler": np.array(name),
            f"{case}/kwargs": np.array(repr(kwargs)),
        })
        print(f"{case:28s} steps={len(xs):3d} calls={toy.calls:4d} |final|max={final.abs().max():.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "tests/data/ksampler_reference.npz")
    parser.add_argument("--oracle", type=Path, default=root.parent / "shared/oracle/ldm/tiny-sd1-oracle.npz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record(args.out, args.oracle)


if __name__ == "__main__":
    main()
