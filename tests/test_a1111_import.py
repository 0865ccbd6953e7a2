"""A1111 / Forge Deforum settings files load (issue 20): shared fields by name, the rest through the dialect's
one table (deforum.settings.dialects.A1111_TABLE), the keys with no meaning here listed once as ignored.
Fixtures in tests/data/settings_dialects, written from the keys the extension saves."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest

from deforum import cli
from deforum import settings as S
from deforum.errors import SettingsError
from deforum.settings.dialects import A1111_SAMPLERS, A1111_TABLE, detect

DATA = Path(__file__).parent / "data" / "settings_dialects"
A1111 = DATA / "a1111_music_video.txt"
A1111_OURS = DATA / "a1111_music_video_as_ours.txt"
FORGE = DATA / "forge_2d.txt"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _plan_rows(path: Path, tmp_path: Path, capsys) -> list[dict]:
    table = tmp_path / f"{path.stem}.csv"
    assert cli.main(["plan", str(path), "--csv", str(table)]) == 0
    capsys.readouterr()
    return list(csv.DictReader(table.open()))


def _quiet_job(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cli.load_job(path)


# ------------------------------------------------------------------------------------- it loads, plans the same


@pytest.mark.parametrize("path", [A1111, FORGE, DATA / "a1111_unedited.txt", DATA / "a1111_edited_to_v06_names.txt"])
def test_a1111_and_forge_files_are_recognised_and_load(path):
    assert detect(_load(path)).name == "a1111"
    job = _quiet_job(path)
    assert job.dialect.name == "a1111" and job.dialect.supported


def test_the_a1111_file_plans_the_same_as_the_equivalent_file_of_ours(tmp_path, capsys):
    theirs = _plan_rows(A1111, tmp_path, capsys)
    ours = _plan_rows(A1111_OURS, tmp_path, capsys)
    assert len(theirs) == len(ours) == 24
    assert list(theirs[0]) == list(ours[0])
    for column in theirs[0]:  # column by column
        assert [r[column] for r in theirs] == [r[column] for r in ours], column
    # the schedules are A1111's, not the defaults: they move
    assert len({r["translation_x"] for r in theirs}) > 5 and theirs[12]["strength_schedule"] == "0.45"
    # positive_prompts / negative_prompts are added to every prompt, the prompt's own --neg kept
    assert theirs[0]["prompt"] == "highly detailed a neon city at night, synthwave --neg blurry nsfw, nude"
    assert theirs[20]["prompt"] == "highly detailed the sun over the neon city --neg nsfw, nude"


def test_the_a1111_file_has_the_values_of_the_equivalent_file_of_ours():
    theirs, ours = _quiet_job(A1111), _quiet_job(A1111_OURS)
    for name in ("W", "H", "seed", "sampler", "karras_schedule", "steps", "scale", "seed_behavior", "batch_name"):
        assert theirs.args[name] == ours.args[name], name
    for name in ("fov", "near_plane", "far_plane", "color_coherence", "diffusion_cadence", "depth_model",
                 "flip_2d_perspective", "animation_prompts_positive", "animation_prompts_negative",
                 "parseq_manifest", "parseq_use_deltas", "midas_weight"):
        assert theirs.anim_args[name] == ours.anim_args[name], name
    assert (theirs.args["sampler"], theirs.args["karras_schedule"], theirs.args["scale"]) == ("dpmpp_2m", True, 6)
    assert theirs.animation_prompts == ours.animation_prompts
    # fps and the soundtrack go to the video cell
    assert theirs.video_setting("fps") == ours.video_setting("fps") == 15
    assert theirs.video_setting("add_soundtrack") == "File"
    assert theirs.video_setting("soundtrack_path") == "/content/drive/MyDrive/beat.mp3"


def test_a_forge_file_plans_the_same_as_the_equivalent_file_of_ours(tmp_path, capsys):
    ours = {"W": 512, "H": 768, "seed": 77, "sampler": "euler_ancestral", "karras_schedule": True, "steps": 20,
            "scale": 5.5, "seed_behavior": "fixed", "strength": 0.85, "animation_mode": "2D", "max_frames": 10,
            "border": "wrap", "angle": "0: (0), 5: (10)", "zoom": "0: (1.02)", "translation_x": "0: (0)",
            "translation_y": "0: (2*sin(2*3.14*t/10))", "translation_z": "0: (0)", "rotation_3d_x": "0: (0)",
            "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)", "noise_schedule": "0: (0.04)",
            "strength_schedule": "0: (0.6)", "contrast_schedule": "0: (1.0)", "color_coherence": "None",
            "diffusion_cadence": "1", "depth_model": "depth_anything",
            "animation_prompts_positive": "origami, studio light", "animation_prompts_negative": "blurry",
            "animation_prompts": {"0": "a paper boat on a river", "6": "a paper boat at sea --neg storm"},
            "fps": 24, "settings_schema": 1}
    theirs = _plan_rows(FORGE, tmp_path, capsys)
    mine = _plan_rows(_write(tmp_path / "ours.txt", ours), tmp_path, capsys)
    assert len(theirs) == 10
    for column in theirs[0]:
        assert [r[column] for r in theirs] == [r[column] for r in mine], column
    assert theirs[6]["prompt"] == "origami, studio light a paper boat at sea --neg storm blurry"
    forge = _quiet_job(FORGE)
    assert (forge.args["sampler"], forge.args["karras_schedule"], forge.args["scale"]) == ("euler_ancestral", True, 5.5)
    assert forge.anim_args["depth_model"] == "depth_anything" and forge.video_setting("fps") == 24


# ----------------------------------------------------------------------------------------- ignored, mapped


def test_the_ignored_keys_are_listed_once_in_one_line():
    with pytest.warns(UserWarning) as caught:
        loaded = S.load_settings(A1111)
    lines = [str(w.message) for w in caught if "ignoring" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    line = lines[0]
    assert line.startswith(f"{A1111}: ignoring 32 A1111 / Forge Deforum keys with no meaning here: show_info_on_ui, ")
    for key in ("cn_1_enabled", "sd_model_name", "motion_preview_mode"):
        assert key in line
    listed = line.split(": ", 2)[-1].split(", ")
    for key in ("hybrid_motion", "optical_flow_cadence", "seed_schedule", "noise_type"):
        assert key not in listed  # fields here too: read by name
    for key in ("sampler", "cfg_scale_schedule", "fov_schedule", "positive_prompts", "fps", "W", "prompts",
                "parseq_manifest", "add_soundtrack"):  # read by name or mapped: not ignored
        assert f" {key}," not in line and not line.endswith(f" {key}")
    assert loaded.unknown_keys == [] and "motion_preview_mode" in loaded.dialect.ignored


def test_settings_check_prints_the_mappings_and_the_ignored_keys(capsys):
    assert cli.main(["settings", "check", str(A1111)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{A1111}: ok (3D mode, 24 frame(s))"
    assert out[1].startswith("  dialect: A1111 / Forge Deforum settings (sd_model_name; ")
    mapped = [line for line in out if line.startswith("  mapped: ")]
    assert mapped == [
        "  mapped: sampler 'DPM++ 2M Karras' -> 'dpmpp_2m' + karras_schedule",
        "  mapped: cfg_scale_schedule '0: (6)' -> scale 6",
        "  mapped: fov_schedule '0: (70)' -> fov 70",
        "  mapped: near_schedule '0: (200)' -> near_plane 200",
        "  mapped: far_schedule '0: (10000)' -> far_plane 10000",
        "  mapped: positive_prompts 'highly detailed' -> animation_prompts_positive",
        "  mapped: negative_prompts 'nsfw, nude' -> animation_prompts_negative",
        "  mapped: enable_perspective_flip False -> flip_2d_perspective",
        "  mapped: color_coherence 'LAB' -> 'Match Frame 0 LAB'",
        "  mapped: depth_algorithm 'Midas-3-Hybrid' -> depth_model 'midas'",
    ]
    ignored = [line for line in out if "ignoring" in line]
    assert len(ignored) == 1 and ignored[0].startswith("  ignoring 32 A1111 / Forge Deforum keys with no meaning ")


def test_settings_check_of_forge_maps_its_scheduler(capsys):
    assert cli.main(["settings", "check", str(FORGE)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  mapped: sampler 'Euler a' -> 'euler_ancestral'" in out
    assert "  mapped: scheduler 'Karras' -> karras_schedule" in out
    assert "  mapped: depth_algorithm 'Depth-Anything-V2-Small' -> depth_model 'depth_anything'" in out
    [ignored] = [line for line in out if "ignoring" in line]
    assert "keyframe_distribution" in ignored and "enable_wan" in ignored


@pytest.mark.parametrize("name, sampler, karras", [
    ("Euler a", "euler_ancestral", False), ("Euler", "euler", False), ("DPM++ 2M Karras", "dpmpp_2m", True),
    ("LCM", "lcm", False), ("LMS Karras", "klms", True), ("DPM++ SDE", "dpmpp_sde", False),
    ("DDIM", "ddim", False), ("euler_ancestral", "euler_ancestral", False),
])
def test_sampler_names(name, sampler, karras):
    job = _quiet_job_of({"sampler": name})
    assert (job.args["sampler"], job.args["karras_schedule"]) == (sampler, karras)
    lines = job.dialect.mappings
    assert (f"sampler {name!r} -> {sampler!r}" + (" + karras_schedule" if karras else "") in lines) == (name != sampler)


def test_every_a1111_sampler_name_is_a_sampler_here():
    from deforum.settings.fields import FIELDS

    assert set(A1111_SAMPLERS.values()) <= set(FIELDS["args"]["sampler"].choices)


def _a1111(**values) -> dict:
    """A small A1111 file: the signature keys, a 2D animation, and ``values``."""
    return {"sd_model_name": "m.safetensors", "sd_model_hash": "0", "deforum_git_commit_id": "0",
            "animation_mode": "2D", "max_frames": 4, "prompts": {"0": "a cat"}, **values}


def _quiet_job_of(values: dict, tmp_path: Path | None = None):
    import tempfile

    folder = Path(tempfile.mkdtemp()) if tmp_path is None else tmp_path
    return _quiet_job(_write(folder / "a1111.txt", _a1111(**values)))


def test_cfg_scale_and_the_newer_prompt_names_win(tmp_path):
    job = _quiet_job_of({"scale": 3, "cfg_scale": 4, "positive_prompts": "old", "animation_prompts_positive": "new",
                         "negative_prompts": "bad"}, tmp_path)
    assert job.args["scale"] == 4
    assert job.anim_args["animation_prompts_positive"] == "new"
    assert job.anim_args["animation_prompts_negative"] == "bad"
    assert "cfg_scale 4 -> scale" in job.dialect.mappings
    assert not any(line.startswith("positive_prompts") for line in job.dialect.mappings)
    job = _quiet_job_of({"cfg_scale": 4, "cfg_scale_schedule": "0: (8), 10: (8)"}, tmp_path)
    assert job.args["scale"] == 8  # A1111 renders with the schedule


def test_a_forge_files_animation_prompts_give_way_to_its_prompts(tmp_path):
    job = _quiet_job_of({"animation_prompts": {}, "prompts": {"0": "a dog", "2": "a cat"}}, tmp_path)
    assert job.animation_prompts == {0: "a dog", 2: "a cat"}
    assert "animation_prompts" in job.dialect.ignored


def test_a_close_scheduler_is_mapped_with_a_note(tmp_path):
    job = _quiet_job_of({"sampler": "Euler", "scheduler": "Simple"}, tmp_path)
    assert job.args["karras_schedule"] is False
    assert any(note.startswith("scheduler='Simple' is used as the sampler's own sigma spacing") for note in job.notes)
    assert _quiet_job_of({"scheduler": "Automatic"}, tmp_path).dialect.mappings == ()


def test_values_with_no_equivalent_are_one_error_naming_each(tmp_path):
    path = _write(tmp_path / "bad.txt", _a1111(sampler="UniPC", seed_behavior="spiral", scheduler="Exponential",
                                               cfg_scale_schedule="0: (7), 10: (9)",
                                               color_coherence="Video Input", depth_algorithm="Zoe",
                                               add_soundtrack="Loud"))
    with pytest.raises(SettingsError) as info:
        cli.load_job(path)
    problems = info.value.problems
    by_key = {p.split("=")[0]: p for p in problems}
    assert by_key["sampler"].startswith("sampler='UniPC': no such sampler here; A1111 names read: 'Euler a', ")
    assert "'euler_ancestral'" in by_key["sampler"]
    assert by_key["seed_behavior"].startswith("seed_behavior='spiral': must be one of 'iter', 'fixed', 'random', "
                                              "'ladder', 'alternate', 'schedule'")
    assert by_key["scheduler"].startswith("scheduler='Exponential': no such noise schedule here; allowed: 'Automatic'")
    assert "one number for the whole run here" in by_key["cfg_scale_schedule"]
    assert "color_coherence" in by_key and "depth_algorithm" in by_key
    assert "add_soundtrack" in by_key
    assert len([p for p in problems if p.startswith("sampler")]) == 1  # no second problem from the field check
    with pytest.raises(SettingsError):
        S.load_settings(path)  # the notebook's loader too


def test_a1111_seed_modes_are_read_by_name(tmp_path):
    job = _quiet_job_of({"seed_behavior": "ladder", "seed_iter_N": 3, "seed_schedule": "0:(s), 5:(7)"}, tmp_path)
    assert (job.args["seed_behavior"], job.args["seed_iter_N"]) == ("ladder", 3)
    assert job.anim_args["seed_schedule"] == "0:(s), 5:(7)"


def test_settings_check_of_a_bad_a1111_file_exits_2(tmp_path, capsys):
    path = _write(tmp_path / "bad.txt", _a1111(sampler="Restart"))
    assert cli.main(["settings", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sampler='Restart': no such sampler here" in err


def test_the_table_names_only_keys_a1111_writes_or_our_own():
    from deforum.settings.fields import FIELDS

    ours = {name for group in FIELDS.values() for name in group}
    # every table row is a real A1111 key; the shared ones (sampler, ...) are read through the table because
    # their values differ
    assert {"sampler", "color_coherence", "cfg_scale_schedule", "fov_schedule", "positive_prompts",
            "fps", "add_soundtrack", "soundtrack_path"} <= set(A1111_TABLE)
    assert {key for key in A1111_TABLE if key in ours} == {"sampler", "color_coherence", "fps",
                                                           "make_gif", "add_soundtrack", "soundtrack_path"}
