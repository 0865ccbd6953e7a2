"""The Conditioning value: cat / lerp / slerp / weighted sum give exactly the tensors the bare-tensor code gave,
and the Generator and the CFG denoiser draw the same bits from a Conditioning as from its tensor."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from deforum.conditioning import (
    Conditioning,
    ConditioningCache,
    _slerp_tensor,
    cat,
    get_uc_and_c,
    interpolate_conditioning,
    lerp,
    prompt_conditioning,
    slerp,
    weighted,
    weighted_sum,
)
from deforum.generate import GenerationRequest, Generator


def tensors(n=3, shape=(1, 77, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


def test_cat_is_the_cfg_batch():
    u, c, _ = tensors()
    both = cat([Conditioning(u), Conditioning(c)])
    assert isinstance(both, Conditioning)
    assert torch.equal(both.cross_attn, torch.cat([u, c]))
    assert torch.equal(cat([u, c]), torch.cat([u, c]))  # bare tensors in, a bare tensor out
    mixed = cat([u, Conditioning(c)])
    assert torch.equal(mixed.cross_attn, torch.cat([u, c]))


def test_cat_batches_pooled_and_extras():
    u, c, p = tensors()
    a = Conditioning(u, pooled=p[:, 0], extras={"ids": torch.zeros(1, 6)})
    b = Conditioning(c, pooled=p[:, 1], extras={"ids": torch.ones(1, 6)})
    both = cat([a, b])
    assert both.batch == 2 and both.pooled.shape == (2, 8) and both.extras["ids"].shape == (2, 6)
    with pytest.raises(ValueError, match="pooled"):
        cat([a, Conditioning(c)])


@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_lerp_is_v06_bit_for_bit(t):
    c1, c2, _ = tensors()
    expected = c1 + (c2 - c1) * t
    assert torch.equal(lerp(Conditioning(c1), Conditioning(c2), t).cross_attn, expected)
    assert torch.equal(interpolate_conditioning(Conditioning(c1), Conditioning(c2), t).cross_attn, expected)
    assert torch.equal(interpolate_conditioning(c1, c2, t), expected)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_every_form_of_slerp_is_the_tensor_slerp_bit_for_bit(t):
    """Conditioning values, interpolate_conditioning and bare tensors all run the one tensor slerp (its maths
    is checked in test_conditioning.py: end points, norms, the parallel fallback)."""
    c1, c2, _ = tensors()
    c2[0, 3] = c1[0, 3] * 2  # a parallel pair: the linear fallback
    expected = _slerp_tensor(c1, c2, t)
    assert torch.equal(slerp(Conditioning(c1), Conditioning(c2), t).cross_attn, expected)
    assert torch.equal(interpolate_conditioning(Conditioning(c1), Conditioning(c2), t, "slerp").cross_attn, expected)
    assert torch.equal(interpolate_conditioning(c1, c2, t, "slerp"), expected)


def test_interpolation_carries_pooled_and_keeps_the_first_extras():
    c1, c2, p = tensors()
    a = Conditioning(c1, pooled=p[:, 0], extras={"ids": torch.zeros(1, 6)})
    b = Conditioning(c2, pooled=p[:, 1], extras={"ids": torch.zeros(1, 6)})
    mid = lerp(a, b, 0.5)
    assert torch.equal(mid.pooled, p[:, 0] + (p[:, 1] - p[:, 0]) * 0.5)
    assert torch.equal(mid.extras["ids"], a.extras["ids"])
    assert torch.equal(slerp(a, b, 0.3).pooled, _slerp_tensor(p[:, 0], p[:, 1], 0.3))


def test_weighted_sum_is_the_old_left_to_right_sum():
    e = dict(zip(("a", "b", "c"), tensors(), strict=True))
    terms = [("a", 0.2), ("b", 0.5), ("c", 0.3)]
    expected = e["a"] * 0.2
    expected = expected + e["b"] * 0.5
    expected = expected + e["c"] * 0.3
    assert torch.equal(weighted_sum(e.__getitem__, terms), expected)
    assert torch.equal(weighted_sum(lambda t: Conditioning(e[t]), terms).cross_attn, expected)
    assert torch.equal(weighted([(Conditioning(e[t]), w) for t, w in terms]).cross_attn, expected)
    with pytest.raises(ValueError):
        weighted_sum(e.__getitem__, [])


def test_to_and_freezing():
    c, p, _ = tensors()
    cond = Conditioning(c, pooled=p[:, 0], extras={"ids": torch.ones(1, 6)})
    half = cond.to(torch.float16)
    assert half.cross_attn.dtype == half.pooled.dtype == half.extras["ids"].dtype == torch.float16
    assert cond.to("cpu").cross_attn.device.type == "cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cond.pooled = None
    with pytest.raises(TypeError):
        cond.extras["other"] = torch.zeros(1)
    assert Conditioning.of(cond) is cond and torch.equal(Conditioning.of(c).cross_attn, c)


# -- on the tiny model -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generator(tiny):
    from deforum.models import load_model

    return Generator(load_model(*tiny))


def test_prompt_conditioning_equals_the_tensor_path(generator):
    cache = ConditioningCache(generator.model)
    for prompt in ("a cat", "a cat:1 a dog:2", "cat:1 dog:-1", "a:1 b:1 c:-0.5 d:-1.5"):
        uc_t, c_t = get_uc_and_c(prompt, cache)
        uc, c = prompt_conditioning(prompt, cache.conditioning)
        assert torch.equal(uc.cross_attn, uc_t) and torch.equal(c.cross_attn, c_t)
        uc_g, c_g = generator.prompt_conditioning(prompt)
        assert torch.equal(uc_g.cross_attn, uc_t) and torch.equal(c_g.cross_attn, c_t)


def test_the_cfg_denoiser_gives_the_same_bits_for_conditioning_and_tensors(generator):
    from deforum.sampling.denoisers import CFGDenoiser

    uc, c = generator.conditioning("a red cat")
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([3.0])
    for sync in (True, False):
        cfg = CFGDenoiser(generator.denoiser, cond_uncond_sync=sync)
        with torch.no_grad():
            plain = cfg(x, sigma, uncond=uc, cond=c, cond_scale=7.5)
            value = cfg(x, sigma, uncond=Conditioning(uc), cond=Conditioning(c), cond_scale=7.5)
        assert torch.equal(plain, value)


def test_the_generator_gives_the_same_image_for_conditioning_and_tensors(generator):
    uc, c = generator.conditioning("a red cat")
    base = GenerationRequest(W=64, H=64, steps=3, scale=7.5, seed=9, sampler="euler")
    a = generator.generate(dataclasses.replace(base, uc=uc, c=c))
    b = generator.generate(dataclasses.replace(base, uc=Conditioning(uc), c=Conditioning(c)))
    d = generator.generate(dataclasses.replace(base, prompt="a red cat"))
    assert torch.equal(a, b) and torch.equal(a, d)


def test_generation_request_holds_every_argument_of_the_call(generator):
    from deforum.render.steps import generation_request
    from deforum.testing import settings_for_test

    names = [f.name for f in dataclasses.fields(GenerationRequest)]
    assert len(names) == len(set(names)) >= 33
    # the settings map onto request fields only (an unknown name would be a TypeError in generation_request)
    assert isinstance(generation_request(settings_for_test(W=64, H=64, karras_schedule=False), 1), GenerationRequest)
    request = GenerationRequest(seed=4, W=64, H=64, prompt="a red cat", steps=3, sampler="euler")
    out = generator.generate(request)
    assert torch.equal(out, generator.generate(GenerationRequest(seed=4, W=64, H=64, prompt="a red cat", steps=3,
                                                                 sampler="euler")))
    other = dataclasses.replace(request, seed=5)
    assert other.seed == 5 and request.seed == 4
    assert not torch.equal(out, generator.generate(other))
    with pytest.raises(TypeError):
        GenerationRequest(seed=1, W=64, H=64, prompt="x", not_an_argument=1)
    with pytest.raises(TypeError):
        generator(seed=1, W=64, H=64, prompt="x")  # the keyword door is gone: generate(request) only
    assert "request" in inspect.signature(Generator.generate).parameters
