"""Interpolation mode (spec animation 8, with 12.1 #11 fixed) on the tiny checkpoint."""

import numpy as np
import pytest
import torch
from helpers import Recorder
from PIL import Image

from deforum.args import make_namespace
from deforum.conditioning import interpolate_conditioning
from deforum.errors import MediaError, SettingsError
from deforum.generate import Generator, generation_kwargs
from deforum.image.convert import sample_to_uint8
from deforum.models import load_model
from deforum.plan import interpolation_frames
from deforum.render.interpolation import interpolation_plan, key_image_frames, render_interpolation
from deforum.testing import oracle_checkpoint, oracle_config

TIMESTRING = "20240506070809"
SEED = 321
FOUR = {0: "a red apple:1 blurry:-1", 2: "a yellow banana", 3: "a brown coconut:1 green:-0.5", 5: "a durian"}


@pytest.fixture(scope="module")
def generator():
    return Generator(load_model(oracle_checkpoint(), oracle_config()))


def interp_args(tmp_path, **overrides):
    values = dict(W=64, H=64, steps=4, sampler="euler", seed=SEED, outdir=str(tmp_path / "out"),
                  timestring=TIMESTRING)
    values.update(overrides)
    return make_namespace("args", values)


def interp_anim_args(**overrides):
    values = dict(animation_mode="Interpolation", interpolate_x_frames=1, interpolate_key_frames=False)
    values.update(overrides)
    return make_namespace("anim_args", values)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def plain(generator, args, prompt):
    """A plain txt2img of one prompt with the run's seed: what a key image must be."""
    return sample_to_uint8(generator(**generation_kwargs(args) | {"strength": 0.0}, seed=SEED, prompt=prompt))


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
    args = interp_args(tmp_path)
    anim_args = interp_anim_args(interpolate_key_frames=by_keys)
    keys = sorted(prompts)
    assert len(interpolation_frames(n_prompts, keys, 1, by_keys)) == count

    recorder = Recorder(generator)
    seen = []
    written = render_interpolation(args, anim_args, prompts, recorder, on_frame=lambda n, p: seen.append(n))
    out = tmp_path / "out"
    assert written == [out / f"{TIMESTRING}_{n:05}.png" for n in range(count)]
    assert seen == list(range(count))
    assert sorted(out.iterdir()) == written  # nothing else is written
    assert [c["seed"] for c in recorder.calls] == [SEED] * count
    assert all(c["init_image"] is None and c["strength"] == 0.0 for c in recorder.calls)

    # The key images are the frames at t = 0: plain generations of their own prompt (negatives included).
    assert key_image_frames(interpolation_plan(args, anim_args, prompts)) == key_frames
    for frame, key in zip(key_frames, keys, strict=True):
        assert np.array_equal(read(written[frame]), plain(generator, args, prompts[key]))


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_in_between_frames_blend_uc_and_c_of_the_two_keys(generator, tmp_path, method):
    prompts = {0: "a red apple:1 blurry:-1", 10: "a yellow banana:1 dark:-1"}
    args = interp_args(tmp_path)
    recorder = Recorder(generator)
    render_interpolation(args, interp_anim_args(interpolate_x_frames=3, interpolation_method=method), prompts,
                         recorder)
    assert len(recorder.calls) == 5
    uc_a, c_a = generator.conditioning(prompts[0])
    uc_b, c_b = generator.conditioning(prompts[10])
    for j, call in enumerate(recorder.calls[:4]):
        t = j / 4
        assert torch.allclose(call["c"], interpolate_conditioning(c_a, c_b, t, method), atol=1e-6)
        # each key's negative prompt is its own: uc moves from "blurry" to "dark" (v0.6 used "dark" throughout)
        assert torch.allclose(call["uc"], interpolate_conditioning(uc_a, uc_b, t, method), atol=1e-6)
    assert torch.equal(recorder.calls[-1]["c"], c_b) and torch.equal(recorder.calls[-1]["uc"], uc_b)
    middle = recorder.calls[2]
    assert not torch.allclose(middle["c"], c_a) and not torch.allclose(middle["c"], c_b)


def test_use_init_applies_strength_to_every_frame(generator, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.full((80, 48, 3), 200, np.uint8)).save(init)
    args = interp_args(tmp_path, use_init=True, init_image=str(init), strength=0.5)
    recorder = Recorder(generator)
    render_interpolation(args, interp_anim_args(), {0: "a", 1: "b"}, recorder)
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
    args = interp_args(tmp_path)
    anim = dict(vars(interp_anim_args()))
    prompts = {0: "a", 4: "b"}
    if case == "outdir under a regular file":
        (tmp_path / "file").write_text("x")
        args.outdir = str(tmp_path / "file" / "out")
    elif case == "no prompts":
        prompts = {}
    elif case == "keys not increasing":
        anim["interpolate_key_frames"] = True
        prompts = {0: "a", "0": "b"}
    elif case == "missing init image":
        args.use_init, args.init_image = True, str(tmp_path / "nope.png")
    elif case == "unknown method":
        anim["interpolation_method"] = "cubic"
    calls = []

    class Refuses:
        def conditioning(self, *a, **k):
            calls.append("conditioning")
            raise AssertionError("no encoding before the inputs are checked")

        def __call__(self, **kwargs):
            calls.append(kwargs)
            raise AssertionError("no diffusion before the inputs are checked")

    with pytest.raises(error, match=message):
        render_interpolation(args, anim, prompts, Refuses())
    assert calls == []
