"""Settings files of other programs: recognised by content, read with their v0.6 meaning where v0.6 was
lenient, imported (A1111 / Forge Deforum: tests/test_a1111_import.py) or refused with one message naming the
dialect (issue 26; fixtures in tests/data/settings_dialects, written from the documented formats)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from deforum import cli
from deforum import settings as A
from deforum import settings as S
from deforum.errors import SettingsError
from deforum.settings.dialects import detect

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "settings_dialects"
V06_DUMP = Path(__file__).parent / "data" / "settings" / "20221115120000_settings.txt"


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("name, dialect", [
    ("v06_3d_border_warp.txt", "v06_dump"),
    ("v06_runner_width_height.json", "v06_runner"),
    ("v06_video_input_max_frames.txt", "v06_partial"),
    ("a1111_unedited.txt", "a1111"),
    ("a1111_edited_to_v06_names.txt", "a1111"),
    ("parseq_manifest.json", "parseq"),
])
def test_each_fixture_is_recognised(name, dialect):
    assert detect(_load(name)).name == dialect


def test_our_files_and_v06_dumps_are_recognised():
    for path in (REPO / "settings").iterdir():
        found = detect(json.loads(path.read_text()))
        assert found.name in ("ours", "v06_partial", "v06_dump"), path
    assert detect(json.loads((REPO / "settings" / "default_3d.txt").read_text())).name == "ours"
    assert detect(json.loads(V06_DUMP.read_text())).name == "v06_dump"
    assert detect({}).name == "v06_partial"
    # one A1111-looking key is not enough (a v0.6 file with a stray key stays v0.6)
    assert detect({"W": 512, "motion_preview_mode": False}).name == "v06_partial"
    # a web-UI sampler name alone may be a typo; with one A1111-only key it names the dialect
    assert detect({"sampler": "Euler a"}).name == "v06_partial"
    assert detect({"sampler": "Euler a", "motion_preview_mode": False}).name == "a1111"


def test_a1111_evidence_names_what_was_found():
    evidence = detect(_load("a1111_unedited.txt")).evidence
    assert "sd_model_name" in evidence and "sampler='Euler a'" in evidence
    edited = detect(_load("a1111_edited_to_v06_names.txt")).evidence
    assert "A1111-only keys" in edited[0] and "fov_schedule" in edited[0]
    # --neg is this project's syntax too (negative prompts): it names no dialect any more
    assert not any("--neg" in item for item in evidence + edited)


def test_prompts_with_neg_are_not_a_sign_of_a1111():
    assert detect({"W": 512, "prompts": {"0": "a cat --neg dog"}}).name == "v06_partial"
    data = _load("v06_3d_border_warp.txt")
    data["prompts"] = {"0": "a cat --neg dog", "10": "a dog --neg cat"}
    assert detect(data).name == "v06_dump"
    assert detect({"prompts": {"0": "a --neg b"}, "animation_prompts_negative": "blurry"}).name == "v06_partial"


# ------------------------------------------------------------------------------------ v0.6 meaning


def test_an_unknown_border_in_a_v06_file_is_replicate_with_a_note():
    loaded = S.load_settings(DATA / "v06_3d_border_warp.txt")
    assert loaded.anim_args.border == "replicate"
    assert loaded.anim_args.animation_mode == "3D" and loaded.args.W == 576 and loaded.args.H == 448
    assert "border='warp' is used as 'replicate' (v0.6 rendered every border but 'wrap' as 'replicate')" \
        in loaded.notes
    assert loaded.dialect.name == "v06_dump"


def test_an_unknown_border_stays_an_error_in_our_format(tmp_path):
    data = _load("v06_3d_border_warp.txt")
    data.update(settings_schema=1, deforum_version="0.6.0")
    with pytest.raises(SettingsError) as info:
        S.load_settings(_write(tmp_path / "ours.txt", data))
    assert any(p.startswith("border='warp': ") for p in info.value.problems)


def test_an_unknown_border_from_the_command_line_stays_an_error(tmp_path):
    path = DATA / "v06_runner_width_height.json"
    with pytest.raises(SettingsError, match="border='warp'"):
        cli.load_job(path, {"anim_args": {"border": "warp"}})


def test_width_and_height_of_a_runner_file_are_w_and_h(tmp_path):
    loaded = S.load_settings(DATA / "v06_runner_width_height.json")
    assert (loaded.args.W, loaded.args.H) == (704, 704)
    assert loaded.unknown_keys == []
    assert loaded.notes[:2] == ["width=704 is read as W (a v0.6-based runner's name for W)",
                                "height=704 is read as H (a v0.6-based runner's name for H)"]


def test_width_is_rounded_like_w_and_w_wins_over_width(tmp_path):
    loaded = S.load_settings(_write(tmp_path / "r.json", {"width": 700, "height": 448}))
    assert (loaded.args.W, loaded.args.H) == (640, 448)
    assert "W=700 is used as 640 (rounded down to a multiple of 64)" in loaded.notes
    merged = S.merge_settings(A.defaults("args"), A.defaults("anim_args"), {"W": 512, "width": 704}, where="f")
    assert merged.args.W == 512 and merged.unknown_keys == ["width"]
    with pytest.raises(SettingsError) as info:  # a dropped size key is a problem for settings check
        S.finish_settings(merged, unknown_keys="problem")
    assert info.value.problems[0].startswith("'width': unknown key")


def test_width_in_our_format_is_not_w(tmp_path):
    with pytest.warns(UserWarning, match="ignoring 1 unknown key: 'width'"):
        loaded = S.load_settings(_write(tmp_path / "ours.json", {"width": 704, "settings_schema": 1}))
    assert loaded.args.W == 512 and loaded.unknown_keys == ["width"]


def test_video_input_takes_max_frames_from_the_video_whatever_the_file_says():
    loaded = S.load_settings(DATA / "v06_video_input_max_frames.txt")
    assert loaded.anim_args.max_frames == A.MAX_FRAMES_LIMIT
    assert loaded.notes[0].startswith(f"max_frames=9999999 is used as {A.MAX_FRAMES_LIMIT} (Video Input renders "
                                      "every frame the video gives, as v0.6 did")


def test_a_huge_max_frames_outside_video_input_stays_an_error(tmp_path):
    data = dict(_load("v06_video_input_max_frames.txt"), animation_mode="2D")
    with pytest.raises(SettingsError) as info:
        S.load_settings(_write(tmp_path / "2d.txt", data))
    assert any(p.startswith("max_frames=9999999: ") for p in info.value.problems)


def test_the_v06_dump_of_this_repo_still_loads_without_notes():
    loaded = S.load_settings(V06_DUMP)
    assert loaded.notes == [] and loaded.unknown_keys == [] and loaded.dialect.name == "v06_dump"


# -------------------------------------------------------------------------------- unsupported ones


@pytest.mark.parametrize("name", ["a1111_unedited.txt", "a1111_edited_to_v06_names.txt"])
def test_the_a1111_fixtures_of_issue_26_load_now(name):
    with pytest.warns(UserWarning, match="ignoring .* A1111 / Forge Deforum keys? with no meaning here: "):
        loaded = S.load_settings(DATA / name)
    assert loaded.dialect.name == "a1111" and loaded.anim_args.animation_mode == "3D"
    assert loaded.args.sampler == "euler_ancestral" and loaded.anim_args.color_coherence == "Match Frame 0 LAB"
    assert loaded.anim_args.fov == 70 and loaded.anim_args.animation_prompts_negative == (
        "nsfw, nude" if name == "a1111_unedited.txt" else "")


@pytest.mark.parametrize("name, title", [
    ("parseq_manifest.json", "this is a Parseq manifest ("),
])
def test_an_unsupported_dialect_is_one_message(name, title):
    for load in (S.load_settings, cli.load_job,
                 lambda p: S.apply_settings_file(A.defaults("args"), A.defaults("anim_args"), p)):
        with pytest.raises(SettingsError) as info:
            load(DATA / name)
        [problem] = info.value.problems
        assert problem.startswith(title) and "is not supported yet" in problem
        assert str(info.value) == f"{DATA / name}: {problem}"
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("command", [["settings", "check"], ["plan"], ["render", "-q"]])
@pytest.mark.parametrize("name, title", [("parseq_manifest.json", "Parseq manifest")])
def test_cli_names_the_dialect_once(command, name, title, capsys):
    assert cli.main([*command, str(DATA / name)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and title in lines[0] and "format" not in lines[0].split("(")[0]
    assert "must be" not in captured.err  # no per-key cascade


# ----------------------------------------------------------------------------------------- the CLI


def test_settings_check_names_the_dialect_and_the_notes(capsys):
    assert cli.main(["settings", "check", str(DATA / "v06_runner_width_height.json"),
                     str(DATA / "v06_3d_border_warp.txt"), str(REPO / "settings" / "default_3d.txt")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [f"{DATA / 'v06_runner_width_height.json'}: ok (2D mode, 6 frame(s))",
                       "  dialect: settings of a v0.6-based local runner (width / height instead of W / H)",
                       "  note: width=704 is read as W (a v0.6-based runner's name for W)",
                       "  note: height=704 is read as H (a v0.6-based runner's name for H)",
                       "  note: border='warp' is used as 'replicate' (v0.6 rendered every border but 'wrap' as "
                       "'replicate')"]
    assert "  dialect: Deforum v0.6 / v0.7 notebook settings (110 of the 110 v0.6 keys)" in out
    assert any(line.startswith("  dialect: deforum settings (this project's format") for line in out)


def test_plan_shows_the_values_the_file_asked_for(tmp_path, capsys):
    table = tmp_path / "plan.csv"
    assert cli.main(["plan", str(DATA / "v06_runner_width_height.json"), "--csv", str(table)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"# {DATA / 'v06_runner_width_height.json'}: 2D mode, W x H 704 x 704, 6 row(s), "
                             "seed 31337")
    assert "# note: width=704 is read as W (a v0.6-based runner's name for W)" in out
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 6 and [float(r["zoom"]) for r in rows] == [1.02] * 6
    assert rows[3]["prompt"] == "a forest path at dusk, watercolor"


def test_plan_of_video_input_with_a_huge_max_frames_runs(tmp_path, capsys):
    assert cli.main(["plan", str(DATA / "v06_video_input_max_frames.txt")]) == 0
    out = capsys.readouterr().out
    assert f"# note: max_frames=9999999 is used as {A.MAX_FRAMES_LIMIT}" in out


@pytest.mark.parametrize("value", [10**9, 10**18, 2**64, -1, 1e300])
def test_an_absurd_video_input_max_frames_loads_bounded_without_allocating_by_it(tmp_path, value):
    import tracemalloc

    path = _write(tmp_path / "s.txt", {"animation_mode": "Video Input", "max_frames": value})
    tracemalloc.start()
    try:
        loaded = S.load_settings(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.anim_args.max_frames == (1 if value == -1 else A.MAX_FRAMES_LIMIT)
    assert loaded.notes[-1].startswith(f"max_frames={value!r} is used as ")
    assert peak < 20 * 2**20  # bounded by MAX_FRAMES_LIMIT, not by the file's count


def test_a_video_input_max_frames_of_the_wrong_type_stays_an_error(tmp_path):
    path = _write(tmp_path / "s.txt", {"animation_mode": "Video Input", "max_frames": "1000000000"})
    with pytest.raises(SettingsError, match="max_frames='1000000000'"):
        S.load_settings(path)
