"""Prompt -> (uc, c): v0.6 weighted sub-prompt sums on the tiny checkpoint's text encoder (spec 2.2)."""

import logging

import pytest
import torch

from deforum.conditioning import ConditioningCache, get_uc_and_c, interpolate_conditioning
from deforum.errors import SettingsError
from deforum.models import load_model
from deforum.testing import oracle_checkpoint, oracle_config


@pytest.fixture(scope="module")
def model():
    return load_model(oracle_checkpoint(), oracle_config())


def E(model, text):
    return model.get_learned_conditioning([text])


# (prompt, frame, normalize, expected c terms, expected uc terms); None terms = the raw prompt / ""
CASES = [
    ("a cat", 0, True, [("a cat", 1.0)], [("", 1.0)]),
    ("a cat:1 a dog:2", 0, True, [("a cat", 1 / 3), ("a dog", 2 / 3)], [("", 1.0)]),
    ("a cat:1 a dog:2", 0, False, [("a cat", 1.0), ("a dog", 2.0)], [("", 1.0)]),
    ("cat:1 dog:-1", 0, True, [("cat", 1.0)], [("dog", 1.0)]),
    ("a:1 b:1 c:-0.5 d:-1.5", 0, True, [("a", 0.5), ("b", 0.5)], [("c", 0.25), ("d", 0.75)]),
    ("a:1 b:1 c:-0.5 d:-1.5", 0, False, [("a", 1.0), ("b", 1.0)], [("c", 0.5), ("d", 1.5)]),
    ("x\\:y:2 z", 0, True, [("x:y", 2 / 3), ("z", 1 / 3)], [("", 1.0)]),
    # only negatives: v0.6 encodes the whole raw prompt as c
    ("dog:-1", 0, True, [("dog:-1", 1.0)], [("dog", 1.0)]),
    ("cat:`t` dog:1", 0, True, [("dog", 1.0)], [("", 1.0)]),
    ("cat:`t` dog:1", 1, True, [("cat", 0.5), ("dog", 0.5)], [("", 1.0)]),
]


@pytest.mark.parametrize("prompt, frame, normalize, c_terms, uc_terms", CASES)
def test_weighted_sum_of_subprompt_embeddings(model, prompt, frame, normalize, c_terms, uc_terms):
    uc, c = get_uc_and_c(prompt, ConditioningCache(model), frame=frame, normalize_prompt_weights=normalize)
    expected_c = sum(w * E(model, text) for text, w in c_terms)
    expected_uc = sum(w * E(model, text) for text, w in uc_terms)
    assert c.shape == (1, 77, 32)
    torch.testing.assert_close(c, expected_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(uc, expected_uc, rtol=1e-5, atol=1e-5)


def test_subprompts_give_a_different_c_than_the_raw_text(model):
    uc, c = get_uc_and_c("a cat:1 a dog:2", ConditioningCache(model))
    assert not torch.allclose(c, E(model, "a cat:1 a dog:2"), atol=1e-3)


def test_prompt_weighting_off_encodes_the_raw_text(model):
    uc, c = get_uc_and_c("a cat:2 dog:-1", ConditioningCache(model), prompt_weighting=False)
    torch.testing.assert_close(c, E(model, "a cat:2 dog:-1"))
    torch.testing.assert_close(uc, E(model, ""))


def test_cache_encodes_a_repeated_prompt_once(model):
    cache = ConditioningCache(model)
    for frame in range(5):
        get_uc_and_c("a cat:1 a dog:2", cache, frame=frame)
    assert cache.encode_count == 3  # "a cat", "a dog", ""
    first = cache("a cat")
    assert cache("a cat") is first


def test_cache_drops_the_least_recently_used_text(model):
    cache = ConditioningCache(model, maxsize=2)
    cache("a")
    cache("b")
    cache("a")  # refresh "a": "b" is now the oldest
    cache("c")
    assert cache.encode_count == 3
    cache("a")
    assert cache.encode_count == 3
    cache("b")
    assert cache.encode_count == 4


def test_log_weighted_subprompts(model, caplog):
    with caplog.at_level(logging.INFO, logger="deforum.conditioning"):
        get_uc_and_c("a cat:2 a dog:-1", ConditioningCache(model), log_weighted_subprompts=True)
    text = caplog.text
    assert "positive" in text and "'a cat'" in text
    assert "negative" in text and "'a dog'" in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="deforum.conditioning"):
        get_uc_and_c("a cat:2", ConditioningCache(model))
    assert caplog.text == ""


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 1.0])
def test_linear_interpolation_is_v06_formula(t):
    g = torch.Generator().manual_seed(0)
    c1, c2 = torch.randn(1, 77, 8, generator=g), torch.randn(1, 77, 8, generator=g)
    torch.testing.assert_close(interpolate_conditioning(c1, c2, t), c1 + (c2 - c1) * t)


def test_slerp_keeps_end_points_and_interpolates_norms():
    g = torch.Generator().manual_seed(1)
    c1, c2 = torch.randn(1, 77, 8, generator=g), 3 * torch.randn(1, 77, 8, generator=g)
    torch.testing.assert_close(interpolate_conditioning(c1, c2, 0.0, "slerp"), c1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(interpolate_conditioning(c1, c2, 1.0, "slerp"), c2, atol=1e-5, rtol=1e-5)
    mid = interpolate_conditioning(c1, c2, 0.5, "slerp")
    expected_norm = (c1.norm(dim=-1) + c2.norm(dim=-1)) / 2
    torch.testing.assert_close(mid.norm(dim=-1), expected_norm, atol=1e-4, rtol=1e-4)
    # parallel vectors fall back to the linear formula
    parallel = interpolate_conditioning(c1, 2 * c1, 0.5, "slerp")
    torch.testing.assert_close(parallel, 1.5 * c1, atol=1e-5, rtol=1e-5)


def test_unknown_interpolation_is_an_error():
    with pytest.raises(SettingsError, match="slerp"):
        interpolate_conditioning(torch.zeros(1), torch.ones(1), 0.5, "cubic")
