"""Typed settings: every field of the table lands in exactly one frozen concern, resolve() checks everything
at once, and the generated deforum/settings/types.py is what the table gives."""

import dataclasses
import datetime
import random
import subprocess
import sys
from pathlib import Path

import pytest

from deforum import settings as S
from deforum.errors import SettingsError
from deforum.settings import typegen
from deforum.testing import settings_for_test

REPO = Path(__file__).resolve().parents[1]
SETTINGS_FILES = sorted((REPO / "settings").iterdir())
PROMPT_LISTS = {"prompts", "animation_prompts"}


def typed_fields(settings: S.Settings) -> dict[str, object]:
    """(concern.name -> value) of every value a Settings holds."""
    return {f"{concern.name}.{f.name}": getattr(getattr(settings, concern.name), f.name)
            for concern in dataclasses.fields(settings) for f in dataclasses.fields(getattr(settings, concern.name))}


def table_fields() -> dict[str, S.Field]:
    return {f"{f.concern}.{f.name}": f for fields in S.GROUPS.values() for f in fields if f.concern}


def resolved_from_file(path: Path) -> S.Settings:
    loaded = S.load_settings(path)
    return S.resolve(loaded.args, loaded.anim_args, prompts=loaded.prompts,
                     animation_prompts=loaded.animation_prompts)


def as_typed(f: S.Field, value):
    """A raw value of field ``f`` as the typed settings hold it."""
    if value is None:
        return None
    if f.type in ("int", "intstr"):
        return int(value)
    if f.type == "float":
        return float(value)
    return tuple(value) if isinstance(value, list) else value


CHANGED_BY_RULES = {"strength", "ddim_eta", "max_frames", "use_init", "init_image", "W", "H"}  # post_process


@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_every_settings_file_resolves_to_exactly_the_fields_of_the_table(path):
    settings = resolved_from_file(path)
    held = typed_fields(settings)
    assert set(held) == set(table_fields()) | {f"prompts.{name}" for name in PROMPT_LISTS}
    loaded = S.load_settings(path)
    groups = {"args": vars(loaded.args), "anim_args": vars(loaded.anim_args)}
    compared = 0
    for key, f in table_fields().items():  # the file's values, typed
        if f.group in groups and f.name not in CHANGED_BY_RULES:
            assert held[key] == as_typed(f, groups[f.group][f.name]), key
            compared += 1
    assert compared >= 90  # every args and anim_args field but those the rules change
    assert settings.prompts.prompts == tuple(loaded.prompts)
    assert dict(settings.prompts.animation_prompts) == {int(k): v for k, v in loaded.animation_prompts.items()}


def test_the_notebook_defaults_resolve_to_exactly_the_fields_of_the_table():
    held = typed_fields(S.resolve())
    assert set(held) == set(table_fields()) | {f"prompts.{n}" for n in PROMPT_LISTS}
    for key, f in table_fields().items():
        if f.name not in CHANGED_BY_RULES:
            assert held[key] == as_typed(f, f.fresh_default()), key
    assert held["prompts.prompts"] == tuple(S.DEFAULT_PROMPTS)
    assert dict(held["prompts.animation_prompts"]) == S.DEFAULT_ANIMATION_PROMPTS


def test_runtime_and_computed_fields_belong_to_no_concern():
    """v0.6's renderer state (C is kept: it is the latent format) and the run's identity are not settings."""
    outside = {f.name for fields in S.GROUPS.values() for f in fields if not f.concern}
    assert outside == {"outdir", "timestring", "prompt", "init_latent", "init_sample", "init_sample_raw",
                       "mask_sample", "init_c"}


def test_typed_settings_are_frozen():
    settings = settings_for_test(W=128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.image.W = 64
    with pytest.raises(TypeError):
        settings.prompts.animation_prompts[0] = "changed"


def test_values_have_the_types_of_the_table():
    settings = settings_for_test(W=640, scale=7, diffusion_cadence="3", grad_inject_timing=[1, 2],
                                 animation_mode="2D", max_frames=4)
    assert settings.image.W == 640 and settings.image.scale == 7  # a float field keeps an int as given (7, not 7.0)
    assert settings.coherence.diffusion_cadence == 3  # intstr: a string in the form, an int here
    assert settings.guidance.grad_inject_timing == (1, 2)
    assert settings.animation.max_frames == 4


def test_resolve_applies_the_v06_value_rules():
    settings = settings_for_test(W=100, strength=1.5, sampler="euler", ddim_eta=0.5, use_init=False,
                                 init_image="x.png", animation_mode="None", max_frames=9)
    assert settings.image.W == 64 and settings.init.strength == 1.0 and settings.image.ddim_eta == 0.0
    assert settings.init.init_image is None and settings.animation.max_frames == 1
    assert settings_for_test(animation_mode="Video Input").init.use_init is True


def test_resolve_reports_every_problem_at_once_naming_the_field():
    with pytest.raises(SettingsError) as caught:
        settings_for_test(W="wide", sampler="nope", animation_mode="2D", translation_x="0:(1")
    text = str(caught.value)
    assert "W" in text and "'wide'" in text and "sampler" in text and "'nope'" in text and "translation_x" in text
    assert len(caught.value.problems) >= 3


def test_settings_for_test_refuses_an_unknown_name():
    with pytest.raises(TypeError, match="strenght"):
        settings_for_test(strenght=0.5)


def test_identify_names_the_run_without_changing_the_settings():
    settings = settings_for_test(seed=-1, batch_name="batch", output_path="/tmp/out")
    identity = S.identify(settings, datetime.datetime(2031, 5, 6, 7, 8, 9), rng=random.Random(3))
    assert identity.timestring == "20310506070809"
    assert identity.outdir == Path("/tmp/out/2031-05/batch")
    assert 0 <= identity.seed <= S.SEED_MAX
    assert settings.image.seed == -1  # the requested seed stays what was asked
    assert S.identify(settings_for_test(seed=42), datetime.datetime(2031, 5, 6)).seed == 42


def test_the_generated_types_module_is_current():
    assert (REPO / "deforum" / "settings" / "types.py").read_text(encoding="utf-8") == typegen.generate()
    done = subprocess.run([sys.executable, "-m", "deforum.settings.typegen", "check"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_generator_fails_on_a_concern_it_does_not_know(monkeypatch):
    field = dataclasses.replace(S.ARGS_FIELDS[0], concern="acoustics")
    monkeypatch.setitem(S.GROUPS, "args", (field, *S.ARGS_FIELDS[1:]))
    with pytest.raises(ValueError, match="acoustics"):
        typegen.generate()


def test_video_input_refuses_an_alpha_mask_before_anything_is_extracted():
    with pytest.raises(SettingsError, match="use_alpha_as_mask=True: extracted video frames"):
        settings_for_test(animation_mode="Video Input", video_init_path="x.mp4", use_mask=True,
                          use_alpha_as_mask=True)
    settings = settings_for_test(animation_mode="Video Input", video_init_path="x.mp4", use_mask=True,
                                 use_alpha_as_mask=True, use_mask_video=True, video_mask_path="m.mp4")
    assert settings.video_input.use_mask_video  # a mask video replaces the alpha channel


def test_unknown_keys_are_problems_naming_the_closest_field():
    with pytest.raises(SettingsError) as caught:
        S.resolve({"strenght": 0.5}, video={"fsp": 12})
    text = str(caught.value)
    assert "'strenght' is not a DeforumArgs field (did you mean 'strength'?)" in text and "'fsp'" in text


def test_a_frame_given_two_prompts_is_a_problem():
    """{0: ..., "0": ...} would silently become one prompt in the typed frame -> prompt map."""
    with pytest.raises(SettingsError, match=r"animation_prompts\['0'\]: frame 0 already has a prompt \(key 0\)"):
        settings_for_test(animation_mode="2D", animation_prompts={0: "a", "0": "b"})
