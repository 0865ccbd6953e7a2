"""The `deforum` command: end-to-end runs in subprocesses (tiny checkpoint) and main() in-process."""

import csv
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum import cli
from deforum import device as devices
from deforum import settings as A
from deforum.errors import SettingsError
from deforum.plan import make_plan
from deforum.render import preview
from deforum.settings import docs as settings_docs
from deforum.settings import load_settings
from deforum.video import probe_video

REPO = Path(__file__).resolve().parents[1]
TINY = dict(W=64, H=64, steps=4, seed=5, sampler="euler")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from deforum.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("model"), fmt="safetensors")


def write_settings(path: Path, **values) -> Path:
    path.write_text(json.dumps(values, indent=4), encoding="utf-8")
    return path


def run_cli(*argv, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deforum", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def decoded_frames(mp4: Path) -> int:
    return probe_video(mp4).frame_count


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("deforum: error")]


# ------------------------------------------------------------------------------------ end to end (subprocess)


@pytest.mark.slow
def test_render_reports_a_bad_file_and_still_renders_the_next(tmp_path, model):
    ckpt, yaml = model
    bad = write_settings(tmp_path / "bad.txt", animation_mode="2D", max_frames=3, zoom="0:(1.04", **TINY)
    good = write_settings(tmp_path / "good.txt", animation_mode="2D", max_frames=4, batch_name="clirun",
                          diffusion_cadence="2", animation_prompts={"0": "a red apple", "2": "a blue lake"},
                          fps=6, comment="not a setting", **TINY)
    proc = run_cli("render", bad, good, "--checkpoint", ckpt, "--config", yaml, "--output", tmp_path / "out",
                   "--quiet", cwd=tmp_path)

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    [error] = error_lines(proc.stderr)
    assert "bad.txt" in error and "invalid settings" in error
    assert "in 'zoom' at character 2" in proc.stderr  # the position of the unclosed '('
    [settings_path] = (tmp_path / "out").rglob("*_settings.txt")
    outdir, ts = settings_path.parent, settings_path.name.removesuffix("_settings.txt")
    assert outdir.name == "clirun"
    frames = sorted(outdir.glob(f"{ts}_[0-9][0-9][0-9][0-9][0-9].png"))
    assert [f.name for f in frames] == [f"{ts}_{i:05}.png" for i in range(4)]
    assert all(Image.open(f).size == (64, 64) for f in frames)
    saved = json.loads(settings_path.read_text())
    assert (saved["max_frames"], saved["steps"], saved["animation_prompts"]["2"]) == (4, 4, "a blue lake")
    mp4 = outdir / f"{ts}.mp4"
    info = probe_video(mp4)
    assert (info.frame_count, info.fps) == (4, 6)
    assert str(mp4) in proc.stdout
    assert "deforum: warning: " in proc.stderr and "'comment'" in proc.stderr


def test_render_without_a_checkpoint_offline_says_where_to_put_it(tmp_path):
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=3, **TINY)
    proc = run_cli("render", settings, "-q", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [error] = error_lines(proc.stderr)
    assert "v1-5-pruned-emaonly.ckpt" in error and "put it at models" in error


def test_preview_writes_the_camera_motion_video(tmp_path):
    out = tmp_path / "p.mp4"
    proc = run_cli("preview", REPO / "settings" / "default_3d.txt", "--set", "max_frames=5", "--set", "W=128",
                   "--set", "H=128", "--output", out, "--png", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert decoded_frames(out) == 5
    pngs = sorted(tmp_path.glob("*_preview/preview_*.png"))
    assert len(pngs) == 5
    frames = [np.asarray(Image.open(p)) for p in pngs]
    assert np.array_equal(frames[0], preview.test_card(128, 128))
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(frames, frames[1:], strict=False))
    assert "depth flat" in proc.stdout


def test_preview_moves_with_the_video_of_hybrid_motion(tmp_path):
    from tests.helpers import measured_shift, shifted, texture, write_video

    video = write_video(tmp_path / "in.mp4", [shifted(texture(128, 1), 3 * i, 0) for i in range(5)])
    sets = ["max_frames=5", "W=128", "H=128", "zoom=0:(1)", "angle=0:(0)", "translation_x=0:(0)",
            "translation_y=0:(0)", "hybrid_motion=Affine", f"video_init_path={video}"]
    proc = run_cli("preview", REPO / "settings" / "default_animation.txt", *[a for s in sets for a in ("--set", s)],
                   "--output", tmp_path / "p.mp4", "--png", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "moved with the video's motion too (Affine)" in proc.stdout
    frames = [np.asarray(Image.open(p)) for p in sorted(tmp_path.glob("*_preview/preview_*.png"))]
    assert len(frames) == 5
    for before, after in zip(frames, frames[1:], strict=False):
        sx, sy = measured_shift(before, after)
        assert abs(sx - 3) < 1 and abs(sy) < 1, (sx, sy)


def test_plan_prints_and_writes_the_plan(tmp_path):
    settings = REPO / "settings" / "default_animation.txt"
    proc = run_cli("plan", settings, "--set", "max_frames=5", "--set", "seed=3", "--csv", tmp_path / "p.csv",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = make_plan(file_settings("default_animation.txt", max_frames=5), 3)
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == list(range(5))
    assert [int(r["seed"]) for r in rows] == [row.seed for row in expected.rows]
    for name in A.schedule_fields():
        assert [float(r[name]) for r in rows] == pytest.approx(list(expected.schedules[name]))
    table = [line for line in proc.stdout.splitlines() if not line.startswith("#")]
    assert table[0].split()[:4] == ["frame", "role", "prompt", "seed"]
    assert len(table) == 1 + 5


def test_settings_check_lists_every_problem_with_positions(tmp_path):
    bad = write_settings(tmp_path / "bad.txt", animation_mode="3D", W="wide", sampler="Euler",
                         translation_z="0:(10), 5:(2*)", angle="0:(1", max_frames=10)
    good = REPO / "settings" / "default_3d.txt"
    proc = run_cli("settings", "check", bad, good, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for needle in ("W='wide'", "sampler='Euler'", "'translation_z' at character", "'angle' at character"):
        assert needle in proc.stderr
    assert "default_3d.txt: ok (3D mode" in proc.stdout


def test_video_makes_an_mp4_and_gif_from_a_frames_folder(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        Image.fromarray(np.full((32, 48, 3), 40 * i, np.uint8)).save(frames / f"20220101000000_{i:05}.png")
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(frames / "20220101000000_depth_00000.png")
    proc = run_cli("video", frames, "--fps", "8", "--gif", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mp4 = frames / "20220101000000.mp4"
    info = probe_video(mp4)
    assert (info.frame_count, info.fps, info.width, info.height) == (6, 8, 48, 32)
    assert mp4.with_suffix(".gif").is_file()


def test_video_interpolate_writes_the_in_between_frames_and_a_faster_video(tmp_path):
    from tests.helpers import measured_shift, shifted, texture

    frames = tmp_path / "frames"
    frames.mkdir()
    base = texture(64, seed=3)
    for i in range(4):
        Image.fromarray(shifted(base, 4 * i, 0)).save(frames / f"20220101000000_{i:05}.png")
    proc = run_cli("video", frames, "--fps", "8", "--interpolate", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mp4 = frames / "20220101000000_x2.mp4"
    info = probe_video(mp4)
    assert (info.frame_count, info.fps) == (7, 16)  # (4 - 1) * 2 + 1 frames at 8 x 2 fps
    made = sorted((frames / "20220101000000_x2").glob("*.png"))
    assert len(made) == 7
    middle = np.asarray(Image.open(made[1]))  # between frames 0 and 1: moved half of their 4 px
    assert abs(measured_shift(base, middle)[0] - 2) < 0.5
    assert (frames / "20220101000000.mp4").exists() is False  # the plain video is not touched
    slow = run_cli("video", frames, "--fps", "8", "--interpolate", "3", "--keep-fps", cwd=tmp_path)
    assert slow.returncode == 0, slow.stderr
    assert probe_video(frames / "20220101000000_x3.mp4").fps == 8
    for bad in (["--interpolate", "1"], ["--keep-fps"]):
        proc = run_cli("video", frames, *bad, cwd=tmp_path)
        assert proc.returncode == 2 and ("--interpolate" in proc.stderr), proc.stderr


def test_python_m_deforum_is_the_console_script(tmp_path, capsys):
    pyproject = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; the package supports 3.10
    assert re.search(r'^\[project\.scripts\]\s*\ndeforum = "deforum\.cli:main"$', pyproject, re.MULTILINE)
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == cli.main(["--help"]) == 0
    assert proc.stdout == capsys.readouterr().out


# -------------------------------------------------------------------------------------------- --set values


@pytest.mark.parametrize("key, text, expected", [
    ("W", "128", 128),
    ("scale", "7.5", 7.5),
    ("scale", "8", 8),
    ("use_init", "true", True),
    ("use_init", "No", False),
    ("use_init", "maybe", "maybe"),  # kept for validation to report
    ("dynamic_threshold", "null", None),
    ("dynamic_threshold", "99.5", 99.5),
    ("diffusion_cadence", "3", "3"),
    ("zoom", "0:(1.02), 10:(1.1)", "0:(1.02), 10:(1.1)"),
    ("batch_name", "123", "123"),
    ("grad_inject_timing", "[1, 2]", [1, 2]),
    ("grad_inject_timing", "null", None),
])
def test_parse_value(key, text, expected):
    value = cli.parse_value(cli.field_for_key(key), text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("key, group", [
    ("W", "args"), ("max_frames", "anim_args"), ("anim_args.max_frames", "anim_args"),
    ("video.max_frames", "video"), ("fps", "video"), ("map_location", "root"),
])
def test_field_for_key_group(key, group):
    assert cli.field_for_key(key).group == group


@pytest.mark.parametrize("item, message", [
    ("max_frame=3", "did you mean 'max_frames'"),
    ("W", "expected key=value"),
    ("nogroup.W=64", "unknown group 'nogroup'"),
])
def test_bad_set_items(item, message):
    with pytest.raises(SettingsError, match=message):
        cli.parse_sets([item])


# ------------------------------------------------------------------------------------- render (in-process)


@pytest.fixture
def captured_render(monkeypatch):
    """runner.render replaced by a recorder: argument handling without a model."""
    import deforum.runner as runner

    calls = []

    def fake_render(args, anim_args, prompts, animation_prompts, root, **kwargs):
        calls.append(dict(args=dict(args), anim_args=dict(anim_args), prompts=prompts,
                          animation_prompts=animation_prompts, root=vars(root).copy(), kwargs=kwargs))
        settings = A.resolve(args, anim_args, vars(root), prompts=prompts, animation_prompts=animation_prompts)
        display = kwargs.get("display")
        if display is not None and settings.animation.animation_mode in ("None", "Video Input"):
            display.plan(None, settings)  # the runner's hook before the model loads (these modes: no plan yet)
        return runner.RunResult(Path("."), "20220101000000", [], settings=settings)

    monkeypatch.setattr(runner, "render", fake_render)
    return calls


def test_render_options_reach_the_runner(tmp_path, captured_render, model):
    ckpt, yaml = model
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=9, W=256,
                              animation_prompts={"0": "a cat"}, fps=24)
    code = cli.main(["render", str(settings), "--checkpoint", str(ckpt), "--config", str(yaml), "--output",
                     str(tmp_path / "o"), "--set", "W=128", "--set", "anim_args.zoom=0:(1.1)", "--resume",
                     "20220101000000", "--quiet", "--no-video"])
    assert code == 0
    [call] = captured_render
    assert (call["args"]["W"], call["anim_args"]["max_frames"], call["anim_args"]["zoom"]) == (128, 9, "0:(1.1)")
    assert (call["anim_args"]["resume_from_timestring"], call["anim_args"]["resume_timestring"]) == (
        True, "20220101000000")
    assert call["animation_prompts"] == {0: "a cat"}
    assert call["root"]["model_checkpoint"] == "custom" and call["root"]["custom_checkpoint_path"] == str(ckpt)
    assert call["root"]["model_config"] == "custom" and call["root"]["custom_config_path"] == str(yaml)
    assert call["root"]["output_path"] == str(tmp_path / "o")
    assert call["root"]["map_location"] == devices.best_device() and call["root"]["model"] is None
    assert call["kwargs"]["progress"] is False


def test_render_checkpoint_name_and_one_root_for_all_files(tmp_path, captured_render):
    files = [write_settings(tmp_path / f"s{i}.txt", animation_mode="None") for i in range(2)]
    assert cli.main(["render", *map(str, files), "--checkpoint", "sd-v1-4.ckpt", "-q"]) == 0
    assert [c["root"]["model_checkpoint"] for c in captured_render] == ["sd-v1-4.ckpt"] * 2


@pytest.mark.parametrize("argv, code, message", [
    (["render", "missing.txt"], 2, "deforum: error: settings file 'missing.txt' does not exist"),
    (["render", "SETTINGS", "--set", "W=abc"], 2, "W='abc'"),
    (["render", "SETTINGS", "--set", "map_location=tpu"], 2, "map_location='tpu'"),
    (["preview", "SETTINGS"], 2, "needs '2D' or '3D'"),
    (["plan", "SETTINGS", "--set", "animation_mode=4D"], 2, "animation_mode='4D'"),
    (["render"], 2, ""),  # argparse usage error
    (["settings", "fields", "nope"], 2, "unknown group"),
])
def test_error_exit_codes(tmp_path, capsys, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    write_settings(tmp_path / "SETTINGS", animation_mode="None")
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_settings_diff_shows_fields_that_differ(tmp_path, capsys):
    a = write_settings(tmp_path / "a.txt", animation_mode="2D", zoom="0:(1.04)", timestring="20220101000000")
    b = write_settings(tmp_path / "b.txt", animation_mode="3D", zoom="0:(1.04)", fps=24,
                       animation_prompts={"0": "a cat"}, timestring="20230101000000")
    assert cli.main(["settings", "diff", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'animation_mode: "2D" -> "3D"' in lines
    assert "fps: 12 -> 24" in lines
    assert any(line.startswith("animation_prompts[0]:") for line in lines)
    assert any(line.startswith("animation_prompts[20]:") for line in lines)  # only a's (default) prompts
    assert not any(line.startswith(("zoom", "timestring")) for line in lines)


def test_settings_fields_and_render_help_come_from_args(capsys):
    assert cli.main(["settings", "fields"]) == 0
    text = capsys.readouterr().out
    for group in cli.SET_GROUPS:
        for f in A.GROUPS[group]:
            if f.kind not in ("runtime", "computed"):
                assert f"\n  {f.name}\n" in text
    assert settings_docs.cli_help(A.FIELDS["anim_args"]["zoom"]).split(" Allowed")[0] in text
    assert cli.main(["render", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "strength_schedule" in help_text and "DeforumAnimArgs" in help_text and "--set" in help_text


def test_plan_plot_writes_a_png(tmp_path, capsys):
    plot = tmp_path / "plot.png"
    code = cli.main(["plan", str(REPO / "settings" / "default_3d.txt"), "--set", "max_frames=20",
                     "--plot", str(plot)])
    assert code == 0
    assert Image.open(plot).format == "PNG"


# --------------------------------------------------------------------------------------------------- preview


def test_test_card_is_deterministic_and_shows_orientation():
    card = preview.test_card(128, 64)
    assert card.shape == (64, 128, 3) and card.dtype == np.uint8
    assert np.array_equal(card, preview.test_card(128, 64))
    # red top-left, green top-right, blue bottom-left, yellow bottom-right
    corners = {(0.12, 0.12): (220, 40, 40), (0.88, 0.12): (40, 200, 60), (0.12, 0.88): (50, 80, 230),
               (0.88, 0.88): (240, 220, 40)}
    for (px, py), colour in corners.items():
        assert tuple(card[int(py * 64), int(px * 128)]) == colour


def test_synthetic_depth_is_near_at_the_bottom():
    depth = preview.synthetic_depth(8, 4)
    assert depth.shape == (4, 8)
    assert depth[0, 0] == preview.SYNTHETIC_FAR and depth[-1, 0] == preview.SYNTHETIC_NEAR
    assert np.all(np.diff(depth[:, 3]) < 0)


def file_settings(name: str, **overrides):
    """The typed settings of settings/``name`` with ``overrides`` (v0.6 field names)."""
    loaded = load_settings(REPO / "settings" / name)
    groups = {"args": vars(loaded.args), "anim_args": vars(loaded.anim_args), "root": {}}
    for key, value in overrides.items():
        groups[next(g for g in groups if key in A.FIELDS[g])][key] = value
    return A.resolve(groups["args"], groups["anim_args"], groups["root"], prompts=loaded.prompts,
                     animation_prompts=loaded.animation_prompts)


def _plan(mode: str, frames: int, **overrides):
    settings = file_settings("default_3d.txt" if mode == "3D" else "default_animation.txt", max_frames=frames,
                             **overrides)
    return make_plan(settings, 1), settings


@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_preview_frames_chain_the_warps(mode):
    from deforum.render.steps import warp_image

    plan, settings = _plan(mode, 4)
    first = preview.test_card(64, 64)
    frames = list(preview.preview_frames(first, plan, settings))
    assert len(frames) == 4 and np.array_equal(frames[0], first)
    expected = first
    for row, frame in zip(plan.rows[1:], frames[1:], strict=True):
        expected = warp_image(expected, row.values, settings, None)
        assert np.array_equal(frame, expected)


def test_preview_depth_choice(tmp_path):
    from deforum.testing import tiny_depth_model

    _, settings = _plan("3D", 2, models_path=str(tmp_path))
    label, fn = preview.choose_depth(settings, 64, 64, None)
    assert fn is None and label.startswith("flat ('midas' is not in")
    label, fn = preview.choose_depth(settings, 64, 64, "synthetic")
    assert label == "synthetic" and fn(None).shape == (64, 64)
    _, settings = _plan("3D", 2, models_path=str(tmp_path), depth_model=str(tiny_depth_model(tmp_path / "dpt")),
                        midas_weight=1.0)
    label, fn = preview.choose_depth(settings, 64, 64, None)
    depth = fn(preview.test_card(64, 64))
    assert tuple(depth.shape) == (64, 64)
    _, settings = _plan("3D", 2, use_depth_warping=False)
    assert preview.choose_depth(settings, 64, 64, "synthetic")[1] is None


def test_synthetic_depth_changes_the_3d_preview(tmp_path):
    plan, settings = _plan("3D", 3)
    first = preview.test_card(64, 64)
    flat = list(preview.preview_frames(first, plan, settings))
    plane = preview.synthetic_depth(64, 64)
    tilted = list(preview.preview_frames(first, plan, settings, lambda image: plane))
    assert not np.array_equal(flat[-1], tilted[-1])


# ------------------------------------------------------------------------------ issue 17: settings and CLI


def test_settings_check_reports_each_unknown_key_with_the_closest_field(tmp_path):
    bad = write_settings(tmp_path / "typo.txt", animation_mode="2D", max_frames=5, strenght_schedule="0:(0.5)",
                         comment="mine")
    proc = run_cli("settings", "check", bad, cwd=tmp_path)
    assert proc.returncode == 2
    assert "ok" not in proc.stdout
    assert "'strenght_schedule': unknown key (did you mean 'strength_schedule'?)" in proc.stderr
    assert "'comment': unknown key" in proc.stderr
    assert "Settings." not in proc.stderr + proc.stdout and "unknown_keys" not in proc.stderr + proc.stdout


def test_render_warns_once_in_one_line_about_unknown_keys_and_goes_on(tmp_path, captured_render, capsys):
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=5, strenght_schedule="0:(0.5)",
                              animation_prompts={"0": "a cat"})
    assert cli.main(["render", str(settings), "-q", "--no-video"]) == 0
    assert len(captured_render) == 1
    warnings_shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("deforum: warning")]
    assert warnings_shown == [f"deforum: warning: {settings}: ignoring 1 unknown key: 'strenght_schedule' (did you "
                              "mean 'strength_schedule'?); keys of other Deforum versions are expected, but a "
                              "misspelt setting keeps its default"]


def test_settings_check_reports_every_problem_once_naming_the_file_once(tmp_path):
    bad = write_settings(tmp_path / "bad.txt", animation_mode="2D", max_frames="lots", translation_x="0:(1",
                         zoom="0:(foo)")
    proc = run_cli("settings", "check", bad, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("bad.txt") == 1
    assert proc.stderr.startswith(f"invalid settings in {bad} (3 problems):")
    assert "max_frames='lots'" in proc.stderr and "in 'translation_x' at character 2" in proc.stderr
    functions = proc.stderr.split("the functions ")[1].splitlines()[0]
    assert functions == ("sin, cos, tan, arcsin, arccos, arctan, sinh, cosh, tanh, arcsinh, arccosh, arctanh, exp, "
                         "expm1, log, log10, log1p, sqrt, abs, floor, ceil, arctan2, fmod, where")
    render = run_cli("render", bad, "-q", cwd=tmp_path)
    [error] = error_lines(render.stderr)
    assert error == f"deforum: error: invalid settings in {bad} (3 problems):"


def test_preview_prints_a_video_command_that_works(tmp_path, capsys):
    import shlex

    out = tmp_path / "preview"
    code = cli.main(["preview", str(REPO / "settings" / "default_animation.txt"), "--set", "max_frames=6", "--set",
                     "W=64", "--set", "H=64", "--output", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    [command] = [line.split(": ", 1)[1] for line in printed.splitlines() if "deforum video " in line]
    argv = shlex.split(command)
    assert argv[:2] == ["deforum", "video"] and argv[-2:] == ["--fps", "12"]
    assert cli.main([*argv[1:], "--fps", "24"]) == 0
    made = Path(capsys.readouterr().out.split("video: ")[1].strip())
    assert made.is_file() and made.parent == Path(argv[2])
    info = probe_video(made)
    assert (info.frame_count, info.fps, info.width, info.height) == (6, 24, 64, 64)


def test_preview_without_pngs_says_so(tmp_path, capsys):
    code = cli.main(["preview", str(REPO / "settings" / "default_animation.txt"), "--set", "max_frames=2", "--set",
                     "W=64", "--set", "H=64", "--output", str(tmp_path / "p.mp4"), "--no-png", "-q"])
    assert code == 0
    assert "frames: not kept (--no-png)" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["p.mp4"]


def test_values_changed_on_the_way_in_are_notes_in_check_and_render(tmp_path, captured_render, capsys):
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=5, animation_prompts={"0": "a"})
    assert cli.main(["settings", "check", str(settings), "--set", "W=500"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{settings}: ok (2D mode, 5 frame(s))",
                                "  note: W=500 is used as 448 (rounded down to a multiple of 64)"]
    assert cli.main(["render", str(settings), "--set", "W=100", "--set", "steps=20.0", "-q", "--no-video"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("deforum: note")]
    assert notes[:2] == [f"deforum: note: {settings}: W=100 is used as 64 (rounded down to a multiple of 64)",
                         f"deforum: note: {settings}: steps=20.0 is used as 20 (a whole number)"]
    assert captured_render[0]["args"]["W"] == 64


def _report_for(mode: str, frames: int, **overrides):
    return _plan(mode, frames, **overrides)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_render_report_prints_the_size_then_one_estimate(capsys):
    import io

    plan, settings = _report_for("2D", 6, steps=50, strength_schedule="0:(0.6)", diffusion_cadence="2")
    out, clock = io.StringIO(), FakeClock()
    report = cli.RenderReport("s.txt", out=out, clock=clock)
    report.plan(plan, settings)
    # frames 0, 2, 4 are diffused: 50 steps (txt2img), then int(0.4 * 50) = 20 each
    assert out.getvalue() == "s.txt: 2D mode, 6 frames (3 diffused, diffusion_cadence 2) x up to 50 sampler steps " \
                             "= 90 steps in all\n"
    clock.now += 30  # frame 0: the model load and 50 steps
    report.frame(Path("x/20220101000000_00000.png"))
    clock.now += 0.1
    report.frame(Path("x/20220101000000_00001.png"))  # a blended frame: no steps, no estimate yet
    clock.now += 4
    report.frame(Path("x/20220101000000_00002.png"))  # 20 steps in 4.1 s
    clock.now += 4
    report.frame(Path("x/20220101000000_00003.png"))
    lines = out.getvalue().splitlines()
    assert lines[1:] == ["s.txt: about 4 s left (70 of 90 sampler steps done, 4.88 steps/s)"]


def test_render_report_estimates_after_the_first_frame_when_told_the_model_is_loaded():
    import io

    plan, settings = _report_for("3D", 3, steps=10, strength_schedule="0:(0.5)")
    out, clock = io.StringIO(), FakeClock()
    report = cli.RenderReport("s.txt", out=out, clock=clock)
    report.plan(plan, settings)
    report.generation_started()
    clock.now += 5
    report.frame(Path("20220101000000_00000.png"))  # 10 steps in 5 s; 5 + 5 left
    assert out.getvalue().splitlines()[1] == "s.txt: about 5 s left (10 of 20 sampler steps done, 2 steps/s)"


def test_render_on_the_cpu_says_a_gpu_is_expected(tmp_path, captured_render, capsys, monkeypatch):
    monkeypatch.setattr(devices, "best_device", lambda: "cpu")
    settings = write_settings(tmp_path / "s.txt", animation_mode="None", n_batch=3, steps=40, batch_prompts=["a", "b"])
    assert cli.main(["render", str(settings), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"{settings}: None mode, 6 image(s) x 40 sampler steps = 240 steps" in err
    assert "deforum: note: no GPU found: rendering on the CPU" in err and "expects a CUDA GPU" in err
    monkeypatch.setattr(devices, "best_device", lambda: "cuda")
    assert cli.main(["render", str(settings), "-q", "--checkpoint", "x.ckpt"]) == 0
    assert "no GPU found" not in capsys.readouterr().err


@pytest.mark.slow
def test_render_prints_the_plan_size_and_an_estimate(tmp_path, model, capsys):
    ckpt, yaml = model
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=3, batch_name="eta",
                              animation_prompts={"0": "a cat"}, strength_schedule="0:(0.5)", **TINY)
    code = cli.main(["render", str(settings), "--checkpoint", str(ckpt), "--config", str(yaml), "--output",
                     str(tmp_path / "out"), "-q", "--no-video"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert f"{settings}: 2D mode, 3 frames x up to 4 sampler steps = 8 steps in all" in err
    [estimate] = [line for line in err if " left (" in line]
    # The runner says when the model is loaded, so the estimate comes after the first frame (frame 0: 8 - 4).
    assert re.fullmatch(rf"{re.escape(str(settings))}: about \d+ s left \(4 of 8 sampler steps done, [\d.e+]+ "
                        r"steps/s\)", estimate)


# -------------------------------------------------------------------------- issue 25 class 7 (CLI)


def test_plan_into_a_closed_pipe_ends_quietly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deforum", "plan", str(REPO / "settings" / "default_3d.txt"),
                             "--set", "max_frames=3000"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("#")  # `| head -1`: read a line, then stop reading
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert stderr == ""


def test_settings_check_and_plan_report_every_problem_prompts_included(tmp_path):
    bad = write_settings(tmp_path / "bad.txt", animation_mode="2D", max_frames=5, W=0, prompts=5,
                         animation_prompts={"0": "a cat:`__import__('os')`", "3": "a dog:`1/(t-4)`"})
    for command in (["settings", "check"], ["plan"]):
        proc = run_cli(*command, bad, cwd=tmp_path)
        assert proc.returncode == 2, command
        assert "(4 problems)" in proc.stderr
        assert "prompts=5: must be a list" in proc.stderr and "W=0:" in proc.stderr
        assert "animation_prompts[0]: at character 7: name '__import__' is not allowed" in proc.stderr
        assert "animation_prompts[3]: at character 7: the expression is inf at t=4" in proc.stderr


def test_a_prompt_only_past_max_frames_is_a_note(tmp_path, capsys):
    settings = write_settings(tmp_path / "late.txt", animation_mode="2D", max_frames=10,
                              animation_prompts={"50": "a cat"})
    assert cli.main(["settings", "check", str(settings)]) == 0
    assert "  note: animation_prompts: every prompt is at frame 10 or later, past the last frame (max_frames=10 " \
           "renders frames 0..9); the prompt at frame 50 is used for every frame" in capsys.readouterr().out


def test_keys_given_twice_are_reported_by_settings_check(tmp_path):
    path = tmp_path / "twice.txt"
    path.write_text('{"animation_mode": "2D", "max_frames": 5, "max_frames": 50}')
    proc = run_cli("settings", "check", path, cwd=tmp_path)
    assert proc.returncode == 2
    assert "max_frames: given 2 times in the file (5, 50); give it once" in proc.stderr


def test_a_long_batch_name_is_blamed_on_batch_name_by_render(tmp_path, captured_render, capsys):
    settings = write_settings(tmp_path / "s.txt", batch_name="b" * 300)
    assert cli.main(["render", str(settings), "-q"]) == 2
    err = capsys.readouterr().err
    assert "batch_name='bbb" in err and "at most 255 bytes" in err and "outdir" not in err
    assert captured_render == []


@pytest.mark.parametrize("argv", [["video", "FRAMES", "--fps", "0"], ["video", "FRAMES", "--fps", "1e9"],
                                  ["preview", "SETTINGS", "--fps", "abc"], ["render", "SETTINGS", "--fps", "-2"]])
def test_fps_options_follow_the_fps_field(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FRAMES").mkdir()
    write_settings(tmp_path / "SETTINGS", animation_mode="2D")
    assert cli.main(argv) == 2
    assert "must be a number from 1 to 1000" in capsys.readouterr().err


@pytest.mark.parametrize(("values", "field"), [
    ({"W": 131072, "H": 131072}, "W=131072"),
    ({"n_batch": 10**9}, "n_batch=1000000000"),
    ({"animation_mode": "Interpolation", "interpolate_x_frames": 10**9}, "interpolate_x_frames=1000000000"),
    ({"animation_mode": "Interpolation", "interpolate_key_frames": True,
      "animation_prompts": {"0": "a", "1000000000": "b"}}, "animation_prompts: with interpolate_key_frames"),
    ({"n_batch": 90_000, "batch_prompts": ["a", "b"]}, "n_batch=90000: 2 prompt(s)"),
    ({"fps": 10**6}, "fps=1000000"),
])
def test_plan_refuses_sizes_no_machine_holds_before_allocating(tmp_path, capsys, values, field):
    import tracemalloc

    settings = write_settings(tmp_path / "big.txt", **values)
    tracemalloc.start()
    try:
        code = cli.main(["plan", str(settings)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2
    assert field in capsys.readouterr().err
    assert peak < 50 * 2**20


def test_a_bug_in_one_render_is_an_internal_error_naming_the_file(tmp_path, monkeypatch, capsys):
    import deforum.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "render", broken)
    settings = write_settings(tmp_path / "s.txt", animation_mode="None")
    assert cli.main(["render", str(settings), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"deforum: internal error: {settings}: RuntimeError: boom" in err and "Traceback" in err


def test_plan_shows_the_notes_as_comment_lines(tmp_path, capsys):
    settings = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=3, W=100,
                              animation_prompts={"0": "a"})
    assert cli.main(["plan", str(settings)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "# note: W=100 is used as 64 (rounded down to a multiple of 64)"
    assert not lines[2].startswith("#")


def test_a_shorter_preview_into_the_same_folder_leaves_no_frames_of_the_longer_one(tmp_path, capsys, monkeypatch):
    """Both previews start in one second (the clock is fixed), so they share the timestring's frame folder."""
    import datetime

    class FixedClock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2031, 5, 6, 7, 8, 9)

    finalize_module = importlib.import_module("deforum.settings.resolve")  # the module, not its resolve()
    monkeypatch.setattr(finalize_module, "datetime", type("clock", (), {"datetime": FixedClock}))
    out = tmp_path / "preview"
    for frames in (6, 3):
        assert cli.main(["preview", str(REPO / "settings" / "default_animation.txt"), "--set",
                         f"max_frames={frames}", "--set", "W=64", "--set", "H=64", "--output", str(out), "-q"]) == 0
    pngs = sorted(p.name for p in out.rglob("preview_*.png"))
    assert pngs == [f"preview_{i:05}.png" for i in range(3)]
    capsys.readouterr()
    folder = next(out.rglob("preview_00000.png")).parent
    assert cli.main(["video", str(folder), "--pattern", "preview_%05d.png", "--output", str(tmp_path / "v.mp4")]) == 0
    assert probe_video(tmp_path / "v.mp4").frame_count == 3


def test_render_shows_the_librarys_messages_on_stderr_and_q_hides_them(tmp_path, model, capsys, monkeypatch):
    """The loader logs "Loaded ..." (it printed it before); the CLI puts it on stderr, one plain line."""
    import deforum.runner as runner
    from deforum.models import loader

    def fake_render(args, anim_args, prompts, animation_prompts, root, **kwargs):
        settings = A.resolve(args, anim_args, vars(root), prompts=prompts, animation_prompts=animation_prompts)
        loader.load_root_model(settings.model)
        return runner.RunResult(Path("."), "20220101000000", [], settings=settings)

    monkeypatch.setattr(runner, "render", fake_render)
    monkeypatch.setattr(devices, "best_device", lambda: "cpu")
    ckpt, yaml = model
    settings = write_settings(tmp_path / "s.txt", animation_mode="None")
    argv = ["render", str(settings), "--checkpoint", str(ckpt), "--config", str(yaml), "--no-video"]
    assert cli.main(argv) == 0
    [loaded] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Loaded ")]
    assert loaded == f"Loaded {ckpt} with config {yaml.name} on cpu (float32)"
    assert cli.main([*argv, "-q"]) == 0
    assert "Loaded " not in capsys.readouterr().err


def test_a_settings_file_of_ours_carries_the_soundtrack_fields(tmp_path):
    path = write_settings(tmp_path / "s.txt", animation_mode="2D", max_frames=3, add_soundtrack="File",
                          soundtrack_path="song.mp3", settings_schema=1, deforum_version="0.1.0")
    job = cli.load_job(path, unknown_keys="problem")
    assert (job.video_setting("add_soundtrack"), job.video_setting("soundtrack_path")) == ("File", "song.mp3")
