"""The sampler registry: one registered function shows up in the dropdown, --set validation, the docs, the
notebook form line and the Generator, and nowhere needs a second edit (DESIGN: "a sampler: one function +
one registry row")."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import deforum.settings as A
from deforum.cli import parse_sets
from deforum.errors import SettingsError
from deforum.sampling import registry
from deforum.sampling.registry import SamplerSpec, register, unregister
from deforum.settings import docs as settings_docs

NAME = "test_euler_midpoint"


def sample_euler_midpoint(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn), written here."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


@pytest.fixture
def registered():
    spec = register(SamplerSpec(NAME, sample_euler_midpoint))
    yield spec
    unregister(NAME)


def test_registering_is_seen_by_dropdown_validation_docs_and_form(registered):
    field = A.FIELDS["args"]["sampler"]
    assert NAME in field.choices and NAME in A.SAMPLERS
    assert list(field.choices)[-1] == NAME
    assert NAME in settings_docs.form_line(field)
    assert f"'{NAME}'" in settings_docs.settings_markdown()
    sets = parse_sets([f"sampler={NAME}"])
    assert A.problems("args", {**A.defaults("args"), **sets["args"]}) == []
    assert not A.check({**A.defaults("args"), **sets["args"]}, A.defaults("anim_args")).problems


def test_the_registration_is_undone_after_the_test():
    assert NAME not in A.FIELDS["args"]["sampler"].choices
    assert NAME not in settings_docs.settings_markdown()
    found = A.problems("args", {**A.defaults("args"), "sampler": NAME})
    assert len(found) == 1 and found[0].startswith(f"sampler={NAME!r}")


def test_a_registered_sampler_renders_through_the_generator(registered):
    """Settings naming the new sampler resolve, and their request renders with it (no other file touched)."""
    from dataclasses import replace

    from deforum.generate import Generator
    from deforum.models import load_model
    from deforum.render.steps import generation_request
    from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

    generator = Generator(load_model(oracle_checkpoint(), oracle_config()))
    request = replace(generation_request(settings_for_test(W=64, H=64, steps=4, scale=7.5, sampler=NAME), 7),
                      prompt="a red cat")
    assert request.sampler == NAME
    image = generator.generate(request)
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    # the variant is the plain Euler update, so it matches the built-in euler bit for bit
    assert torch.allclose(image, generator.generate(replace(request, sampler="euler")), atol=1e-5)


def test_names_are_unique_and_unknown_names_list_the_valid_ones(registered):
    with pytest.raises(ValueError, match="already registered"):
        register(SamplerSpec("euler", sample_euler_midpoint))
    with pytest.raises(SettingsError) as err:
        registry.get("k_euler")
    assert NAME in str(err.value) and "'k_euler'" in str(err.value)


def test_importing_the_settings_table_does_not_import_torch():
    code = "import sys, deforum.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
