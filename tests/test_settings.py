"""Settings files: v0.6 presets and dumps load as v0.6 loaded them (with the documented fixes), our dumps
round-trip, and every mistake in a file is reported at once with the file and the key."""

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deforum import SettingsError
from deforum import settings as A
from deforum import settings as S
from deforum.errors import MediaError

DATA = Path(__file__).parent / "data" / "settings"
REPO = Path(__file__).resolve().parent.parent
V06_TXT = DATA / "20221115120000_settings.txt"
PRESETS = sorted(p.name for p in (DATA / "presets").glob("*.json"))
FILLED = json.loads((DATA / "filled_fields.json").read_text())

# Where we differ from v0.6's load_args on purpose (docs/compat.md): outdir from a file is not used.
NOT_TAKEN_FROM_FILE = {"outdir"}


def _expected(name):
    return json.loads((DATA / "expected_after_load_args" / name).read_text())


def _compare(loaded, expected):
    a, anim = vars(loaded.args), vars(loaded.anim_args)
    for key, value in expected["args"].items():
        if key in NOT_TAKEN_FROM_FILE:
            continue
        assert a[key] == value, key
        assert type(a[key]) is type(value) or value is None, key
    assert {k: anim[k] for k in expected["anim_args"]} == expected["anim_args"]


def test_six_v06_presets():
    assert PRESETS == list(A.PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_v06_preset_loads_like_v06(name):
    loaded = S.load_settings(DATA / "presets" / name)
    _compare(loaded, _expected(name))
    assert loaded.args.outdir is None  # computed by finalize, never taken from defaults of another machine
    assert loaded.unknown_keys == []
    assert loaded.prompts == A.DEFAULT_PROMPTS  # presets hold no prompts: the cell's stay
    assert loaded.animation_prompts == A.DEFAULT_ANIMATION_PROMPTS


@pytest.mark.parametrize("name", PRESETS)
def test_repo_presets_are_verbatim_v06(name):
    assert (REPO / "settings" / name).read_bytes() == (DATA / "presets" / name).read_bytes()


def test_v06_settings_txt_loads_like_v06():
    text = V06_TXT.read_text(encoding="utf-8")
    assert not text.endswith("\n")  # v0.6 wrote no trailing newline
    loaded = S.load_settings(V06_TXT)
    _compare(loaded, _expected("20221115120000_settings.json"))
    assert (loaded.args.seed, loaded.args.timestring) == (FILLED["seed"], FILLED["timestring"])
    assert loaded.anim_args.animation_mode == "3D"


def test_v06_settings_txt_prompts_are_honoured():
    loaded = S.load_settings(V06_TXT)
    file_prompts = json.loads(V06_TXT.read_text())["prompts"]
    assert loaded.animation_prompts == {int(k): v for k, v in file_prompts.items()}
    assert all(isinstance(k, int) for k in loaded.animation_prompts)
    assert "prompts" in loaded.from_file


def test_outdir_from_file_is_not_used():
    base = dict(A.defaults("args"), outdir="/my/outdir")
    loaded = S.apply_settings_file(base, A.defaults("anim_args"), V06_TXT)
    assert loaded.args.outdir == "/my/outdir"
    assert json.loads(V06_TXT.read_text())["outdir"] == FILLED["outdir"]


def test_apply_keeps_cell_values_for_keys_the_file_lacks():
    cells = dict(A.defaults("args"), steps=25, W=768)
    anim = dict(A.defaults("anim_args"), animation_mode="2D", max_frames=50)
    loaded = S.apply_settings_file(cells, anim, REPO / "settings" / "512x512_colormatch_1.json",
                                   prompts=["p"], animation_prompts={0: "a", 5: "b"})
    assert (loaded.args.steps, loaded.args.W, loaded.args.colormatch_scale) == (25, 512, 2000)
    assert (loaded.anim_args.animation_mode, loaded.anim_args.max_frames) == ("2D", 50)
    assert loaded.prompts == ["p"] and loaded.animation_prompts == {0: "a", 5: "b"}


def _write(tmp_path, data, name="s.txt"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("w", "h", "expected"), [(600, 700, (576, 640)), (512, 512, (512, 512)),
                                                  (1000.0, 64, (960, 64))])
def test_width_height_rounded_down_from_file(tmp_path, w, h, expected):
    loaded = S.load_settings(_write(tmp_path, {"W": w, "H": h}))
    assert (loaded.args.W, loaded.args.H) == expected


def test_round_trip(tmp_path):
    a = dict(A.defaults("args"), W=768, seed=123, sampler="euler", steps=30, strength=0.3,
             grad_inject_timing=[0.5, 1.0], batch_name="Run1", ignore_sat_weight=None, prompt="café ☕",
             karras_schedule=True)
    anim = dict(A.defaults("anim_args"), animation_mode="3D", max_frames=24, diffusion_cadence="3",
                zoom="0:(1.0), 10:(1.02)", depth_model="depth_anything", correct_3d_aspect=True)
    prompts = ["one: 2", "two"]
    animation_prompts = {0: "ünïcode apple", 12: "banana"}
    path = S.save_settings(tmp_path / "20240101000000_settings.txt", a, anim, prompts, animation_prompts)
    loaded = S.load_settings(path)
    assert vars(loaded.args) == a
    assert vars(loaded.anim_args) == anim
    assert loaded.prompts == prompts
    assert loaded.animation_prompts == animation_prompts
    assert "café ☕" in path.read_text(encoding="utf-8")  # ensure_ascii=False like v0.6


def test_round_trip_none_mode_and_namespaces(tmp_path):
    a = SimpleNamespace(**A.defaults("args"))
    anim = SimpleNamespace(**A.defaults("anim_args"))
    prompts = ["first prompt", "second prompt", "third"]
    path = S.save_settings(tmp_path / "x.txt", a, anim, prompts, {0: "a"})
    data = json.loads(path.read_text())
    assert data["prompts"] == {"first prompt": "00000", "second prompt": "00001", "third": "00002"}
    loaded = S.load_settings(path)
    assert loaded.prompts == prompts and loaded.animation_prompts == {0: "a"}


def test_saved_file_matches_v06_dump_key_for_key(tmp_path):
    loaded = S.load_settings(V06_TXT)
    loaded.args.outdir = FILLED["outdir"]
    path = S.save_settings(tmp_path / "out.txt", loaded.args, loaded.anim_args, loaded.prompts,
                           loaded.animation_prompts)
    ours = json.loads(path.read_text())
    v06 = json.loads(V06_TXT.read_text())
    assert {k: ours[k] for k in v06} == v06
    # v0.6 keys keep v0.6 order: args, "prompts", anim_args; our additions come after them
    assert [k for k in ours if k in v06] == list(v06)
    ours_order = list(ours)
    assert ours_order.index("prompts") == len(A.ARGS_FIELDS)
    assert ours_order[-4:] == ["animation_prompts", "batch_prompts", "deforum_version", "settings_schema"]
    assert ours["settings_schema"] == 1


def test_saved_root_round_trips(tmp_path):
    root = A.defaults("root")
    path = S.save_settings(tmp_path / "r.txt", A.defaults("args"), A.defaults("anim_args"), root=root)
    assert S.load_settings(path).root == root


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "deep" / "run_settings.txt"
    S.save_settings(path, A.defaults("args"), A.defaults("anim_args"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["run_settings.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_failed_save_keeps_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = S.save_settings(tmp_path / "s.txt", A.defaults("args"), A.defaults("anim_args"))
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(MediaError, match="s.txt.*disk full"):
        S.save_settings(path, dict(A.defaults("args"), seed=5), A.defaults("anim_args"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.txt"]


def test_non_json_runtime_values_do_not_crash(tmp_path):
    a = dict(A.defaults("args"), init_latent=object(), init_sample=np.zeros((1, 3, 8, 8)),
             mask_sample=np.float32(0.5), steps=np.int64(30), outdir=tmp_path)
    path = S.save_settings(tmp_path / "s.txt", a, A.defaults("anim_args"))
    data = json.loads(path.read_text())
    assert data["init_latent"] is None and data["init_sample"] is None
    assert data["mask_sample"] == 0.5 and data["steps"] == 30 and data["outdir"] == str(tmp_path)


def test_unknown_keys_kept_and_reported_once(tmp_path):
    path = _write(tmp_path, {"W": 512, "my_extra": 1, "hybrid_video_flow": "x", "steps": 20})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = S.load_settings(path)
    assert loaded.unknown_keys == ["my_extra", "hybrid_video_flow"]
    assert loaded.extra == {"my_extra": 1, "hybrid_video_flow": "x"}
    assert len(caught) == 1
    assert "my_extra" in str(caught[0].message) and str(path) in str(caught[0].message)
    assert loaded.args.steps == 20


@pytest.mark.parametrize(("data", "fragment"), [
    ({"W": 0}, "W=0"),
    ({"sampler": "Euler"}, "sampler='Euler'"),
    ({"color_coherence": "Match Frame 0 Lab"}, "color_coherence='Match Frame 0 Lab'"),
    ({"max_frames": 10**9}, "max_frames=1000000000"),
    ({"batch_name": "../../etc"}, "batch_name='../../etc'"),
    ({"filename_format": "/abs/{seed}.png"}, "filename_format='/abs/{seed}.png'"),
    ({"init_latent": [1, 2]}, "init_latent=[1, 2]"),
    ({"settings_schema": 2}, "settings_schema=2"),
    ({"prompts": {"zero": "a cat"}}, "prompts['zero']"),
    ({"animation_prompts": {"-3": "a cat"}}, "animation_prompts['-3']"),
    ({"animation_prompts": {"0": 5}}, "animation_prompts['0']=5"),
    ({"batch_prompts": "a cat"}, "batch_prompts='a cat'"),
    ({"animation_mode": "2D", "zoom": "0:(1.04"}, "zoom"),
])
def test_bad_file_value_names_file_and_key(tmp_path, data, fragment):
    path = _write(tmp_path, data)
    with pytest.raises(SettingsError) as info:
        S.load_settings(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_bad_file_reports_every_problem_at_once(tmp_path):
    path = _write(tmp_path, {"W": 0, "H": "512", "seed_behavior": "Iter", "diffusion_cadence": "12",
                             "animation_prompts": {"x": "y"}})
    with pytest.raises(SettingsError) as info:
        S.load_settings(path)
    names = sorted(p.split("=")[0].split("[")[0] for p in info.value.problems)
    assert names == ["H", "W", "animation_prompts", "diffusion_cadence", "seed_behavior"]


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"W": 512,}', "not valid JSON"),
    ('{"W": 512', "line 1"),
    ("[1, 2]", "JSON object"),
    ("W = 512", "not valid JSON"),
])
def test_malformed_file(tmp_path, text, fragment):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(SettingsError, match=fragment):
        S.load_settings(path)


def test_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        S.load_settings(tmp_path / "nope.txt")


@pytest.mark.parametrize(("prompts", "still", "animation"), [
    ({"0": "a", "10": "b"}, None, {0: "a", 10: "b"}),
    ({"a cat": "00000", "a dog": "00001"}, ["a cat", "a dog"], None),  # v0.6 None-mode dump
    ({"b second": "00001", "a first": "00000"}, ["a first", "b second"], None),
    (["x", "y"], ["x", "y"], None),
])
def test_v06_prompt_shapes(tmp_path, prompts, still, animation):
    loaded = S.load_settings(_write(tmp_path, {"prompts": prompts}))
    assert loaded.prompts == (still if still is not None else A.DEFAULT_PROMPTS)
    assert loaded.animation_prompts == (animation if animation is not None else A.DEFAULT_ANIMATION_PROMPTS)


def test_explicit_prompt_keys_win(tmp_path):
    data = {"prompts": {"0": "old"}, "animation_prompts": {"0": "new"}, "batch_prompts": ["p"]}
    loaded = S.load_settings(_write(tmp_path, data))
    assert loaded.animation_prompts == {0: "new"} and loaded.prompts == ["p"]


@pytest.mark.parametrize(("name", "mode"), [("default_animation.txt", "2D"), ("default_3d.txt", "3D")])
def test_shipped_default_animation_files(name, mode):
    loaded = S.load_settings(REPO / "settings" / name)
    expected_anim = dict(A.defaults("anim_args"), animation_mode=mode, max_frames=120)
    assert vars(loaded.anim_args) == expected_anim
    assert vars(loaded.args) == A.defaults("args")
    assert loaded.animation_prompts == A.DEFAULT_ANIMATION_PROMPTS
    assert loaded.unknown_keys == []


def test_resolve_settings_file(tmp_path):
    assert S.resolve_settings_file("custom", "~/x.txt") == Path(os.path.expanduser("~/x.txt"))
    assert S.resolve_settings_file("512x512_aesthetic_0.json", "", tmp_path) == \
        tmp_path / "512x512_aesthetic_0.json"
    assert S.resolve_settings_file("512x512_aesthetic_0.json", "").is_file()
    with pytest.raises(SettingsError, match="settings_file='../x.json'"):
        S.resolve_settings_file("../x.json", "")


def test_unknown_keys_are_one_warning_line_with_the_closest_setting(tmp_path):
    path = _write(tmp_path, {"strenght_schedule": "0:(0.5)", "comment": "mine", "steps": 20})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = S.load_settings(path)
    [warning] = caught
    message = str(warning.message)
    assert "\n" not in message
    assert message.startswith(f"{path}: ignoring 2 unknown keys: 'strenght_schedule' (did you mean "
                              "'strength_schedule'?), 'comment';")
    text = message.removeprefix(f"{path}: ")
    assert "Settings" not in text and "unknown_keys" not in text  # no internal names
    assert loaded.unknown_keys == ["strenght_schedule", "comment"]


def test_unknown_keys_can_be_problems(tmp_path):
    merged = S.merge_settings(A.defaults("args"), A.defaults("anim_args"),
                              {"strenght_schedule": "0:(0.5)", "W": 0}, where="f.txt")
    with pytest.raises(SettingsError) as info:
        S.finish_settings(merged, unknown_keys="problem")
    assert info.value.problems == ["'strenght_schedule': unknown key (did you mean 'strength_schedule'?); a render "
                                   "ignores it", "W=0: must be an integer from 64 to 8192 (rounded down to a "
                                   "multiple of 64)"]
    assert str(info.value).startswith("invalid settings in f.txt (2 problems):")


@pytest.mark.parametrize(("text", "problem"), [
    ('{"W": 512, "steps": 20, "W": 640}', "W: given 2 times in the file (512, 640); give it once"),
    ('{"animation_prompts": {"0": "a", "10": "b", "0": "c"}}',
     "animation_prompts['0']: given 2 times in the file ('a', 'c'); give it once"),
])
def test_keys_given_twice_are_problems_naming_the_key(tmp_path, text, problem):
    path = tmp_path / "twice.txt"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        S.load_settings(path)
    assert info.value.problems == [problem]
    assert str(path) in str(info.value)


def test_a_key_given_twice_is_reported_with_the_other_problems(tmp_path):
    path = tmp_path / "twice.txt"
    path.write_text('{"sampler": "euler", "sampler": "Euler", "W": 0}')
    with pytest.raises(SettingsError) as info:
        S.load_settings(path)
    assert [p.split(":")[0].split("=")[0] for p in info.value.problems] == ["sampler", "W", "sampler"]


def test_a_bad_prompts_value_does_not_hide_the_other_problems(tmp_path):
    path = _write(tmp_path, {"prompts": 5, "W": 0, "animation_mode": "2D", "zoom": "0:(",
                             "animation_prompts": {"0": "a:`exec(1)`"}})
    with pytest.raises(SettingsError) as info:
        S.load_settings(path)
    found = info.value.problems
    assert found[0] == "prompts=5: must be a list of prompts or an object frame -> prompt"
    assert found[1].startswith("W=0:")
    assert found[2].startswith("in 'zoom' at character 2")
    assert found[3].startswith("animation_prompts[0]: at character 3: unknown function 'exec'")
    assert len(found) == 4


def test_values_changed_on_the_way_in_are_notes(tmp_path):
    loaded = S.load_settings(_write(tmp_path, {"W": 500, "steps": 30.0, "animation_mode": "2D", "max_frames": 5,
                                               "animation_prompts": {"0": "a", "8": "b"}}))
    assert (loaded.args.W, loaded.args.steps) == (448, 30)
    assert loaded.notes == ["W=500 is used as 448 (rounded down to a multiple of 64)",
                            "steps=30.0 is used as 30 (a whole number)",
                            "animation_prompts: the prompt(s) at frame 8 are not used (max_frames=5 renders frames "
                            "0..4)"]
    assert S.load_settings(V06_TXT).notes == []


def test_a_long_batch_name_is_blamed_on_batch_name(tmp_path):
    with pytest.raises(SettingsError) as info:
        S.load_settings(_write(tmp_path, {"batch_name": "x" * 300}))
    assert info.value.problems == ["batch_name='" + "x" * 76 + "...: is 300 bytes long; a file or folder name "
                                   "holds at most 255 bytes"]
