"""Negative prompts (issue 18): ``--neg`` in any prompt, animation_prompts_positive / _negative, the negative
conditioning in place of the empty unconditional, interpolated negatives, the plan and the settings file."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.cli import format_table
from deforum.conditioning import prompt_conditioning
from deforum.errors import DeforumError, SettingsError
from deforum.plan import animation_prompt_texts, make_plan
from deforum.prompts import compose_prompt, split_negative, split_weighted_subprompts, weight_problems
from deforum.runner import render
from deforum.settings.dialects import detect
from deforum.testing import settings_for_test, tiny_checkpoint

# ------------------------------------------------------------------------------------ the grammar


def test_neg_splits_a_prompt_into_its_positive_and_negative_parts():
    assert split_negative("a cat --neg dog") == ("a cat", "dog")
    assert split_negative("a cat") == ("a cat", "")
    assert split_negative("  a cat  ") == ("  a cat  ", "")  # no marker: the text unchanged (v0.6)
    assert split_negative("--neg dog, blurry") == ("", "dog, blurry")
    assert split_negative("a cat --neg") == ("a cat", "")


def test_neg_is_a_negative_weight_and_weights_work_on_both_sides():
    assert split_weighted_subprompts("a cat --neg dog") == split_weighted_subprompts("a cat:1 dog:-1") \
        == ([("dog", 1.0)], [("a cat", 1.0)])
    negative, positive = split_weighted_subprompts("a cat:3 sun:1 --neg dog:2 bird:-1 fish")
    assert positive == [("a cat", 0.6), ("sun", 0.2), ("bird", 0.2)]
    assert negative == [("dog", 2 / 3), ("fish", 1 / 3)]
    # back-ticked weights in t, after --neg too
    assert split_weighted_subprompts("a cat --neg dog:`t/2` fog:`1`", frame=4, skip_normalize=True) == \
        ([("dog", 2.0), ("fog", 1.0)], [("a cat", 1.0)])
    assert split_weighted_subprompts("a cat --neg dog:`t` fog", frame=0) == ([("fog", 1.0)], [("a cat", 1.0)])


def test_two_neg_markers_are_an_error_naming_the_prompt():
    with pytest.raises(SettingsError, match=r"animation_prompts\[3\]: the prompt 'a --neg b --neg c' has 2"):
        split_weighted_subprompts("a --neg b --neg c", field="animation_prompts[3]")
    with pytest.raises(SettingsError, match="'x --neg y --neg z'"):
        split_negative("x --neg y --neg z")
    assert any("'--neg' markers" in p for p in weight_problems("a --neg b --neg c", [0]))
    assert weight_problems("a --neg b", [0]) == []


def test_compose_adds_the_runs_positive_before_and_negative_after():
    assert compose_prompt("a cat", "", "dog") == "a cat --neg dog"
    assert compose_prompt("a cat", "", "") == "a cat"
    assert compose_prompt(" a cat ", "", "") == " a cat "  # nothing to add: unchanged
    assert compose_prompt("a cat --neg fog", "masterpiece", "dog") == "masterpiece a cat --neg fog dog"
    assert compose_prompt("a cat", "masterpiece", "") == "masterpiece a cat"
    assert compose_prompt("a cat", "", "--neg dog") == "a cat --neg dog"  # A1111 drops a --neg given here
    with pytest.raises(SettingsError, match="animation_prompts_positive"):
        compose_prompt("a cat", "good --neg bad", "")
    with pytest.raises(SettingsError, match=r"animation_prompts\[0\]"):
        compose_prompt("a --neg b --neg c", "", "dog", field="animation_prompts[0]")


# ------------------------------------------------------------------------------------ conditioning


def _encoder():
    seen = []

    def encode(text):
        seen.append(text)
        g = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 + len(text))
        return torch.randn(1, 4, 3, generator=g)
    return encode, seen


@pytest.mark.parametrize("weighting", [True, False])
def test_the_negative_replaces_the_empty_unconditional(weighting):
    encode, _ = _encoder()
    uc, c = prompt_conditioning("a cat --neg dog", encode, prompt_weighting=weighting)
    assert torch.equal(c, encode("a cat")) and torch.equal(uc, encode("dog"))
    uc0, c0 = prompt_conditioning("a cat", encode, prompt_weighting=weighting)
    assert torch.equal(c0, c) and torch.equal(uc0, encode(""))
    with pytest.raises(SettingsError, match="at most one"):
        prompt_conditioning("a --neg b --neg c", encode, prompt_weighting=weighting)


def test_weighted_negatives_are_summed_and_an_empty_positive_part_encodes_empty():
    encode, _ = _encoder()
    uc, c = prompt_conditioning("a cat --neg dog:3 fog:1", encode)
    assert torch.allclose(uc, 0.75 * encode("dog") + 0.25 * encode("fog"))
    uc, c = prompt_conditioning("--neg dog", encode)
    assert torch.equal(c, encode("")) and torch.equal(uc, encode("dog"))
    # without weighting the negative part is encoded as written
    uc, c = prompt_conditioning("a cat:2 --neg dog:3", encode, prompt_weighting=False)
    assert torch.equal(c, encode("a cat:2")) and torch.equal(uc, encode("dog:3"))


# ------------------------------------------------------------------------------------ plan


def test_the_plan_carries_each_frames_full_prompt():
    settings = settings_for_test(W=64, H=64, animation_mode="2D", max_frames=4, seed=5,
                                 animation_prompts={0: "a cat --neg fog", 2: "a bird"},
                                 animation_prompts_positive="masterpiece", animation_prompts_negative="blurry")
    assert animation_prompt_texts(settings) == {0: "masterpiece a cat --neg fog blurry",
                                                2: "masterpiece a bird --neg blurry"}
    plan = make_plan(settings, 5)
    assert [row.prompt for row in plan.rows] == ["masterpiece a cat --neg fog blurry"] * 2 + \
        ["masterpiece a bird --neg blurry"] * 2
    assert plan.rows[2].positive_prompt == "masterpiece a bird" and plan.rows[2].negative_prompt == "blurry"
    assert plan.table()[0]["prompt"] == "masterpiece a cat --neg fog blurry"
    assert "a cat --neg fog blurry" in plan.to_csv()
    text = format_table(plan, prompt_width=30)
    assert all("--neg" in line for line in text.splitlines()[1:])
    assert "--neg blurry" in text


def test_none_mode_prompts_keep_their_text_and_get_no_appended_negative():
    settings = settings_for_test(W=64, H=64, animation_mode="None", seed=5, prompts=["a cat --neg dog"],
                                 animation_prompts_negative="blurry")
    assert [row.prompt for row in make_plan(settings, 5).rows] == ["a cat --neg dog"]


def test_a_prompt_with_neg_no_longer_marks_a_file_as_a1111():
    assert detect({"W": 512, "prompts": {"0": "a cat --neg dog"}}).name == "v06_partial"


# ------------------------------------------------------------------------------------ renders


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("negative-model")
    ckpt, yaml = tiny_checkpoint(folder, fmt="safetensors")
    return {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(yaml), "map_location": "cpu", "mount_google_drive": False}


ARGS = dict(W=64, H=64, seed=11, steps=3, sampler="euler", scale=7.5)


def _render(root, folder, mode="2D", prompts=None, animation_prompts=None, args=None, **anim):
    anim = {"animation_mode": mode, "max_frames": 3, "diffusion_cadence": "1", **anim}
    result = render({**ARGS, **(args or {})}, anim, prompts, animation_prompts, dict(root, output_path=str(folder)),
                    progress=False)
    frames = sorted(result.outdir.glob("*.png"))
    return result, [np.asarray(Image.open(p), dtype=np.int16) for p in frames]


@pytest.mark.slow
def test_neg_in_the_prompt_equals_the_appended_negative_and_changes_the_frames(tmp_path, model_root):
    _, inline = _render(model_root, tmp_path / "inline", animation_prompts={0: "a cat --neg dog"})
    result, appended = _render(model_root, tmp_path / "appended", animation_prompts={0: "a cat"},
                               animation_prompts_negative="dog")
    _, plain = _render(model_root, tmp_path / "plain", animation_prompts={0: "a cat"})
    assert len(inline) == len(appended) == len(plain) == 3
    for a, b in zip(inline, appended, strict=True):
        assert np.array_equal(a, b)
    assert all(np.abs(a - p).mean() > 0.5 for a, p in zip(inline, plain, strict=True))
    saved = json.loads(result.settings_path.read_text())
    assert saved["animation_prompts_negative"] == "dog" and saved["animation_prompts_positive"] == ""


@pytest.mark.slow
def test_neg_with_prompt_weighting_off_renders_the_same(tmp_path, model_root):
    _, on = _render(model_root, tmp_path / "on", animation_prompts={0: "a cat --neg dog"}, max_frames=1)
    _, off = _render(model_root, tmp_path / "off", animation_prompts={0: "a cat --neg dog"}, max_frames=1,
                     args={"prompt_weighting": False})
    assert np.array_equal(on[0], off[0])  # single sub-prompts: E(text) either way


@pytest.mark.slow
def test_a_none_mode_prompt_with_neg(tmp_path, model_root):
    _, neg = _render(model_root, tmp_path / "neg", mode="None", prompts=["a cat --neg dog"])
    _, plain = _render(model_root, tmp_path / "plain", mode="None", prompts=["a cat"])
    assert len(neg) == len(plain) == 1
    assert np.abs(neg[0] - plain[0]).mean() > 0.5
    # the same image as an animation's first frame with the same negative
    _, anim = _render(model_root, tmp_path / "anim", animation_prompts={0: "a cat"}, max_frames=1,
                      animation_prompts_negative="dog")
    assert np.array_equal(neg[0], anim[0])


@pytest.mark.slow
def test_interpolation_interpolates_the_negatives(tmp_path, model_root):
    prompts = {0: "a cat --neg dog", 1: "a bird --neg fish"}
    interp = dict(interpolate_x_frames=1)
    _, neg = _render(model_root, tmp_path / "neg", mode="Interpolation", animation_prompts=prompts, **interp)
    _, same = _render(model_root, tmp_path / "same", mode="Interpolation", animation_prompts=prompts,
                      animation_prompts_negative="", **interp)
    _, moved = _render(model_root, tmp_path / "moved", mode="Interpolation",
                       animation_prompts={0: "a cat --neg dog", 1: "a bird --neg dog"}, **interp)
    _, plain = _render(model_root, tmp_path / "plain", mode="Interpolation",
                       animation_prompts={0: "a cat", 1: "a bird"}, **interp)
    assert len(neg) == len(plain) == 3  # key, midpoint, key
    assert all(np.array_equal(a, b) for a, b in zip(neg, same, strict=True))
    assert all(np.abs(a - p).mean() > 0.5 for a, p in zip(neg, plain, strict=True))
    # frame 0 is key 0 alone (same negative: same image); the midpoint and the last key see the second negative
    assert np.array_equal(neg[0], moved[0])
    assert np.abs(neg[1] - moved[1]).mean() > 0.0 and np.abs(neg[2] - moved[2]).mean() > 0.5
    # the appended negative reaches every key
    _, appended = _render(model_root, tmp_path / "appended", mode="Interpolation",
                          animation_prompts={0: "a cat", 1: "a bird"}, animation_prompts_negative="dog", **interp)
    assert np.array_equal(appended[0], moved[0]) and np.array_equal(appended[2], moved[2])


def test_two_neg_markers_stop_the_run_before_the_model_loads(tmp_path, model_root):
    root = dict(model_root, custom_checkpoint_path=str(tmp_path / "missing.safetensors"))
    for mode, prompts, animation_prompts in (("2D", None, {0: "a --neg b --neg c"}),
                                             ("None", ["a --neg b --neg c"], None),
                                             ("Interpolation", None, {0: "x", 1: "a --neg b --neg c"})):
        with pytest.raises(DeforumError, match=r"prompts\[[01]\].*'a --neg b --neg c'"):
            _render(root, tmp_path / mode, mode=mode, prompts=prompts, animation_prompts=animation_prompts)
    with pytest.raises(DeforumError, match="animation_prompts_positive"):
        _render(root, tmp_path / "pos", animation_prompts={0: "a cat"}, animation_prompts_positive="x --neg y")


def test_deforum_plan_shows_the_negative(tmp_path, capsys):
    import csv
    from pathlib import Path

    from deforum import cli

    repo = Path(__file__).resolve().parents[1]
    code = cli.main(["plan", str(repo / "settings" / "default_animation.txt"), "--set", "max_frames=3",
                     "--set", "animation_prompts_negative=blurry", "--csv", str(tmp_path / "p.csv")])
    assert code == 0
    table = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(table) == 4 and all("--neg blurry" in line for line in table[1:])
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(row["prompt"].endswith(" --neg blurry") for row in rows)


@pytest.mark.parametrize("weighting", [True, False])
def test_two_neg_markers_are_refused_when_the_settings_resolve_with_or_without_weighting(weighting):
    from deforum.errors import SettingsError
    from deforum.testing import settings_for_test

    with pytest.raises(SettingsError, match=r"prompts\[0\]: .*2 '--neg' markers"):
        settings_for_test(prompts=["a --neg b --neg c"], prompt_weighting=weighting)
    with pytest.raises(SettingsError, match=r"animation_prompts\[0\]: .*2 '--neg' markers"):
        settings_for_test(animation_mode="Video Input", video_init_path="v.mp4", prompt_weighting=weighting,
                          animation_prompts={0: "a --neg b --neg c"})
    with pytest.raises(SettingsError, match="animation_prompts_positive=.*'--neg'"):
        settings_for_test(animation_mode="2D", animation_prompts_positive="x --neg y", prompt_weighting=weighting)
