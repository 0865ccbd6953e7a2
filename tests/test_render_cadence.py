"""The 2D/3D render loop's frame bookkeeping against v0.6's traced run (oracle cadence.json).

Diffusion is replaced by a generator that returns flat black / white frames alternately, as in the
oracle's cross-check run, so each written pixel value shows the blend weights exactly.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.plan import cadence_role, make_plan
from deforum.render import steps
from deforum.render.animation import AnimationLoop
from deforum.settings import RunIdentity
from deforum.testing import settings_for_test

DATA = Path(__file__).parent / "data"
CADENCE = json.loads((DATA / "cadence.json").read_text())
SIZE = 64


def settings_2d(cadence, max_frames, translation_x="0:(0)"):
    return settings_for_test(
        seed=1000, W=64, H=64, animation_mode="2D", max_frames=max_frames, diffusion_cadence=str(cadence),
        zoom="0:(1)", translation_x=translation_x, noise_schedule="0:(0)", color_coherence="None",
        animation_prompts={0: "a"},
    )


def run_loop(tmp_path, cadence, max_frames, translation_x="0:(0)"):
    settings = settings_2d(cadence, max_frames, translation_x)
    plan = make_plan(settings, 1000)
    calls = []

    def generate(row, init, strength, mask=None, overlay=None):
        calls.append({"frame": row.frame, "has_init_sample": init is not None, "strength": strength,
                      "seed": row.seed})
        value = 1.0 if len(calls) % 2 == 0 else -1.0  # black, white, black, ... in [-1, 1]
        return torch.full((1, 3, SIZE, SIZE), value)

    loop = AnimationLoop(plan, settings, RunIdentity("T", tmp_path, 1000), generate)
    result = loop.run()
    return result, calls


@pytest.mark.parametrize("cadence", [1, 2, 3, 4, 8])
def test_generate_calls_and_written_frames_match_v06(tmp_path, cadence):
    oracle = CADENCE["original_run_crosscheck"][str(cadence)]
    case = next(c for c in CADENCE["cadences"] if c["cadence"] == cadence)
    result, calls = run_loop(tmp_path, cadence, case["max_frames"])
    for ours, theirs in zip(calls, oracle["generate_calls"], strict=True):
        assert ours["frame"] == theirs["frame"]
        assert ours["seed"] == theirs["seed"]
        assert ours["has_init_sample"] == theirs["has_init_sample"]
        assert ours["strength"] == pytest.approx(theirs["strength"])
    # Every frame is written, including the tail v0.6 dropped.
    names = sorted(p.name for p in tmp_path.glob("T_*.png"))
    assert names == [f"T_{j:05}.png" for j in range(case["max_frames"])]
    assert [p.name for p in result.frames] == names
    # Pixel values give the blend weights: key k (k-th generate call) is black when k is even.
    key_value = {c["frame"]: (0.0 if i % 2 == 0 else 255.0) for i, c in enumerate(calls)}
    for written in case["written_frames"]:
        expected = sum(key_value[written[slot]["from_diffused_frame"]] * w
                       for slot, w in written["weights"].items())
        pixel = np.asarray(Image.open(tmp_path / f"T_{written['frame']:05}.png"))[0, 0, 0]
        assert pixel == int(np.clip(expected, 0, 255)), written["frame"]


def v06_warps(case, skip_unused_prev):
    """The frame indices of v0.6's warp calls, rebuilt from its traced iterations."""
    seq = []
    for it in case["iterations"]:
        for tween in it["tweens"]:
            j = tween["tween_frame_idx"]
            if tween["advance_prev"] and (tween["blended"] or not skip_unused_prev):
                seq.append(j)
            if tween["advance_next"]:
                seq.append(j)
        if it["init"] is not None:
            seq.append(it["frame_idx"])
    return seq


@pytest.mark.parametrize("cadence", [1, 2, 3, 4, 8])
def test_warp_sequence_is_v06_without_wasted_warps_plus_the_tail(tmp_path, monkeypatch, cadence):
    """Frame j's motion is applied in v0.6's order; an older key that is no longer shown is not warped,
    and the tail frames v0.6 never wrote add their own warps."""
    case = next(c for c in CADENCE["cadences"] if c["cadence"] == cadence)
    oracle = CADENCE["original_run_crosscheck"][str(cadence)]["warp_call_frame_indices"]
    assert v06_warps(case, skip_unused_prev=False) == oracle
    seen = []
    real = steps.warp_image

    def recording(image, values, settings, depth=None, device="cpu", frame=None):
        seen.append(int(round(values.translation_x)) // 1000)
        return real(image, dataclasses.replace(values, translation_x=0.0), settings, depth, device, frame)

    monkeypatch.setattr(steps, "warp_image", recording)
    run_loop(tmp_path, cadence, 17, translation_x="0:(1000*t)")
    expected = v06_warps(case, skip_unused_prev=True)
    assert seen[: len(expected)] == expected
    last_key = (16 // cadence) * cadence
    tail = []
    for j in range(last_key, 17):
        if cadence_role(j, cadence).blended:
            tail.append(j)  # the older key, still cross-faded in
        if j > last_key:
            tail.append(j)  # the newest key
    assert seen[len(expected):] == tail


@pytest.mark.parametrize("cadence", [1, 3])
def test_depth_is_predicted_once_per_image_it_is_used_for(tmp_path, cadence):
    """3D with depth maps: one prediction per output frame (v0.6 predicted twice per diffused frame)."""
    settings = settings_for_test(seed=1000, W=64, H=64, animation_mode="3D", max_frames=9,
                                 diffusion_cadence=str(cadence), noise_schedule="0:(0)", color_coherence="None",
                                 save_depth_maps=True, animation_prompts={0: "a"})
    plan = make_plan(settings, 1000)
    predicted, saved = [], []

    def depth(image):
        predicted.append(image.copy())
        return torch.ones(SIZE, SIZE)

    def save_depth(depth_map, path, state):
        saved.append(path.name)

    def generate(row, init, strength, mask=None, overlay=None):
        return torch.rand((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(row.frame)) * 2 - 1

    AnimationLoop(plan, settings, RunIdentity("T", tmp_path, 1000), generate, depth=depth,
                  save_depth=save_depth).run()
    assert saved == [f"T_depth_{j:05}.png" for j in range(9)]
    assert len(predicted) == 9
    # no image is sent to the depth model twice
    assert len({p.tobytes() for p in predicted}) == len(predicted)
