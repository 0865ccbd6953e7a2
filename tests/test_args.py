"""The field tables of deforum.args against v0.6's defaults, and validation / post-processing rules."""

import datetime
import json
import random
from pathlib import Path

import pytest

from deforum import DeforumError, SettingsError
from deforum import args as A

SETTINGS_DATA = Path(__file__).parent / "data" / "settings"
V06 = json.loads((SETTINGS_DATA / "notebook_defaults.json").read_text())
REPO = Path(__file__).resolve().parent.parent

# Runtime-computed in v0.6 (the cell's month and Drive path); ours is set by finalize.
COMPUTED_DEFAULTS = {"outdir": None}

NEW_FIELDS = {
    "root": {"compile_unet", "offload_depth_model", "vae_tiling"},
    "args": {"karras_schedule"},
    "anim_args": {"depth_model", "correct_2d_flip", "correct_3d_aspect", "interpolation_method"},
}


@pytest.mark.parametrize("group", ["args", "anim_args"])
def test_defaults_equal_v06_in_v06_order(group):
    ours = A.defaults(group)
    v06 = V06[group]
    expected = {k: COMPUTED_DEFAULTS.get(k, v) for k, v in v06.items()}
    assert {k: ours[k] for k in v06} == expected
    assert [f.name for f in A.GROUPS[group] if not f.new] == list(v06)
    # new fields come after every v0.6 field, so settings dumps keep v0.6's key order
    assert list(ours)[: len(v06)] == list(v06)
    assert {f.name for f in A.GROUPS[group] if f.new} == NEW_FIELDS[group]


def test_group_sizes_match_v06():
    assert sum(not f.new for f in A.ARGS_FIELDS) == 72
    assert sum(not f.new for f in A.ANIM_ARGS_FIELDS) == 38
    assert {f.name for f in A.ROOT_FIELDS if f.new} == NEW_FIELDS["root"]


def test_defaults_are_fresh_copies():
    first = A.defaults("args")
    first["grad_inject_timing"].append(99)
    assert A.defaults("args")["grad_inject_timing"] == list(range(1, 10))


@pytest.mark.parametrize(("group", "name", "default"), [
    ("root", "output_path", "output"),
    ("root", "model_checkpoint", "v1-5-pruned-emaonly.ckpt"),
    ("root", "half_precision", True),
    ("video", "fps", 12),
    ("video", "max_frames", "200"),
    ("video", "skip_video_for_run_all", True),
    ("video", "path_name_modifier", "x0_pred"),
    ("load", "settings_file", "custom"),
])
def test_other_cells_defaults(group, name, default):
    assert A.defaults(group)[name] == default


def test_schedule_fields_are_the_15_schedules():
    assert A.schedule_fields() == (
        "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x",
        "rotation_3d_y", "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi",
        "perspective_flip_gamma", "perspective_flip_fv", "noise_schedule", "strength_schedule",
        "contrast_schedule")


def test_schedule_fields_agree_with_keyframes():
    from deforum import keyframes

    assert set(keyframes.SCHEDULE_FIELDS) == set(A.schedule_fields())


def test_every_field_is_documented_and_well_formed():
    for group, fields in A.GROUPS.items():
        assert len({f.name for f in fields}) == len(fields), group
        for f in fields:
            assert f.group == group and f.section and f.help.strip()
            assert f.type in A.TYPES and (f.widget is None or f.widget in A.WIDGETS)
            if f.widget == "dropdown":
                assert f.choices, f.name
            if f.choices and not f.open_choices:
                assert f.default in f.choices, f.name


@pytest.mark.parametrize(("value", "expected"), [(512, 512), (575, 512), (576, 576), (64, 64), (100, 64),
                                                 (1000, 960), (63, 0), (0, 0)])
def test_round_to_64(value, expected):
    assert A.round_to_64(value) == expected


def test_make_namespace_rounds_and_coerces():
    ns = A.make_namespace("args", {"W": 600, "H": 700.0, "steps": 50.0})
    assert (ns.W, ns.H, ns.steps) == (576, 640, 50)
    assert isinstance(ns.steps, int)
    anim = A.make_namespace("anim_args", {"diffusion_cadence": 3})
    assert anim.diffusion_cadence == "3"
    assert anim.zoom == "0:(1.04)"


def test_make_namespace_refuses_unknown_keys_with_a_hint():
    with pytest.raises(SettingsError, match="'sampeler'.*did you mean 'sampler'"):
        A.make_namespace("args", {"sampeler": "euler"})


def _check(group, **changes):
    a, anim = A.defaults("args"), A.defaults("anim_args")
    (a if group == "args" else anim).update(changes)
    A.validate(a, anim)


BAD_VALUES = [
    ("args", "sampler", "Klms", "'klms'"),
    ("args", "seed_behavior", "Iter", "'iter'"),
    ("anim_args", "color_coherence", "LAB", "'Match Frame 0 LAB'"),
    ("anim_args", "animation_mode", "3d", "'3D'"),
    ("anim_args", "border", "Wrap", "'wrap'"),
    ("anim_args", "padding_mode", "mirror", "'reflection'"),
    ("anim_args", "interpolation_method", "cubic", "'slerp'"),
    ("args", "W", 0, ">= 64"),
    ("args", "H", 63, ">= 64"),
    ("args", "W", "512", "integer"),
    ("args", "steps", 0, "from 1"),
    ("args", "seed", 2**32, "4294967295"),
    ("args", "seed", -2, "from -1"),
    ("args", "use_init", "yes", "true or false"),
    ("args", "scale", float("nan"), "a number"),
    ("args", "scale", True, "a number"),
    ("args", "n_batch", 0, ">= 1"),
    ("args", "batch_name", "../x", "'/'"),
    ("args", "batch_name", "..", "'..'"),
    ("args", "batch_name", "a\\b", "'\\'"),
    ("args", "batch_name", "a\x00b", "NUL"),
    ("args", "filename_format", "/abs", "'/'"),
    ("args", "filename_format", "{seed}.png", "'{timestring}_{index}_{seed}.png'"),
    ("args", "grad_inject_timing", [1, 0.5], "not a mix"),
    ("args", "grad_inject_timing", 0, "every n-th step"),
    ("args", "grad_inject_timing", [0, 1], "step numbers"),
    ("args", "grad_inject_timing", [0.5, 1.5], "fractions"),
    ("args", "init_latent", [0.0], "null"),
    ("anim_args", "max_frames", 10**9, "100000"),
    ("anim_args", "max_frames", 0, "from 1"),
    ("anim_args", "diffusion_cadence", 9, "from 1 to 8"),
    ("anim_args", "diffusion_cadence", "0", "from 1 to 8"),
    ("anim_args", "diffusion_cadence", "two", "integer"),
    ("anim_args", "fov", 0, "must not be 0"),
    ("anim_args", "fov", 270, "from -180 to 180"),
    ("anim_args", "extract_nth_frame", 0, ">= 1"),
    ("anim_args", "zoom", 1.04, "schedule string"),
    ("anim_args", "depth_model", "midsa", "'depth_anything'"),
]


@pytest.mark.parametrize(("group", "name", "value", "allowed"), BAD_VALUES)
def test_bad_value_names_field_value_and_what_is_allowed(group, name, value, allowed):
    with pytest.raises(SettingsError) as info:
        _check(group, **{name: value})
    message = str(info.value)
    assert f"{name}=" in message
    assert repr(value) in message or repr(str(value)) in message
    assert allowed in message
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(("group", "name", "value"), [
    ("anim_args", "diffusion_cadence", 8),
    ("anim_args", "diffusion_cadence", "3"),
    ("args", "W", 511.0),
    ("args", "seed", 2**32 - 1),
    ("args", "grad_inject_timing", None),
    ("args", "grad_inject_timing", 5),
    ("args", "grad_inject_timing", [0.5, 1.0]),
    ("args", "grad_inject_timing", [1, 80]),
    ("args", "grad_inject_timing", [1, 200]),  # past the last step: never applies, as in v0.6
    ("args", "ignore_sat_weight", None),
    ("args", "init_image", None),
    ("args", "batch_name", ""),
    ("anim_args", "depth_model", "/models/my-depth"),
    ("anim_args", "depth_model", "depth_anything"),
    ("anim_args", "fov", -40),
    ("anim_args", "resume_timestring", "garbage"),  # only checked when resuming
])
def test_good_values_pass(group, name, value):
    _check(group, **{name: value})


def test_resume_timestring_checked_when_resuming():
    with pytest.raises(SettingsError, match="resume_timestring='../x'.*14 digits"):
        _check("anim_args", resume_from_timestring=True, resume_timestring="../x")


def test_all_problems_reported_at_once():
    a = dict(A.defaults("args"), W=0, sampler="Klms", batch_name="../x")
    anim = dict(A.defaults("anim_args"), max_frames=10**9, color_coherence="LAB")
    with pytest.raises(DeforumError) as info:
        A.validate(a, anim)
    assert [p.split("=")[0] for p in info.value.problems] == [
        "W", "sampler", "batch_name", "max_frames", "color_coherence"]
    assert "5 problems" in str(info.value)


def test_missing_field_is_reported():
    a = A.defaults("args")
    del a["steps"]
    with pytest.raises(SettingsError, match="steps: missing"):
        A.validate(a, A.defaults("anim_args"))


def test_root_is_validated_when_given():
    A.validate(A.defaults("args"), A.defaults("anim_args"), A.defaults("root"))
    with pytest.raises(SettingsError, match="mount_google_drive='no'"):
        A.validate(A.defaults("args"), A.defaults("anim_args"),
                   dict(A.defaults("root"), mount_google_drive="no"))


@pytest.mark.parametrize("mode", ["2D", "3D", "Video Input"])
def test_bad_schedule_is_a_settings_error_naming_the_field(mode):
    anim = dict(A.defaults("anim_args"), animation_mode=mode, zoom="0:(1.04")
    with pytest.raises(SettingsError, match="zoom"):
        A.validate(A.defaults("args"), anim)


def test_bad_schedule_reported_with_other_problems():
    anim = dict(A.defaults("anim_args"), animation_mode="2D", angle="0:(", border="Wrap")
    with pytest.raises(SettingsError) as info:
        A.validate(A.defaults("args"), anim)
    assert len(info.value.problems) == 2
    assert "angle" in info.value.problems[1]


@pytest.mark.parametrize("mode", ["None", "Interpolation"])
def test_schedules_not_parsed_where_v06_did_not(mode):
    anim = dict(A.defaults("anim_args"), animation_mode=mode, zoom="0:(1.04")
    A.validate(A.defaults("args"), anim)


NOW = datetime.datetime(2022, 11, 15, 12, 0, 0)


def _finalize(args=None, anim=None, root=None, seed_source=7):
    return A.finalize(dict(A.defaults("args"), **(args or {})), dict(A.defaults("anim_args"), **(anim or {})),
                      root, now=NOW, rng=random.Random(seed_source))


def test_finalize_defaults():
    a, anim = _finalize(root={"output_path": "/out"})
    assert a.timestring == "20221115120000"
    assert a.seed == random.Random(7).randint(0, 2**32 - 1)
    assert a.init_image is None
    assert a.ddim_eta == 0
    assert anim.max_frames == 1  # mode None
    assert a.outdir == str(Path("/out/2022-11/StableFun"))
    assert a.sampler == "dpmpp_2s_a"


@pytest.mark.parametrize(("args", "anim", "field", "expected"), [
    ({"strength": 1.5}, {}, "strength", 1.0),
    ({"strength": -0.25}, {}, "strength", 0.0),
    ({"strength": 0.4}, {}, "strength", 0.4),
    ({"seed": 42}, {}, "seed", 42),
    ({"use_init": True}, {}, "init_image", A.defaults("args")["init_image"]),
    ({"sampler": "ddim", "ddim_eta": 0.5}, {}, "ddim_eta", 0.5),
    ({"sampler": "euler", "ddim_eta": 0.5}, {}, "ddim_eta", 0),
    ({"sampler": "plms", "use_init": True}, {"animation_mode": "2D"}, "sampler", "plms"),
    ({"W": 600}, {}, "W", 576),
])
def test_finalize_rules(args, anim, field, expected):
    a, _ = _finalize(args, anim)
    assert getattr(a, field) == expected


@pytest.mark.parametrize(("mode", "max_frames", "use_init"), [
    ("None", 1, False), ("2D", 1000, False), ("3D", 1000, False), ("Video Input", 1000, True),
    ("Interpolation", 1000, False)])
def test_finalize_mode_rules(mode, max_frames, use_init):
    a, anim = _finalize(anim={"animation_mode": mode})
    assert (anim.max_frames, a.use_init) == (max_frames, use_init)


def test_finalize_outdir_and_inputs_untouched():
    a_in = dict(A.defaults("args"), batch_name="", outdir="/elsewhere/old")
    a, _ = A.finalize(a_in, A.defaults("anim_args"), {"output_path": "rel"}, now=NOW, rng=random.Random(1))
    assert a.outdir == str(Path.cwd() / "rel" / "2022-11")
    assert a_in["outdir"] == "/elsewhere/old" and a_in["seed"] == -1 and a_in["timestring"] == ""


def test_finalize_random_seed_is_fresh_by_default():
    seeds = {A.finalize(A.defaults("args"), A.defaults("anim_args"))[0].seed for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s <= 2**32 - 1 for s in seeds)


@pytest.mark.parametrize(("group", "name", "line"), [
    ("args", "W", "W = 512 #@param"),
    ("args", "sampler", 'sampler = \'dpmpp_2s_a\' #@param ["klms", "dpm2", "dpm2_ancestral", "heun", '
                        '"euler", "euler_ancestral", "plms", "ddim", "dpm_fast", "dpm_adaptive", '
                        '"dpmpp_2s_a", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde"]'),
    ("args", "save_samples", 'save_samples = True #@param {type:"boolean"}'),
    ("args", "strength", 'strength = 0.0 #@param {type:"number"}'),
    ("args", "batch_name", 'batch_name = \'StableFun\' #@param {type:"string"}'),
    ("args", "grad_inject_timing", "grad_inject_timing = list(range(1,10)) #@param"),
    ("args", "n_samples", "n_samples = 1"),
    ("anim_args", "border", "border = 'replicate' #@param [\"wrap\", \"replicate\"] {type:'string'}"),
    ("anim_args", "near_plane", "near_plane = 200"),
])
def test_form_lines(group, name, line):
    assert A.form_line(A.FIELDS[group][name]) == line


def test_cli_help_names_default_and_choices():
    text = A.cli_help(A.FIELDS["args"]["seed_behavior"])
    assert "'iter', 'fixed', 'random'" in text and 'Default: "iter"' in text


def test_docs_settings_md_is_up_to_date():
    assert (REPO / "docs" / "settings.md").read_text(encoding="utf-8") == A.settings_markdown(), \
        "regenerate with: python -m deforum.args --write"


def test_markdown_lists_every_field():
    text = A.settings_markdown()
    for fields in A.GROUPS.values():
        for f in fields:
            assert f"`{f.name}`" in text


@pytest.mark.parametrize("mode", ["None", "2D", "3D", "Interpolation"])
def test_use_mask_without_an_init_is_reported_before_rendering(mode):
    anim = dict(A.defaults("anim_args"), animation_mode=mode)
    for extra in ({"use_init": False}, {"use_init": True, "init_image": ""}):
        with pytest.raises(SettingsError, match=r"use_mask=True: needs use_init True and an init_image"):
            A.validate(dict(A.defaults("args"), use_mask=True, **extra), anim)
    A.validate(dict(A.defaults("args"), use_mask=True, use_init=True, init_image="init.png"), anim)


def test_use_mask_in_video_input_needs_no_init_image():
    # Video Input turns use_init on after validation: every video frame is the init its mask applies to
    A.validate(dict(A.defaults("args"), use_mask=True, use_init=False),
               dict(A.defaults("anim_args"), animation_mode="Video Input"))
