"""Issue 25 class 2: an output path never overwrites a file deforum did not write, and has the right suffix.

One rule (``deforum.outputs.check_output_path``) behind every writer: ``deforum video``, ``render``'s video
(the video cell), ``plan --csv/--plot``, ``preview``; re-running a command over its own output still works.
"""

import dataclasses
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum import cli
from deforum import settings as A
from deforum.errors import MediaError, SettingsError
from deforum.outputs import MARK, check_output_path, is_ours
from deforum.video import Mp4Writer, _check_fps, ffmpeg_exe, make_video, probe_video, video_cell

REPO = Path(__file__).resolve().parents[1]
TS = "20220903000939"
ANIM = str(REPO / "settings" / "default_animation.txt")
PLAN_3D = str(REPO / "settings" / "default_3d.txt")


def frames(folder: Path, count: int = 3, size: int = 16) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        path = folder / f"{TS}_{i:05d}.png"
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


def plain_ffmpeg_mp4(path: Path) -> Path:
    """A real mp4 that deforum did not write (no mark)."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=red:s=16x16:d=0.2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(path)],
                   check=True, capture_output=True)
    return path


def refused(path: Path, before: bytes, stderr: str, *words: str) -> None:
    assert path.read_bytes() == before, f"{path} was changed"
    line = [ln for ln in stderr.splitlines() if "deforum: error" in ln]
    assert line, stderr
    for word in words:
        assert word in stderr, (word, stderr)


# ------------------------------------------------------------------------------------------ the rule itself


@pytest.mark.parametrize("kind,name", [("mp4", "v.gif"), ("mp4", "v.png"), ("gif", "v.mp4"), ("csv", "p.txt"),
                                       ("plot", "p.jpg"), ("plot", "p"), ("mp4", "v")])
def test_wrong_suffix_is_refused_naming_field_path_and_allowed(tmp_path, kind, name):
    with pytest.raises(MediaError) as info:
        check_output_path(tmp_path / name, kind, "--out")
    message = str(info.value)
    assert message.startswith("--out: ") and name in message
    assert all(s in message for s in {"mp4": [".mp4"], "gif": [".gif"], "csv": [".csv"],
                                      "plot": [".png", ".svg", ".pdf"]}[kind])


def test_a_new_path_with_the_right_suffix_is_allowed_in_any_case(tmp_path):
    assert check_output_path(tmp_path / "a.MP4", "mp4", "f") == tmp_path / "a.MP4"
    assert check_output_path(tmp_path / "p.Svg", "plot", "f") == tmp_path / "p.Svg"


def test_folders_links_and_unmarked_files_are_refused(tmp_path):
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(MediaError, match="is a folder"):
        check_output_path(tmp_path / "dir.mp4", "mp4", "f")
    ours = make_video(frames(tmp_path / "f"), tmp_path / "ours.mp4", 12)
    (tmp_path / "link.mp4").symlink_to(ours)
    with pytest.raises(MediaError, match="is a link"):
        check_output_path(tmp_path / "link.mp4", "mp4", "f")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with pytest.raises(MediaError, match="is a link"):
        check_output_path(tmp_path / "dangling.mp4", "mp4", "f")
    foreign = plain_ffmpeg_mp4(tmp_path / "foreign.mp4")
    with pytest.raises(MediaError, match="not written by deforum"):
        check_output_path(foreign, "mp4", "f")
    assert check_output_path(ours, "mp4", "f") == ours


def test_marks_are_specific_to_the_kind(tmp_path):
    ours = make_video(frames(tmp_path / "f"), tmp_path / "ours.mp4", 12, make_gif=True)
    assert is_ours(ours, "mp4") and is_ours(tmp_path / "ours.gif", "gif")
    # a gif file renamed to .mp4, or our mp4 renamed to .gif, is not ours for that kind
    (tmp_path / "g.mp4").write_bytes((tmp_path / "ours.gif").read_bytes())
    (tmp_path / "m.gif").write_bytes(ours.read_bytes())
    assert not is_ours(tmp_path / "g.mp4", "mp4") and not is_ours(tmp_path / "m.gif", "gif")
    # a comment that merely contains the mark is not the mark
    other = tmp_path / "other.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=red:s=16x16:d=0.2", "-c:v", "libx264", "-metadata", f"comment=not {MARK} at all",
                    "-y", str(other)], check=True, capture_output=True)
    assert not is_ours(other, "mp4")


# ------------------------------------------------------------------------------ make_video / video_cell


def test_make_video_refuses_to_overwrite_a_frame(tmp_path):
    paths = frames(tmp_path)
    before = paths[1].read_bytes()
    with pytest.raises(MediaError, match=r"mp4_path: .*_00002\.png.* \.mp4"):
        make_video(paths, paths[1], 12)
    assert paths[1].read_bytes() == before


@pytest.mark.parametrize("content", ["png", "text", "plain_mp4"])
def test_make_video_refuses_an_mp4_it_did_not_write(tmp_path, content):
    paths = frames(tmp_path / "f")
    target = tmp_path / "clip.mp4"
    if content == "png":
        target.write_bytes(paths[0].read_bytes())
    elif content == "text":
        target.write_text('{"W": 512}')
    else:
        plain_ffmpeg_mp4(target)
    before = target.read_bytes()
    with pytest.raises(MediaError, match="not written by deforum"):
        make_video(paths, target, 12)
    assert target.read_bytes() == before


def test_make_video_refuses_a_gif_path_it_may_not_write(tmp_path):
    paths = frames(tmp_path / "f")
    settings = tmp_path / "clip.gif"
    settings.write_text("not a gif")
    with pytest.raises(MediaError, match="gif_path: .*not written by deforum"):
        make_video(paths, tmp_path / "clip.mp4", 12, make_gif=True)
    with pytest.raises(MediaError, match=r"gif_path: .*\.gif"):
        make_video(paths, tmp_path / "clip.mp4", 12, make_gif=True, gif_path=paths[0])
    assert settings.read_text() == "not a gif" and not (tmp_path / "clip.mp4").exists()


def test_make_video_checks_the_paths_before_reading_a_frame(tmp_path, monkeypatch):
    import deforum.video as V

    paths = frames(tmp_path / "f")
    monkeypatch.setattr(V, "_rgb_frame", lambda p: pytest.fail("a frame was read"))
    with pytest.raises(MediaError):
        make_video(paths, paths[0], 12)


def test_make_video_rerun_over_its_own_mp4_and_gif(tmp_path):
    paths = frames(tmp_path / "f")
    target = tmp_path / "clip.mp4"
    make_video(paths, target, 12, make_gif=True)
    make_video(paths[:2], target, 12, make_gif=True)
    assert probe_video(target).frame_count == 2
    with Image.open(tmp_path / "clip.gif") as gif:
        assert gif.n_frames == 2


def test_mp4_writer_refuses_a_foreign_file(tmp_path):
    settings = tmp_path / "run_settings.mp4"
    settings.write_text("{}")
    with pytest.raises(MediaError, match="mp4_path: .*run_settings.mp4"):
        Mp4Writer(settings, 16, 16, 12)
    assert settings.read_text() == "{}"


def test_video_cell_manual_mp4_path_may_not_be_a_settings_file(tmp_path):
    frames(tmp_path)
    settings = tmp_path / f"{TS}_settings.txt"
    settings.write_text("{}")
    with pytest.raises(MediaError, match="mp4_path: .*settings.txt.*\\.mp4"):
        video_cell(outdir=tmp_path, timestring=TS, use_manual_settings=True,
                   image_path=str(tmp_path / f"{TS}_%05d.png"), mp4_path=str(settings))
    assert settings.read_text() == "{}"


def test_video_cell_refuses_a_foreign_file_at_the_runs_video_path(tmp_path, monkeypatch):
    import deforum.video as V

    frames(tmp_path)
    foreign = tmp_path / f"{TS}.mp4"
    foreign.write_bytes(b"someone else's file")
    monkeypatch.setattr(V, "frames_from_pattern", lambda p: pytest.fail("frames were listed"))
    with pytest.raises(MediaError, match="not written by deforum"):
        video_cell(outdir=tmp_path, timestring=TS)
    assert foreign.read_bytes() == b"someone else's file"
    gif = tmp_path / f"{TS}.gif"
    gif.write_bytes(b"GIF89a not ours")
    foreign.unlink()
    with pytest.raises(MediaError, match="make_gif: .*not written by deforum"):
        video_cell(outdir=tmp_path, timestring=TS, make_gif=True)
    assert not foreign.exists()


def test_video_cell_rerun_overwrites_its_own_video(tmp_path):
    frames(tmp_path)
    first = video_cell(outdir=tmp_path, timestring=TS, make_gif=True)
    again = video_cell(outdir=tmp_path, timestring=TS, fps=24, make_gif=True)
    assert first.mp4_path == again.mp4_path and probe_video(again.mp4_path).fps == 24


# ------------------------------------------------------------------------------------------------- fps


@pytest.mark.parametrize("fps", [0.5, 0.0, -1, 1001, math.nan, math.inf, True, "12"])
def test_fps_outside_the_fields_range_is_refused(fps):
    with pytest.raises(SettingsError, match="fps must be a number from 1 to 1000"):
        _check_fps(fps)


def test_fps_range_comes_from_the_field_table(monkeypatch):
    fps_field = A.FIELDS["video"]["fps"]
    assert _check_fps(fps_field.minimum) == fps_field.minimum and _check_fps(A.MAX_FPS) == A.MAX_FPS
    monkeypatch.setitem(A.FIELDS["video"], "fps", dataclasses.replace(fps_field, minimum=5, maximum=50))
    with pytest.raises(SettingsError, match="from 5 to 50"):
        _check_fps(60)
    with pytest.raises(SettingsError, match="from 5 to 50"):
        _check_fps(4)
    assert _check_fps(50) == 50.0


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_video_refuses_to_overwrite_a_frame(tmp_path, capsys):
    paths = frames(tmp_path)
    before = paths[1].read_bytes()
    code = cli.main(["video", str(tmp_path), "--output", str(paths[1])])
    assert code != 0
    refused(paths[1], before, capsys.readouterr().err, "--output", str(paths[1]), ".mp4")


def test_cli_video_refuses_foreign_mp4_and_gif(tmp_path, capsys):
    frames(tmp_path)
    foreign = plain_ffmpeg_mp4(tmp_path / "mine.mp4")
    before = foreign.read_bytes()
    assert cli.main(["video", str(tmp_path), "--output", str(foreign)]) != 0
    refused(foreign, before, capsys.readouterr().err, "--output", "not written by deforum")
    gif = tmp_path / "new.gif"
    gif.write_bytes(b"GIF89a someone's")
    assert cli.main(["video", str(tmp_path), "--output", str(tmp_path / "new.mp4"), "--gif"]) != 0
    refused(gif, b"GIF89a someone's", capsys.readouterr().err, "--gif", "not written by deforum")
    assert not (tmp_path / "new.mp4").exists()


def test_cli_video_rerun_over_its_own_output(tmp_path, capsys):
    frames(tmp_path)
    assert cli.main(["video", str(tmp_path), "--gif"]) == 0
    assert cli.main(["video", str(tmp_path), "--gif", "--fps", "24"]) == 0
    assert probe_video(tmp_path / f"{TS}.mp4").fps == 24
    assert cli.main(["video", str(tmp_path), "--output", str(tmp_path / "x.mp4")]) == 0
    assert cli.main(["video", str(tmp_path), "--output", str(tmp_path / "x.mp4")]) == 0


def test_cli_plan_csv_refuses_foreign_files_and_wrong_suffix(tmp_path, capsys):
    settings = tmp_path / "run_settings.csv"
    settings.write_text("a,b\n1,2\n")
    assert cli.main(["plan", ANIM, "--csv", str(settings)]) != 0
    err = capsys.readouterr()
    refused(settings, b"a,b\n1,2\n", err.err, "--csv", "not written by deforum")
    assert err.out == ""  # refused before the plan is printed
    txt = tmp_path / "run_settings.txt"
    txt.write_text("{}")
    assert cli.main(["plan", ANIM, "--csv", str(txt)]) != 0
    refused(txt, b"{}", capsys.readouterr().err, "--csv", ".csv")


def test_cli_plan_csv_rerun_over_its_own_csv(tmp_path, capsys):
    out = tmp_path / "plan.csv"
    assert cli.main(["plan", ANIM, "--set", "max_frames=5", "--csv", str(out)]) == 0
    assert cli.main(["plan", PLAN_3D, "--set", "max_frames=4", "--csv", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 5


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_cli_plan_plot_rerun_over_its_own_plot(tmp_path, capsys, suffix):
    out = tmp_path / f"plot{suffix}"
    for _ in range(2):
        assert cli.main(["plan", PLAN_3D, "--set", "max_frames=20", "--plot", str(out)]) == 0
    assert is_ours(out, "plot")
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


def test_cli_plan_plot_refuses_a_frame_and_a_wrong_suffix(tmp_path, capsys):
    [frame] = frames(tmp_path, 1)
    before = frame.read_bytes()
    assert cli.main(["plan", PLAN_3D, "--set", "max_frames=20", "--plot", str(frame)]) != 0
    refused(frame, before, capsys.readouterr().err, "--plot", "not written by deforum")
    assert cli.main(["plan", PLAN_3D, "--plot", str(tmp_path / "plot.jpg")]) != 0
    assert ".png or .svg or .pdf" in capsys.readouterr().err


def preview_argv(out: Path, *extra: str) -> list[str]:
    return ["preview", ANIM, "--set", "max_frames=3", "--set", "W=64", "--set", "H=64", "--output", str(out),
            "-q", *extra]


def test_cli_preview_refuses_a_frame_before_any_work(tmp_path, capsys, monkeypatch):
    from deforum.render import preview

    [frame] = frames(tmp_path, 1)
    before = frame.read_bytes()
    monkeypatch.setattr(preview, "start_image", lambda *a, **k: pytest.fail("work started"))
    assert cli.main(preview_argv(frame)) != 0
    refused(frame, before, capsys.readouterr().err, "--output", ".mp4")
    foreign = plain_ffmpeg_mp4(tmp_path / "p.mp4")
    before = foreign.read_bytes()
    assert cli.main(preview_argv(foreign)) != 0
    refused(foreign, before, capsys.readouterr().err, "--output", "not written by deforum")


def test_preview_refuses_foreign_pngs_in_its_frames_folder_and_replaces_its_own(tmp_path):
    from deforum.plan import make_plan
    from deforum.render import preview

    job = cli.load_job(ANIM, {"anim_args": {"max_frames": 3}, "args": {"W": 64, "H": 64}})
    settings = A.resolve(job.args, job.anim_args, prompts=job.prompts, animation_prompts=job.animation_prompts)
    plan = make_plan(settings, 1)
    first = preview.test_card(64, 64)
    folder = tmp_path / f"{TS}_preview"
    assert cli.preview_outputs(tmp_path, TS, True, 3) == (tmp_path / f"{TS}_preview.mp4", folder)
    for _ in range(2):  # a rerun replaces the preview's own mp4 and frames
        preview.render_preview(plan, settings, first, mp4_path=tmp_path / f"{TS}_preview.mp4", frames_dir=folder)
    foreign = folder / "preview_00001.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(foreign)
    before = foreign.read_bytes()
    with pytest.raises(MediaError, match="--png: .*preview_00001.png.*not written by deforum"):
        cli.preview_outputs(tmp_path, TS, True, 3)
    with pytest.raises(MediaError, match="frames_dir: .*preview_00001.png"):
        preview.render_preview(plan, settings, first, mp4_path=None, frames_dir=folder)
    assert foreign.read_bytes() == before
    assert cli.preview_outputs(tmp_path, TS, False, 3)[1] is None  # --no-png: the folder is not touched
