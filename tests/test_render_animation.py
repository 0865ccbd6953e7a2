"""2D and 3D animations end to end on the tiny checkpoint and a tiny random depth model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum.errors import DeforumError
from deforum.runner import render
from deforum.testing import tiny_checkpoint, tiny_depth_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assets")
    ckpt, yaml = tiny_checkpoint(folder, fmt="safetensors")
    depth = tiny_depth_model(folder / "tiny-dpt")
    return ckpt, yaml, depth


def root_for(assets, output):
    ckpt, yaml, _ = assets
    return {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(yaml), "output_path": str(output), "map_location": "cpu",
            "mount_google_drive": False}


def anim_settings(assets, mode, cadence, max_frames=24, **extra):
    return dict(animation_mode=mode, max_frames=max_frames, diffusion_cadence=str(cadence),
                depth_model=str(assets[2]), translation_z="0:(5)", **extra)


ARGS = dict(W=128, H=128, seed=7, steps=6, sampler="euler", scale=7.5)
PROMPTS = {0: "a red apple", 12: "a yellow banana"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["2D", "3D"])
@pytest.mark.parametrize("cadence", [1, 3])
def test_animation_writes_every_frame_and_the_settings(tmp_path, assets, mode, cadence):
    result = render(ARGS, anim_settings(assets, mode, cadence, save_depth_maps=(mode == "3D")), None, PROMPTS,
                    root_for(assets, tmp_path), progress=False)
    frames = sorted(result.outdir.glob(f"{result.timestring}_0*.png"))
    assert [p.name for p in frames] == [f"{result.timestring}_{j:05}.png" for j in range(24)]
    assert result.frames == frames
    assert result.settings_path.is_file()
    saved = json.loads(result.settings_path.read_text())
    assert saved["animation_mode"] == mode and saved["seed"] == 7 and saved["max_frames"] == 24
    for path in frames:
        image = np.asarray(Image.open(path))
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    if mode == "3D":
        depth_maps = sorted(result.outdir.glob(f"{result.timestring}_depth_*.png"))
        assert len(depth_maps) == 24
    # Motion happened: consecutive frames differ, and the frames are not all alike.
    first, last = (np.asarray(Image.open(frames[i]), dtype=np.int16) for i in (0, -1))
    assert np.abs(first - last).mean() > 1.0


def test_bad_schedule_is_reported_before_the_model_loads(tmp_path, assets):
    root = root_for(assets, tmp_path)
    root["custom_checkpoint_path"] = str(tmp_path / "does-not-exist.ckpt")  # would fail if it were loaded
    with pytest.raises(DeforumError, match="zoom"):
        render(ARGS, anim_settings(assets, "2D", 1, zoom="0:(1.04"), None, PROMPTS, root, progress=False)


RUN_SCRIPT = """
import sys, json
from deforum.runner import render
args, anim, prompts, root = json.loads(sys.argv[1])
result = render(args, anim, None, {int(k): v for k, v in prompts.items()}, root, progress=False)
print("TIMESTRING", result.timestring, flush=True)
"""


def run_in_subprocess(settings, kill_after_frames=None, outdir_glob=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, json.dumps(settings)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after_frames is None:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        return out
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if len(list(outdir_glob())) >= kill_after_frames:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("cadence", [1, 3])
def test_killed_render_resumes_bit_for_bit(tmp_path, assets, cadence):
    anim = anim_settings(assets, "3D", cadence, max_frames=12)
    args = dict(ARGS, W=64, H=64, seed=11, steps=5)
    reference_root = root_for(assets, tmp_path / "reference")
    out = run_in_subprocess([args, anim, PROMPTS, reference_root])
    reference_ts = out.split("TIMESTRING")[1].split()[0]
    reference = sorted((tmp_path / "reference").glob(f"*/StableFun/{reference_ts}_0*.png"))
    assert len(reference) == 12

    # The same run, killed with SIGKILL twice at different points, then resumed to the end.
    root = root_for(assets, tmp_path / "killed")
    killed_ts = "20990101000000"
    frames = lambda: (tmp_path / "killed").glob(f"*/StableFun/{killed_ts}_0*.png")  # noqa: E731
    first = dict(anim)
    run_args = dict(args)
    # A fixed timestring: the first run is started with resume off and a known "now" is not available in a
    # subprocess, so resume the newest run instead by reading its timestring from the state folder.
    run_in_subprocess([run_args, first, PROMPTS, root], kill_after_frames=4,
                      outdir_glob=lambda: (tmp_path / "killed").glob("*/StableFun/*_0*.png"))
    states = list((tmp_path / "killed").glob("*/StableFun/*_state"))
    assert len(states) == 1
    killed_ts = states[0].name.split("_")[0]
    resumed = dict(anim, resume_from_timestring=True, resume_timestring=killed_ts)
    run_in_subprocess([run_args, resumed, PROMPTS, root], kill_after_frames=8, outdir_glob=frames)
    run_in_subprocess([run_args, resumed, PROMPTS, root])

    result = sorted(frames())
    assert [p.name.split("_", 1)[1] for p in result] == [p.name.split("_", 1)[1] for p in reference]
    for ours, theirs in zip(result, reference, strict=True):
        assert np.array_equal(np.asarray(Image.open(ours)), np.asarray(Image.open(theirs))), ours.name
    assert not list((tmp_path / "killed").rglob("*.tmp"))


def test_resume_refuses_changed_settings(tmp_path, assets):
    root = root_for(assets, tmp_path)
    args = dict(ARGS, W=64, H=64, steps=4)
    first = render(args, anim_settings(assets, "2D", 1, max_frames=3), None, PROMPTS, root, progress=False)
    changed = anim_settings(assets, "2D", 1, max_frames=3, zoom="0:(1.1)", resume_from_timestring=True,
                            resume_timestring=first.timestring)
    with pytest.raises(DeforumError, match="zoom"):
        render(args, changed, None, PROMPTS, root, progress=False)
    # Unchanged settings: the finished run is recognised and nothing is re-rendered.
    same = anim_settings(assets, "2D", 1, max_frames=3, resume_from_timestring=True,
                         resume_timestring=first.timestring)
    again = render(args, same, None, PROMPTS, root, progress=False)
    assert again.frames == first.frames


def render_direct(folder, assets, **overrides):
    """``render_animation`` itself, as the runner calls it: typed settings, the run's identity, its inputs."""
    from deforum.generate import Generator
    from deforum.models import load_model
    from deforum.plan import make_plan
    from deforum.render.animation import render_animation
    from deforum.render.inputs import read_inputs
    from deforum.settings import RunIdentity
    from deforum.testing import settings_for_test

    ckpt, yaml, _ = assets
    values = dict(ARGS, **anim_settings(assets, "2D", 1, max_frames=3))
    values.update(overrides)
    settings = settings_for_test(animation_prompts=PROMPTS, **values)
    identity = RunIdentity("20220101000000", folder, settings.image.seed)
    generator = Generator(load_model(ckpt, yaml, "cpu"))
    return render_animation(settings, identity, generator, make_plan(settings, identity.seed),
                            read_inputs(settings))


def test_mask_keeps_the_init_under_white_and_moves_with_the_camera(tmp_path, assets):
    """use_mask in 2D: white keeps frame 0's init, and the kept region follows the camera (12.1 #9)."""
    rng = np.random.default_rng(0)
    init = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255  # keep the left half
    Image.fromarray(init).save(tmp_path / "init.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    masked = dict(W=64, H=64, steps=5, use_init=True, strength=0.5, init_image=str(tmp_path / "init.png"),
                  use_mask=True, mask_file=str(tmp_path / "mask.png"), mask_overlay_blur=0, zoom="0:(1)",
                  color_coherence="None", noise_schedule="0:(0)")
    still = render_direct(tmp_path / "still", assets, translation_x="0:(0)", **masked)
    for path in still.frames:
        frame = np.asarray(Image.open(path), dtype=np.int16)
        assert np.abs(frame[:, :32] - init[:, :32]).max() <= 1, path.name  # kept
        assert np.abs(frame[:, 32:] - init[:, 32:]).mean() > 10, path.name  # regenerated
    moving = render_direct(tmp_path / "moving", assets, translation_x="0:(8)", **masked)
    frame2 = np.asarray(Image.open(moving.frames[2]), dtype=np.int16)
    # Two frames of +8 px: the kept region is the init moved 16 px right (columns 16..47 of the frame).
    assert np.abs(frame2[:, 18:46] - init[:, 2:30]).max() <= 2


def test_the_mask_of_frame_0_comes_from_the_run_inputs(tmp_path):
    """mask_file is resized to W x H as 'L'; with use_alpha_as_mask the init's alpha channel is the mask."""
    from deforum.render.animation import frame0_mask
    from deforum.render.inputs import read_inputs
    from deforum.testing import settings_for_test

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (40, 80, 4), dtype=np.uint8)
    rgba[:, :40, 3], rgba[:, 40:, 3] = 0, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "init.png")
    Image.fromarray(rgba[:, :, :3]).save(tmp_path / "mask.png")
    common = dict(W=64, H=64, animation_mode="2D", use_init=True, init_image=str(tmp_path / "init.png"),
                  use_mask=True, mask_file=str(tmp_path / "mask.png"))
    settings = settings_for_test(**common)
    expected = np.asarray(Image.open(tmp_path / "mask.png").convert("L").resize((64, 64), Image.Resampling.LANCZOS))
    got = frame0_mask(settings, read_inputs(settings))
    assert got.dtype == np.uint8 and got.shape == (64, 64) and np.array_equal(got, expected)
    alpha = settings_for_test(use_alpha_as_mask=True, **common)
    inputs = read_inputs(alpha)
    got = frame0_mask(alpha, inputs)
    assert got.dtype == np.uint8 and got.shape == (64, 64)
    assert np.array_equal(got, np.asarray(inputs.init.alpha))
    assert got[:, :28].max() == 0 and got[:, 36:].min() == 255
    assert frame0_mask(settings_for_test(**dict(common, use_mask=False)), read_inputs(settings)) is None


def test_gradient_conditioning_reaches_every_frame_of_an_animation(tmp_path, assets):
    """The runner hands the guidance wrapper to the generator: with mean_scale the frames change."""
    args = dict(ARGS, W=64, H=64, steps=5, grad_inject_timing=None, decode_method="linear")
    anim = anim_settings(assets, "2D", 1, max_frames=2)
    plain = render(args, anim, None, PROMPTS, root_for(assets, tmp_path / "plain"), progress=False)
    guided = render(dict(args, mean_scale=50), anim, None, PROMPTS, root_for(assets, tmp_path / "guided"),
                    progress=False)
    for a, b in zip(plain.frames, guided.frames, strict=True):
        assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_a_run_killed_before_its_first_frame_can_be_resumed(tmp_path, assets, monkeypatch):
    """The resume state exists from the start: a crash while frame 0 is generated loses nothing."""
    from deforum.render import animation

    root = root_for(assets, tmp_path)
    args = dict(ARGS, W=64, H=64, steps=4)
    anim = anim_settings(assets, "2D", 1, max_frames=2)

    class Crash(Exception):
        pass

    def crash(*a, **k):
        raise Crash

    monkeypatch.setattr(animation.AnimationLoop, "_key_init", crash)
    with pytest.raises(Crash):
        render(args, anim, None, PROMPTS, root, progress=False)
    monkeypatch.undo()
    states = list(tmp_path.glob("*/StableFun/*_state/state.json"))
    assert len(states) == 1
    timestring = states[0].parent.name.split("_")[0]
    resumed = render(args, dict(anim, resume_from_timestring=True, resume_timestring=timestring), None, PROMPTS,
                     root, progress=False)
    assert [p.name for p in resumed.frames] == [f"{timestring}_{j:05}.png" for j in range(2)]
    assert all(p.is_file() for p in resumed.frames)


def test_step_progress_counts_every_sampler_step(tmp_path, assets, monkeypatch):
    """``step_progress`` puts a bar over each image's sampler steps: it sees steps 1..n of every image."""
    from deforum import runner

    seen = []

    class Recording(runner._StepBar):
        def __call__(self, step, total):
            seen.append((step, total))
            super().__call__(step, total)

    monkeypatch.setattr(runner, "_StepBar", Recording)
    args = dict(ARGS, W=64, H=64, steps=6)
    render(args, anim_settings(assets, "2D", 1, max_frames=2), None, PROMPTS, root_for(assets, tmp_path),
           progress=False, step_progress=True)
    # frame 0 runs all 6 steps; frame 1 (strength 0.65) runs int(0.35 * 6) = 2
    assert seen == [(s, 6) for s in range(1, 7)] + [(1, 2), (2, 2)]
