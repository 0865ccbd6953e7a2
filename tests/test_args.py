"""The field tables of deforum.settings against v0.6's defaults, and validation / post-processing rules."""

import datetime
import json
import random
from pathlib import Path

import pytest

from deforum import DeforumError, SettingsError
from deforum import settings as A
from deforum.settings import docs as settings_docs

SETTINGS_DATA = Path(__file__).parent / "data" / "settings"
V06 = json.loads((SETTINGS_DATA / "notebook_defaults.json").read_text())
REPO = Path(__file__).resolve().parent.parent

# Runtime-computed in v0.6 (the cell's month and Drive path); ours is set by finalize.
COMPUTED_DEFAULTS = {"outdir": None}

NEW_FIELDS = {
    "root": {"compile_unet", "offload_depth_model", "vae_tiling", "vae", "lora"},
    "args": {"karras_schedule", "seed_iter_N"},
    "anim_args": {"depth_model", "correct_2d_flip", "correct_3d_aspect", "interpolation_method",
                  "animation_prompts_positive", "animation_prompts_negative", "parseq_manifest", "parseq_use_deltas",
                  # motion beyond v0.6 (A1111 Deforum's names): anti-blur, noise, flow cadence, hybrid video, seeds
                  "amount_schedule", "kernel_schedule", "sigma_schedule", "threshold_schedule", "noise_type",
                  "perlin_w", "perlin_h", "perlin_octaves", "perlin_persistence", "optical_flow_cadence",
                  "cadence_flow_factor_schedule", "optical_flow_redo_generation", "redo_flow_factor_schedule",
                  "hybrid_motion", "hybrid_motion_use_prev_img", "hybrid_flow_method", "hybrid_flow_factor_schedule",
                  "hybrid_composite", "hybrid_use_first_frame_as_init_image", "hybrid_comp_alpha_schedule",
                  "hybrid_comp_mask_type", "hybrid_comp_mask_inverse", "hybrid_comp_mask_blend_alpha_schedule",
                  "hybrid_comp_mask_contrast_schedule", "hybrid_comp_mask_auto_contrast", "seed_schedule",
                  "frame_loop", "depth_every"},
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


def test_schedule_fields_are_v06s_15_then_the_new_ones():
    assert A.schedule_fields() == (
        "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x",
        "rotation_3d_y", "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi",
        "perspective_flip_gamma", "perspective_flip_fv", "noise_schedule", "strength_schedule",
        "contrast_schedule",
        "amount_schedule", "kernel_schedule", "sigma_schedule", "threshold_schedule", "cadence_flow_factor_schedule",
        "redo_flow_factor_schedule", "hybrid_flow_factor_schedule", "hybrid_comp_alpha_schedule",
        "hybrid_comp_mask_blend_alpha_schedule", "hybrid_comp_mask_contrast_schedule")
    assert all(A.FIELDS["anim_args"][name].new for name in A.schedule_fields()[15:])


def test_schedule_fields_agree_with_keyframes():
    from deforum import keyframes

    # v0.6's 15 (the parser's default) come first, in v0.6 order; the new schedules follow
    assert A.schedule_fields()[:15] == keyframes.SCHEDULE_FIELDS


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


def test_resolve_rounds_and_coerces_as_the_form_did():
    settings = A.resolve({"W": 600, "H": 700.0, "steps": 50.0}, {"diffusion_cadence": 3})
    assert (settings.image.W, settings.image.H, settings.image.steps) == (576, 640, 50)
    assert isinstance(settings.image.steps, int)
    assert A.normalize("anim_args", {"diffusion_cadence": 3})["diffusion_cadence"] == "3"  # v0.6 kept a string
    assert settings.coherence.diffusion_cadence == 3 and settings.motion.zoom == "0:(1.04)"


def test_resolve_refuses_unknown_keys_with_a_hint():
    with pytest.raises(SettingsError, match="'sampeler'.*did you mean 'sampler'"):
        A.resolve({"sampeler": "euler"})


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
    ("args", "W", 0, "from 64 to 8192"),
    ("args", "H", 63, "from 64 to 8192"),
    ("args", "W", "512", "integer"),
    ("args", "steps", 0, "from 1"),
    ("args", "seed", 2**32, "4294967295"),
    ("args", "seed", -2, "from -1"),
    ("args", "use_init", "yes", "true or false"),
    ("args", "scale", float("nan"), "a number"),
    ("args", "scale", True, "a number"),
    ("args", "n_batch", 0, "from 1 to 100000"),
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
    ("anim_args", "extract_nth_frame", 0, "from 1 to 100000"),
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


def _resolved(args=None, anim=None, root=None, seed_source=7):
    """(typed settings, a new run's identity at NOW) of the defaults with these changes."""
    settings = A.resolve(args or {}, anim or {}, root)
    return settings, A.identify(settings, NOW, random.Random(seed_source))


def typed_value(settings, name):
    group = "args" if name in A.FIELDS["args"] else "anim_args"
    return getattr(getattr(settings, A.FIELDS[group][name].concern), name)


def test_resolve_and_identify_defaults():
    settings, identity = _resolved(root={"output_path": "/out"})
    assert identity.timestring == "20221115120000"
    assert identity.seed == random.Random(7).randint(0, 2**32 - 1)
    assert settings.image.seed == -1  # the settings keep what was asked
    assert settings.init.init_image is None
    assert settings.image.ddim_eta == 0
    assert settings.animation.max_frames == 1  # mode None
    assert identity.outdir == Path("/out/2022-11/StableFun")
    assert settings.image.sampler == "dpmpp_2s_a"


@pytest.mark.parametrize(("args", "anim", "field", "expected"), [
    ({"strength": 1.5}, {}, "strength", 1.0),
    ({"strength": -0.25}, {}, "strength", 0.0),
    ({"strength": 0.4}, {}, "strength", 0.4),
    ({"use_init": True}, {}, "init_image", A.defaults("args")["init_image"]),
    ({"sampler": "ddim", "ddim_eta": 0.5}, {}, "ddim_eta", 0.5),
    ({"sampler": "euler", "ddim_eta": 0.5}, {}, "ddim_eta", 0),
    ({"sampler": "plms", "use_init": True}, {"animation_mode": "2D"}, "sampler", "plms"),
    ({"W": 600}, {}, "W", 576),
])
def test_value_rules(args, anim, field, expected):
    settings, _ = _resolved(args, anim)
    assert typed_value(settings, field) == expected


def test_a_given_seed_is_the_runs_seed():
    assert _resolved({"seed": 42})[1].seed == 42


@pytest.mark.parametrize(("mode", "max_frames", "use_init"), [
    ("None", 1, False), ("2D", 1000, False), ("3D", 1000, False), ("Video Input", 1000, True),
    ("Interpolation", 1000, False)])
def test_mode_rules(mode, max_frames, use_init):
    settings, _ = _resolved(anim={"animation_mode": mode, "video_init_path": "v.mp4"})
    assert (settings.animation.max_frames, settings.init.use_init) == (max_frames, use_init)


def test_the_output_folder_and_the_given_values_are_untouched():
    given = {"batch_name": "", "seed": -1}
    settings = A.resolve(given, {}, {"output_path": "rel"})
    assert A.identify(settings, NOW, random.Random(1)).outdir == Path.cwd() / "rel" / "2022-11"
    assert given == {"batch_name": "", "seed": -1}


def test_a_random_seed_is_fresh_by_default():
    settings = A.resolve()
    seeds = {A.identify(settings).seed for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s <= 2**32 - 1 for s in seeds)


@pytest.mark.parametrize(("group", "name", "line"), [
    ("args", "W", "W = 512 #@param"),
    ("args", "sampler", 'sampler = \'dpmpp_2s_a\' #@param ["klms", "dpm2", "dpm2_ancestral", "heun", '
                        '"euler", "euler_ancestral", "plms", "ddim", "dpm_fast", "dpm_adaptive", '
                        '"dpmpp_2s_a", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde", "lcm"]'),
    ("args", "save_samples", 'save_samples = True #@param {type:"boolean"}'),
    ("args", "strength", 'strength = 0.0 #@param {type:"number"}'),
    ("args", "batch_name", 'batch_name = \'StableFun\' #@param {type:"string"}'),
    ("args", "grad_inject_timing", "grad_inject_timing = list(range(1,10)) #@param"),
    ("args", "n_samples", "n_samples = 1"),
    ("anim_args", "border", "border = 'replicate' #@param [\"wrap\", \"replicate\"] {type:'string'}"),
    ("anim_args", "near_plane", "near_plane = 200"),
])
def test_form_lines(group, name, line):
    assert settings_docs.form_line(A.FIELDS[group][name]) == line


def test_cli_help_names_default_and_choices():
    text = settings_docs.cli_help(A.FIELDS["args"]["seed_behavior"])
    assert "'iter', 'fixed', 'random'" in text and 'Default: "iter"' in text


def test_docs_settings_md_is_up_to_date():
    assert (REPO / "docs" / "settings.md").read_text(encoding="utf-8") == settings_docs.settings_markdown(), \
        "regenerate with: python -m deforum.settings.docs --write"


def test_markdown_lists_every_field():
    text = settings_docs.settings_markdown()
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


# ------------------------------------------------------------------------------- notes (issue 17 item 5)


@pytest.mark.parametrize(("group", "given", "expected", "note"), [
    ("args", {"W": 500}, {"W": 448}, "W=500 is used as 448 (rounded down to a multiple of 64)"),
    ("args", {"H": 600.0}, {"H": 576}, "H=600.0 is used as 576 (a whole number, rounded down to a multiple of 64)"),
    ("args", {"steps": 30.0}, {"steps": 30}, "steps=30.0 is used as 30 (a whole number)"),
    ("anim_args", {"max_frames": 12.0}, {"max_frames": 12}, "max_frames=12.0 is used as 12 (a whole number)"),
])
def test_normalized_returns_a_note_for_each_changed_value(group, given, expected, note):
    values, notes = A.normalized(group, given)
    assert values == expected
    assert notes == [note]


@pytest.mark.parametrize(("group", "given"), [
    ("args", {"W": 512, "H": 64, "steps": 30}),
    ("anim_args", {"diffusion_cadence": 3, "max_frames": 5}),  # '3': the same value as v0.6 stores it
    ("args", {"W": "wide"}),  # not coerced: validation reports it
])
def test_normalized_has_no_note_when_nothing_changed(group, given):
    assert A.normalized(group, given)[1] == []


def test_check_notes_what_finalize_changes():
    a = dict(A.defaults("args"), strength=1.5, ddim_eta=0.3, sampler="euler", W=700)
    report = A.check(a, A.defaults("anim_args"))
    assert report.problems == []
    assert report.notes == ["W=700 is used as 640 (rounded down to a multiple of 64)",
                            "strength=1.5 is used as 1.0 (strength is clamped to 0..1)",
                            "ddim_eta=0.3 is used as 0 (only the ddim sampler uses it; sampler='euler')"]
    assert A.check(dict(a, sampler="ddim", strength=0.5, W=640), A.defaults("anim_args")).notes == []


# ---------------------------------------------------------------- one problem never hides another (17.3)


def test_a_bad_max_frames_does_not_hide_a_bad_schedule():
    anim = dict(A.defaults("anim_args"), animation_mode="2D", max_frames="lots", translation_x="0:(1")
    with pytest.raises(SettingsError) as info:
        A.validate(A.defaults("args"), anim)
    assert info.value.problems[0] == "max_frames='lots': must be an integer from 1 to 100000"
    assert info.value.problems[1].startswith("in 'translation_x' at character 2: this '(' is never closed")
    assert len(info.value.problems) == 2


def test_each_bad_schedule_is_its_own_problem_and_a_bad_mode_does_not_hide_them():
    anim = dict(A.defaults("anim_args"), animation_mode="4D", zoom="0:(foo)", angle="0:(")
    with pytest.raises(SettingsError) as info:
        A.validate(A.defaults("args"), anim)
    names = [p.split("=")[0] if "=" in p.split(":")[0] else p.split("'")[1] for p in info.value.problems]
    assert names == ["animation_mode", "angle", "zoom"]


# ------------------------------------------------------------------------- upper bounds (issue 25 class 4)


@pytest.mark.parametrize(("group", "name", "value", "allowed"), [
    ("args", "W", 131072, "from 64 to 8192"),
    ("args", "H", 131072, "from 64 to 8192"),
    ("args", "n_batch", 10**9, "from 1 to 100000"),
    ("args", "steps", 10**9, "from 1 to 10000"),
    ("args", "grid_rows", 10**9, "from 1 to 100000"),
    ("args", "cutn", 10**9, "from 1 to 256"),
    ("args", "colormatch_n_colors", 10**6, "from 1 to 256"),
    ("args", "mask_overlay_blur", 1e12, "from 0 to 8192"),
    ("args", "batch_name", "x" * 300, "at most 255 bytes"),
    ("args", "grad_inject_timing", list(range(1, 20_002)), "at most 10000"),
    ("anim_args", "max_frames", 100_001, "from 1 to 100000"),
    ("anim_args", "interpolate_x_frames", 10**9, "from 0 to 99999"),
    ("anim_args", "extract_nth_frame", 10**9, "from 1 to 100000"),
    ("video", "fps", 5000, "from 1 to 1000"),
    ("video", "max_frames", "1000000000", "from 1 to 100000"),
])
def test_sizes_and_counts_have_upper_bounds(group, name, value, allowed):
    problems = A.problems(group, {name: value}, present_only=True)
    assert len(problems) == 1 and problems[0].startswith(f"{name}=")
    assert allowed in problems[0]


def test_the_bounds_are_in_the_field_table_and_the_docs():
    docs = (REPO / "docs" / "settings.md").read_text()
    for group, name, limit in [("args", "W", A.MAX_IMAGE_SIZE), ("args", "H", A.MAX_IMAGE_SIZE),
                               ("args", "n_batch", A.MAX_FRAMES_LIMIT), ("args", "steps", A.MAX_STEPS),
                               ("anim_args", "max_frames", A.MAX_FRAMES_LIMIT),
                               ("anim_args", "extract_nth_frame", A.MAX_FRAMES_LIMIT),
                               ("anim_args", "interpolate_x_frames", A.MAX_FRAMES_LIMIT - 1),
                               ("video", "fps", A.MAX_FPS)]:
        assert A.FIELDS[group][name].maximum == limit
        assert any(line.startswith(f"| `{name}` ") and f"to {limit} " in line for line in docs.splitlines())


def test_one_frame_limit_in_code_messages_and_docs():
    from deforum import keyframes

    assert keyframes.MAX_FRAMES == A.MAX_FRAMES_LIMIT == 100_000
    with pytest.raises(SettingsError, match="from 1 to 100000"):
        keyframes.parse_schedule("0:(1)", A.MAX_FRAMES_LIMIT + 1)
    keyframes.parse_schedule("0:(1)", A.MAX_FRAMES_LIMIT)
    compat = (REPO / "docs" / "compat.md").read_text()
    assert "1,000,000" not in compat and "1000000" not in compat
    assert "`max_frames` must be 1..100000" in compat


def test_a_grid_too_large_for_memory_is_refused_with_its_fields():
    a = dict(A.defaults("args"), make_grid=True, n_batch=1000, W=4096, H=4096)
    with pytest.raises(SettingsError) as info:
        A.validate(a, A.defaults("anim_args"))
    [problem] = info.value.problems
    assert problem.startswith("n_batch=1000: with make_grid at W x H = 4096 x 4096")
    assert "93.8 GiB" in problem and "at most 8 GiB" in problem
    A.validate(dict(a, make_grid=False), A.defaults("anim_args"))  # images are written one by one
    A.validate(dict(a, n_batch=40, W=512, H=512), A.defaults("anim_args"))
    A.validate(a, dict(A.defaults("anim_args"), animation_mode="2D", max_frames=5))  # no grid in 2D


def test_frame_and_image_counts_implied_by_the_prompts_are_bounded():
    anim = dict(A.defaults("anim_args"), animation_mode="Interpolation", interpolate_x_frames=99_999)
    prompts = {0: "a", 1: "b", 2: "c"}
    found = A.check(A.defaults("args"), anim, animation_prompts=prompts).problems
    assert found == ["interpolate_x_frames=99999: 3 prompts give (prompts - 1) x (interpolate_x_frames + 1) + 1 "
                     "= 200001 frames; at most 100000"]
    keyed = dict(anim, interpolate_key_frames=True)
    found = A.check(A.defaults("args"), keyed, animation_prompts={0: "a", 10**9: "b"}).problems
    assert found == ["animation_prompts: with interpolate_key_frames the prompts at frames 0 to 1000000000 give "
                     "1000000001 frames; at most 100000"]
    assert A.check(A.defaults("args"), keyed, animation_prompts={0: "a", 99_999: "b"}).problems == []
    still = dict(A.defaults("args"), n_batch=60_000)
    found = A.check(still, A.defaults("anim_args"), prompts=["a", "b"]).problems
    assert found == ["n_batch=60000: 2 prompt(s) x n_batch 60000 = 120000 images; at most 100000 in one run"]


# ----------------------------------------------------------------------- prompts (issue 25 class 7)


def test_prompt_weights_are_checked_at_every_frame_they_are_used():
    anim = dict(A.defaults("anim_args"), animation_mode="2D", max_frames=10, diffusion_cadence="1")
    prompts = {0: "a cat:`__import__('os')`", 4: "a dog:`1/(t-6)`", 8: "a fish:`t`"}
    found = A.check(A.defaults("args"), anim, animation_prompts=prompts).problems
    assert len(found) == 2
    assert found[0].startswith("animation_prompts[0]: at character 7: name '__import__' is not allowed")
    assert found[1].startswith("animation_prompts[4]: at character 7: the expression is inf at t=6")
    # frame 6 is only a blended frame with cadence 2: never generated, so never evaluated
    assert A.check(A.defaults("args"), dict(anim, diffusion_cadence="2"),
                   animation_prompts={0: "a dog:`1/(t-3)`"}).problems == []
    # no weights are parsed without prompt_weighting (the text goes to the model as it is)
    assert A.check(dict(A.defaults("args"), prompt_weighting=False), anim, animation_prompts=prompts).problems == []
    still = A.check(A.defaults("args"), A.defaults("anim_args"), prompts=["ok", "bad:`exec(1)`"]).problems
    assert len(still) == 1 and still[0].startswith("prompts[1]: at character 5: unknown function 'exec'")


def test_prompts_past_max_frames_are_named_in_a_note():
    anim = dict(A.defaults("anim_args"), animation_mode="3D", max_frames=10)
    only_late = A.check(A.defaults("args"), anim, animation_prompts={50: "a cat"})
    assert only_late.problems == []
    assert only_late.notes == ["animation_prompts: every prompt is at frame 10 or later, past the last frame "
                               "(max_frames=10 renders frames 0..9); the prompt at frame 50 is used for every frame"]
    some_late = A.check(A.defaults("args"), anim, animation_prompts={0: "a", 10: "b", 30: "c"})
    assert some_late.notes == ["animation_prompts: the prompt(s) at frame 10, 30 are not used (max_frames=10 renders "
                               "frames 0..9)"]
    assert A.check(A.defaults("args"), anim, animation_prompts={0: "a", 9: "b"}).notes == []


@pytest.mark.parametrize(("prompts", "problem"), [
    ({"ten": "a"}, "animation_prompts['ten']: the frame must be a whole number >= 0"),
    ({"0": 5}, "animation_prompts['0']=5: the prompt must be a string"),
    ({}, "animation_prompts={}: the animation modes need at least one prompt"),
    ("a cat", "animation_prompts='a cat': must be an object frame -> prompt"),
])
def test_bad_animation_prompts_are_problems_beside_the_others(prompts, problem):
    anim = dict(A.defaults("anim_args"), animation_mode="2D", max_frames=5, border="Wrap")
    found = A.check(dict(A.defaults("args"), W=0), anim, animation_prompts=prompts).problems
    assert found[0].startswith("W=0") and found[1].startswith("border='Wrap'")
    assert found[2:] == [problem]
