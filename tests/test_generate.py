"""The Generator on the tiny checkpoint: samplers, init images, masks, seeds, callbacks (spec 0, 5, 7, 8)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import SettingsError
from deforum.generate import GenerationRequest, Generator, image_to_sample
from deforum.models import load_model
from deforum.render.steps import generation_request
from deforum.sampling import SAMPLERS
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

W = H = 64
BASE = dict(W=W, H=H, prompt="a red cat", steps=4, scale=7.5)


def make(generator, **fields):
    """One image from a request built from scratch."""
    return generator.generate(GenerationRequest(**fields))


@pytest.fixture(scope="module")
def generator():
    return Generator(load_model(oracle_checkpoint(), oracle_config()))


@pytest.fixture(scope="module")
def init():
    return Image.fromarray(np.random.RandomState(0).randint(0, 256, (H, W, 3), np.uint8))


def halves() -> Image.Image:
    """White left half (keep the init), black right half (regenerate)."""
    array = np.zeros((H, W), np.uint8)
    array[:, : W // 2] = 255
    return Image.fromarray(array)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_with_and_without_init_and_mask(generator, init, sampler):
    txt2img = make(generator, **BASE, seed=7, sampler=sampler)
    img2img = make(generator, **BASE, seed=7, sampler=sampler, init_image=init, strength=0.5)
    masked = make(generator, **BASE, seed=7, sampler=sampler, init_image=init, strength=0.5, mask=halves())
    again = make(generator, **BASE, seed=7, sampler=sampler, init_image=init, strength=0.5, mask=halves())
    for image in (txt2img, img2img, masked):
        assert image.shape == (1, 3, H, W) and image.dtype == torch.float32 and image.device.type == "cpu"
        assert torch.isfinite(image).all()
    assert torch.equal(masked, again)  # fixed seed: identical run to run
    assert not torch.allclose(txt2img, img2img)
    assert not torch.allclose(img2img, masked)


def test_same_seed_same_image_other_seed_other_image(generator):
    a = make(generator, **BASE, seed=1, sampler="euler_ancestral")
    b = make(generator, **BASE, seed=1, sampler="euler_ancestral")
    c = make(generator, **BASE, seed=2, sampler="euler_ancestral")
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_sde", "ddim"])
def test_no_global_rng_is_used_so_the_device_does_not_change_the_image(generator, init, sampler):
    """Every draw comes from the call's own CPU generator: moving the model (here: CPU -> CPU, the only
    device this machine has) and disturbing torch's global RNG leave the image bit for bit the same, and the
    global RNG state is untouched (a device's RNG is never consulted)."""
    kwargs = dict(BASE, seed=9, sampler=sampler, init_image=init, strength=0.3, mask=halves(), ddim_eta=0.5)
    first = make(generator, **kwargs)
    generator.model.to("cpu")
    torch.manual_seed(12345)
    state = torch.get_rng_state()
    second = make(generator, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)


def test_seed_past_2_32_wraps_instead_of_turning_random(generator):
    a = make(generator, **BASE, seed=5, sampler="euler")
    b = make(generator, **BASE, seed=5 + 2**32, sampler="euler")
    assert torch.equal(a, b)


def test_white_mask_region_is_kept_black_region_regenerated(generator, init):
    out = make(generator, **BASE, seed=3, sampler="euler", init_image=init, strength=0.3, mask=halves(),
               mask_overlay_blur=0)
    original = image_to_sample(init)
    assert torch.equal(out[..., : W // 2], original[..., : W // 2])
    assert (out[..., W // 2:] - original[..., W // 2:]).abs().mean() > 0.05


def test_blurred_overlay_keeps_the_far_inside_of_the_white_region(generator, init):
    out = make(generator, **BASE, seed=3, sampler="euler", init_image=init, strength=0.3, mask=halves(),
               mask_overlay_blur=2)  # radius 8 px: columns 0..23 are fully inside
    original = image_to_sample(init)
    torch.testing.assert_close(out[..., :20], original[..., :20], atol=1e-5, rtol=0)


def test_invert_mask_swaps_kept_and_regenerated(generator, init):
    out = make(generator, **BASE, seed=3, sampler="euler", init_image=init, strength=0.3, mask=halves(),
               mask_overlay_blur=0, invert_mask=True)
    original = image_to_sample(init)
    assert torch.equal(out[..., W // 2:], original[..., W // 2:])
    assert not torch.allclose(out[..., : W // 2], original[..., : W // 2])


def test_overlay_mask_off_leaves_the_decoded_pixels(generator, init):
    out = make(generator, **BASE, seed=3, sampler="euler", init_image=init, strength=0.3, mask=halves(),
               overlay_mask=False)
    assert not torch.equal(out[..., : W // 2], image_to_sample(init)[..., : W // 2])


def test_scale_1_runs_the_conditional_pass_only(generator):
    uc_a = generator.encode("")
    uc_b = generator.encode("something else entirely")
    c = generator.encode("a red cat")
    a = make(generator, W=W, H=H, steps=4, seed=4, sampler="euler", scale=1, uc=uc_a, c=c)
    b = make(generator, W=W, H=H, steps=4, seed=4, sampler="euler", scale=1, uc=uc_b, c=c)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)  # uc plays no part at scale 1
    guided = make(generator, W=W, H=H, steps=4, seed=4, sampler="euler", scale=7.5, uc=uc_a, c=c)
    assert not torch.allclose(a, guided)


def test_explicit_conditioning_equals_the_prompt(generator):
    uc, c = generator.conditioning("a red cat")
    assert torch.equal(make(generator, **BASE, seed=9, sampler="euler"),
                       make(generator, W=W, H=H, steps=4, scale=7.5, seed=9, sampler="euler", uc=uc, c=c))


def test_cond_uncond_sync_off_gives_the_same_image(generator):
    a = make(generator, **BASE, seed=5, sampler="dpmpp_2m", cond_uncond_sync=True)
    b = make(generator, **BASE, seed=5, sampler="dpmpp_2m", cond_uncond_sync=False)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("zero_it, expect_equal", [(True, True), (False, False)])
def test_strength_0_no_init(generator, zero_it, expect_equal):
    full = make(generator, **BASE, seed=6, sampler="euler", strength=0.0)
    partial = make(generator, **BASE, seed=6, sampler="euler", strength=0.5, strength_0_no_init=zero_it)
    assert torch.equal(full, partial) == expect_equal


class Counting:
    """A denoiser wrapper (the gradient-conditioning hook) that counts model evaluations."""

    def __init__(self):
        self.calls = 0

    def __call__(self, inner):
        def wrapped(x, sigma, **kwargs):
            self.calls += 1
            return inner(x, sigma, **kwargs)
        return wrapped


@pytest.fixture(scope="module")
def counting_generator(generator):
    counter = Counting()
    wrapped = Generator(generator.model, denoiser_wrapper=counter)
    return wrapped, counter


@pytest.mark.parametrize("steps, strength, calls", [(4, 0.0, 4), (6, 0.5, 3), (50, 0.9, 4), (4, 1.0, 0)])
def test_denoiser_wrapper_sees_every_model_evaluation(counting_generator, init, steps, strength, calls):
    wrapped, counter = counting_generator
    counter.calls = 0
    make(wrapped, W=W, H=H, prompt="a cat", seed=1, sampler="euler", steps=steps, strength=strength,
         init_image=init)
    assert counter.calls == calls


def test_strength_1_returns_the_vae_round_trip_of_the_init(counting_generator, init):
    wrapped, counter = counting_generator
    counter.calls = 0
    out = make(wrapped, W=W, H=H, prompt="a cat", seed=1, sampler="euler", steps=4, strength=1.0, init_image=init)
    latent = wrapped.encode_image(image_to_sample(init), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, wrapped.decode(latent))
    assert counter.calls == 0


def test_progress_and_per_step_images(generator, init, tmp_path):
    progress, shown, raw = [], [], []
    make(generator, **BASE | {"steps": 6}, seed=11, sampler="euler", init_image=init, strength=0.5,
         progress=lambda step, total: progress.append((step, total)),
         step_dir=tmp_path / "20240101000000_00_11", show_step=lambda label, image: shown.append(label),
         callback=lambda info: raw.append(int(info["i"])))
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert raw == [0, 1, 2]
    assert shown == ["x0_pred", "x"] * 3
    names = sorted(p.name for p in (tmp_path / "20240101000000_00_11").iterdir())
    assert names == [f"x0_pred_{i:05}.png" for i in range(3)] + [f"x_{i:05}.png" for i in range(3)]
    assert Image.open(tmp_path / "20240101000000_00_11" / "x_00000.png").size == (W, H)


def test_init_sample_and_init_latent_sources(generator, init):
    from_image = make(generator, **BASE, seed=2, sampler="euler", init_image=init, strength=0.5)
    from_sample = make(generator, **BASE, seed=2, sampler="euler", init_sample=image_to_sample(init), strength=0.5)
    assert torch.equal(from_image, from_sample)
    latent = generator.encode_image(image_to_sample(init), torch.Generator().manual_seed(2))
    from_latent = make(generator, **BASE, seed=2, sampler="euler", init_latent=latent, strength=0.5)
    assert from_latent.shape == (1, 3, H, W) and torch.isfinite(from_latent).all()


@pytest.mark.parametrize("overrides, message", [
    ({"sampler": "k_euler"}, "klms"),
    ({"seed": -1}, "seed"),
    ({"W": 60}, "multiples of 8"),
    ({"strength": 1.5}, "strength"),
    ({"mask": "MASK"}, "use_mask"),
    ({"prompt": None}, "prompt"),
])
def test_bad_arguments_are_settings_errors(generator, overrides, message):
    kwargs = BASE | {"seed": 1, "sampler": "euler"} | overrides
    if kwargs.get("mask") == "MASK":
        kwargs["mask"] = halves()
    with pytest.raises(SettingsError, match=message):
        make(generator, **kwargs)


def test_init_of_the_wrong_size_is_an_error(generator):
    small = Image.new("RGB", (32, 32))
    with pytest.raises(SettingsError, match="64 x 64"):
        make(generator, **BASE, seed=1, sampler="euler", init_image=small, strength=0.5)


def test_generation_request_carries_the_settings_values_only():
    """Every generation field off its default in the settings reaches the request under the Generator's name
    (karras_schedule -> karras); the seed is the argument, not settings.image.seed; nothing else is set."""
    settings = settings_for_test(
        W=128, H=64, steps=5, sampler="ddim", scale=3, seed=1, outdir="x", ddim_eta=0.25, dynamic_threshold=2.5,
        static_threshold=1.5, prompt_weighting=False, normalize_prompt_weights=False,
        log_weighted_subprompts=True, use_init=True, init_image="x.png", strength=0.4, strength_0_no_init=False,
        invert_mask=True, mask_brightness_adjust=1.5, mask_contrast_adjust=0.5, overlay_mask=False,
        mask_overlay_blur=2, cond_uncond_sync=False, karras_schedule=True)
    request = generation_request(settings, 9)
    expected = {"seed": 9, "W": 128, "H": 64, "steps": 5, "sampler": "ddim", "scale": 3, "ddim_eta": 0.25,
                "dynamic_threshold": 2.5, "static_threshold": 1.5, "prompt_weighting": False,
                "normalize_prompt_weights": False, "log_weighted_subprompts": True, "strength": 0.4,
                "strength_0_no_init": False, "invert_mask": True, "mask_brightness_adjust": 1.5,
                "mask_contrast_adjust": 0.5, "overlay_mask": False, "mask_overlay_blur": 2,
                "cond_uncond_sync": False, "karras": True}
    assert {name: getattr(request, name) for name in expected} == expected
    assert request.karras == settings.image.karras_schedule and not hasattr(request, "karras_schedule")
    for field in dataclasses.fields(GenerationRequest):
        if field.name not in expected:  # prompt, frame, conditioning, init, mask, hooks: per image, not settings
            assert getattr(request, field.name) == field.default, field.name
        else:  # and every settings-borne field was moved off its default above
            assert field.default is dataclasses.MISSING or expected[field.name] != field.default, field.name
