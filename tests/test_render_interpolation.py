"""Interpolation mode (spec animation 8, with 12.1 #11 fixed) on the tiny checkpoint."""

import dataclasses
from types import MappingProxyType

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.conditioning import Conditioning, interpolate_conditioning
from deforum.errors import MediaError, SettingsError
from deforum.generate import Generator
from deforum.image.convert import sample_to_uint8
from deforum.models import load_model
from deforum.plan import interpolation_frames, make_plan
from deforum.render.inputs import read_inputs
from deforum.render.interpolation import key_image_frames, render_interpolation
from deforum.render.steps import generation_request
from deforum.settings import RunIdentity
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

TIMESTRING = "20240506070809"
SEED = 321
FOUR = {0: "a red apple:1 blurry:-1", 2: "a yellow banana", 3: "a brown coconut:1 green:-0.5", 5: "a durian"}


@pytest.fixture(scope="module")
def generator():
    return Generator(load_model(oracle_checkpoint(), oracle_config()))


class Recorder:
    """A Generator stand-in that records every request's fields (by name) and forwards it."""

    def __init__(self, generator):
        self.generator = generator
        self.calls = []

    def prompt_conditioning(self, *args, **kwargs):
        return self.generator.prompt_conditioning(*args, **kwargs)

    def generate(self, request):
        self.calls.append({f.name: getattr(request, f.name) for f in dataclasses.fields(request)})
        return self.generator.generate(request)


def interp_settings(prompts, **overrides):
    values = dict(W=64, H=64, steps=4, sampler="euler", seed=SEED, animation_mode="Interpolation",
                  interpolate_x_frames=1, interpolate_key_frames=False)
    values.update(overrides)
    return settings_for_test(animation_prompts=prompts, **values)


def run(tmp_path, settings, generator, *, on_frame=None):
    """identity -> plan -> inputs -> render, as the runner does."""
    identity = RunIdentity(TIMESTRING, tmp_path / "out", SEED)
    plan = make_plan(settings, identity.seed)
    return render_interpolation(settings, identity, generator, plan, read_inputs(settings), on_frame=on_frame)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def plain(generator, settings, prompt):
    """A plain txt2img of one prompt with the run's seed: what a key image must be."""
    request = dataclasses.replace(generation_request(settings, SEED), strength=0.0, prompt=prompt)
    return sample_to_uint8(generator.generate(request))


def cross_attn(value):
    return Conditioning.of(value).cross_attn


PROMPT_SETS = {1: {0: "a red apple"}, 2: {0: "a red apple:1 blurry:-1", 3: "a yellow banana"}, 4: FOUR}


@pytest.mark.parametrize("n_prompts, by_keys, count, key_frames", [
    (1, False, 1, [0]),  # v0.6 crashed on one prompt with key frames; one frame here
    (1, True, 1, [0]),
    (2, False, 3, [0, 2]),  # (P-1)(X+1)+1 with X = 1, as v0.6
    (2, True, 4, [0, 3]),  # key_last - key_first + 1: frame n shows prompt key n
    (4, False, 7, [0, 2, 4, 6]),
    (4, True, 6, [0, 2, 3, 5]),  # every pair (v0.6 rendered only the last pair: 3 frames)
])
def test_frame_counts_names_seed_and_key_images(generator, tmp_path, n_prompts, by_keys, count, key_frames):
    prompts = PROMPT_SETS[n_prompts]
    settings = interp_settings(prompts, interpolate_key_frames=by_keys)
    keys = sorted(prompts)
    assert len(interpolation_frames(n_prompts, keys, 1, by_keys)) == count

    recorder = Recorder(generator)
    seen = []
    written = run(tmp_path, settings, recorder, on_frame=lambda n, p: seen.append(n))
    out = tmp_path / "out"
    assert written == [out / f"{TIMESTRING}_{n:05}.png" for n in range(count)]
    assert seen == list(range(count))
    assert sorted(out.iterdir()) == written  # nothing else is written
    assert [c["seed"] for c in recorder.calls] == [SEED] * count
    assert all(c["init_image"] is None and c["strength"] == 0.0 for c in recorder.calls)

    # The key images are the frames at t = 0: plain generations of their own prompt (negatives included).
    assert key_image_frames(make_plan(settings, SEED)) == key_frames
    for frame, key in zip(key_frames, keys, strict=True):
        assert np.array_equal(read(written[frame]), plain(generator, settings, prompts[key]))


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_in_between_frames_blend_uc_and_c_of_the_two_keys(generator, tmp_path, method):
    prompts = {0: "a red apple:1 blurry:-1", 10: "a yellow banana:1 dark:-1"}
    recorder = Recorder(generator)
    run(tmp_path, interp_settings(prompts, interpolate_x_frames=3, interpolation_method=method), recorder)
    assert len(recorder.calls) == 5
    uc_a, c_a = generator.conditioning(prompts[0])
    uc_b, c_b = generator.conditioning(prompts[10])
    for j, call in enumerate(recorder.calls[:4]):
        t = j / 4
        assert torch.allclose(cross_attn(call["c"]), interpolate_conditioning(c_a, c_b, t, method), atol=1e-6)
        # each key's negative prompt is its own: uc moves from "blurry" to "dark" (v0.6 used "dark" throughout)
        assert torch.allclose(cross_attn(call["uc"]), interpolate_conditioning(uc_a, uc_b, t, method), atol=1e-6)
    last = recorder.calls[-1]
    assert torch.equal(cross_attn(last["c"]), c_b) and torch.equal(cross_attn(last["uc"]), uc_b)
    middle = cross_attn(recorder.calls[2]["c"])
    assert not torch.allclose(middle, c_a) and not torch.allclose(middle, c_b)


def test_pooled_and_extras_are_interpolated_with_the_cross_attention(tmp_path):
    """The Conditioning value travels whole: a family's pooled embedding is blended with the same t and the
    image extras are kept."""
    base = torch.zeros(1, 2, 3)

    class Encodes:
        def __init__(self):
            self.requests = []

        def prompt_conditioning(self, text, **kwargs):
            value = float(len(text))
            make = lambda v: Conditioning(base + v, torch.full((1, 4), v), {"time_ids": torch.ones(1, 6)})  # noqa: E731
            return make(0.0), make(value)

        def generate(self, request):
            self.requests.append(request)
            return torch.zeros(1, 3, request.H, request.W)

    fake = Encodes()
    run(tmp_path, interp_settings({0: "ab", 1: "abcdef"}, interpolate_x_frames=1), fake)
    middle = fake.requests[1].c
    assert isinstance(middle, Conditioning)
    assert torch.equal(middle.cross_attn, base + 4.0) and torch.equal(middle.pooled, torch.full((1, 4), 4.0))
    assert torch.equal(middle.extras["time_ids"], torch.ones(1, 6))


def test_use_init_applies_strength_to_every_frame(generator, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.full((80, 48, 3), 200, np.uint8)).save(init)
    recorder = Recorder(generator)
    run(tmp_path, interp_settings({0: "a", 1: "b"}, use_init=True, init_image=str(init), strength=0.5), recorder)
    assert len(recorder.calls) == 3
    assert all(c["strength"] == 0.5 and c["init_image"].size == (64, 64) for c in recorder.calls)


@pytest.mark.parametrize("case, error, message", [
    ("outdir under a regular file", MediaError, "outdir.*cannot write"),
    ("no prompts", SettingsError, "animation_prompts"),
    ("keys not increasing", SettingsError, "keys must increase"),
    ("missing init image", MediaError, "init_image"),
    ("unknown method", SettingsError, "interpolation_method"),
])
def test_bad_inputs_fail_before_any_diffusion(tmp_path, case, error, message):
    overrides = {}
    prompts = {0: "a", 4: "b"}
    outdir = tmp_path / "out"
    if case == "outdir under a regular file":
        (tmp_path / "file").write_text("x")
        outdir = tmp_path / "file" / "out"
    elif case == "no prompts":
        prompts = {}
    elif case == "missing init image":
        overrides = dict(use_init=True, init_image=str(tmp_path / "nope.png"))
    elif case == "unknown method":
        overrides = dict(interpolation_method="cubic")
    calls = []

    class Refuses:
        def prompt_conditioning(self, *a, **k):
            calls.append("conditioning")
            raise AssertionError("no encoding before the inputs are checked")

        def generate(self, request):
            calls.append(request)
            raise AssertionError("no diffusion before the inputs are checked")

    with pytest.raises(error, match=message):
        if case == "keys not increasing":
            # typed settings key the prompts by int, so "0" and 0 can only meet here (the plan refuses them)
            settings = interp_settings({0: "a"}, interpolate_key_frames=True)
            doubled = MappingProxyType({0: "a", "0": "b"})
            settings = dataclasses.replace(
                settings, prompts=dataclasses.replace(settings.prompts, animation_prompts=doubled))
        else:
            settings = interp_settings(prompts, **overrides)
        identity = RunIdentity(TIMESTRING, outdir, SEED)
        plan = make_plan(settings, identity.seed)
        render_interpolation(settings, identity, Refuses(), plan, read_inputs(settings))
    assert calls == []
