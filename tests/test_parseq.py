"""Parseq manifests (deforum/sources/parseq.py): per-frame values over the schedules, the plan, a tiny render."""

import csv
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum import cli
from deforum.errors import SettingsError
from deforum.keyframes import parse_schedule
from deforum.runner import prepare, render
from deforum.sources.parseq import apply_manifest, read_manifest, schedule_string

DATA = Path(__file__).resolve().parent / "data" / "parseq"
MANIFEST = DATA / "manifest_2d.json"
FRAMES = json.loads(MANIFEST.read_text())["rendered_frames"]

# Settings the manifest does not carry (angle, translation_y, contrast) and ones it overrides (zoom, ...).
SETTINGS = dict(animation_mode="2D", max_frames=20, W=64, H=64, seed=7, steps=2, sampler="euler", scale=3,
                diffusion_cadence="1", angle="0:(0.5*t)", translation_y="0:(-1)", contrast_schedule="0:(0.9)",
                zoom="0:(1.5)", translation_x="0:(9)", strength_schedule="0:(0.3)",
                animation_prompts={"0": "a green pear"})


ARG_KEYS = ("W", "H", "seed", "steps", "sampler", "scale")
ARGS = {k: SETTINGS[k] for k in ARG_KEYS}
ANIM = {k: v for k, v in SETTINGS.items() if k not in ARG_KEYS and k != "animation_prompts"}
ROOT = {"map_location": "cpu", "mount_google_drive": False}


def column(rows, name):
    return [float(row[name]) for row in rows]


def plan_csv(tmp_path, capsys, **extra):
    settings = tmp_path / "settings.txt"
    settings.write_text(json.dumps({**SETTINGS, "parseq_manifest": str(MANIFEST), **extra}), encoding="utf-8")
    out = tmp_path / "plan.csv"
    assert cli.main(["plan", str(settings), "--csv", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle)), capsys.readouterr().out


def test_plan_csv_takes_every_field_the_manifest_carries_and_the_settings_for_the_rest(tmp_path, capsys):
    rows, out = plan_csv(tmp_path, capsys)
    assert [int(row["frame"]) for row in rows] == [0, 1, 2, 3, 4]  # the manifest's frame count, not 20
    # parseq_use_deltas (the default): motion from the _delta values, the rest absolute.
    assert column(rows, "translation_x") == [f["translation_x_delta"] for f in FRAMES]
    assert column(rows, "zoom") == [f["zoom_delta"] for f in FRAMES]
    assert column(rows, "strength_schedule") == [f["strength"] for f in FRAMES]
    assert column(rows, "noise_schedule") == [f["noise"] for f in FRAMES]
    assert [int(row["seed"]) for row in rows] == [f["seed"] for f in FRAMES]
    # Fields the manifest lacks: the settings' schedules.
    assert column(rows, "angle") == [0.5 * t for t in range(5)]
    assert column(rows, "translation_y") == [-1.0] * 5
    assert column(rows, "contrast_schedule") == [0.9] * 5
    # Prompts switch where the manifest says, negatives included.
    assert [row["prompt"] for row in rows] == [f["deforum_prompt"] for f in FRAMES]
    assert "--neg dark" in rows[3]["prompt"] and "--neg blurry" in rows[2]["prompt"]
    marked = next(line for line in out.splitlines() if line.startswith("# parseq:"))
    names = {name.strip() for name in marked.split(":", 1)[1].split(",")}
    assert {"translation_x", "zoom", "strength_schedule", "noise_schedule", "seed", "scale", "max_frames",
            "animation_prompts"} <= names
    assert not names & {"angle", "translation_y", "contrast_schedule"}


def test_without_deltas_motion_takes_the_absolute_values(tmp_path, capsys):
    rows, _ = plan_csv(tmp_path, capsys, parseq_use_deltas=False)
    assert column(rows, "translation_x") == [f["translation_x"] for f in FRAMES]
    assert column(rows, "zoom") == [f["zoom"] for f in FRAMES]


def test_prepare_applies_the_manifest_before_resolve():
    prepared = prepare(ARGS, {**ANIM, "parseq_manifest": str(MANIFEST)}, None, SETTINGS["animation_prompts"], ROOT)
    settings = prepared.settings
    assert settings.animation.max_frames == 5
    assert settings.image.seed == 55 and settings.image.seed_behavior == "iter"
    assert settings.image.scale == 7.5  # constant in the manifest: the run's cfg scale
    assert dict(settings.prompts.animation_prompts) == {0: FRAMES[0]["deforum_prompt"],
                                                         3: FRAMES[3]["deforum_prompt"]}
    assert prepared.sources["zoom"] == "parseq" and "angle" not in prepared.sources
    assert [row.values.zoom for row in prepared.plan.rows] == [f["zoom_delta"] for f in FRAMES]
    # No manifest: nothing is marked.
    plain = prepare(ARGS, ANIM, None, SETTINGS["animation_prompts"], ROOT)
    assert plain.sources == {} and plain.settings.animation.max_frames == 20


def test_the_manifest_reads_from_a_path_its_text_and_a_url():
    from_path = read_manifest(MANIFEST)
    assert from_path.frame_count == 5 and from_path.version == "0.1.94"
    assert read_manifest(MANIFEST.read_text()).frames == from_path.frames
    assert set(from_path.fields()) == {"translation_x", "zoom", "strength", "noise", "seed", "scale",
                                       "prompt_weight_1"}

    body = MANIFEST.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path != "/manifest.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert read_manifest(f"{base}/manifest.json").frames == from_path.frames
        with pytest.raises(SettingsError, match="parseq_manifest: .*404"):
            read_manifest(f"{base}/missing.json")
    finally:
        server.shutdown()
        server.server_close()


def _with(**changes):
    data = json.loads(MANIFEST.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(("text", "message"), [
    (_with(meta={"generated_by": "sd_parseq", "version": "1.0.0"}), r"version '1\.0\.0' is not supported"),
    (_with(meta={"generated_by": "sd_parseq", "version": "next"}), r"version 'next' is not supported"),
    (_with(rendered_frames=None), r"'rendered_frames' is missing"),
    (_with(rendered_frames=[]), r"'rendered_frames' is empty"),
    (_with(rendered_frames={"0": {}}), r"'rendered_frames' is a dict"),
    (_with(rendered_frames=[{"frame": 1, "zoom": 1}]), r"no frame 0"),
    (_with(rendered_frames=[{"frame": 0, "zoom": 1}, {"frame": 0, "zoom": 2}]), r"frame 0 is rendered twice"),
    (_with(rendered_frames=[{"frame": 0, "zoom": "fast"}]), r"rendered frame 0: zoom is 'fast'"),
    ('{"rendered_frames": [', r"not valid JSON"),
    ("[1, 2]", r"is a JSON list"),
    ("no/such/manifest.json", r"neither a file, an http\(s\) URL nor"),
    ("   ", r"is empty"),
])
def test_bad_manifests_are_settings_errors_naming_the_field(text, message):
    with pytest.raises(SettingsError, match=r"^parseq_manifest: .*" + message):
        read_manifest(text)


def test_a_bad_manifest_stops_the_plan_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(_with(rendered_frames=None), encoding="utf-8")
    settings = tmp_path / "settings.txt"
    settings.write_text(json.dumps({**SETTINGS, "parseq_manifest": str(bad)}), encoding="utf-8")
    assert cli.main(["plan", str(settings)]) == 2
    assert "parseq_manifest" in capsys.readouterr().err


def test_seed_and_single_value_fields_that_cannot_follow_the_frames_say_so(caplog):
    frames = [{"frame": f, "seed": [3, 9, 4][f], "scale": [5.0, 6.0, 7.0][f], "fov": 50, "antiblur_amount": 0}
              for f in range(3)]
    manifest = read_manifest(json.dumps({"meta": {"generated_by": "sd_parseq", "version": "0.1.100"},
                                         "rendered_frames": frames}))
    with caplog.at_level("WARNING"):
        args, anim, prompts, sources = apply_manifest({"seed_behavior": "iter"}, {}, {0: "a"}, manifest)
    assert args["seed"] == 3 and args["scale"] == 5.0 and anim["fov"] == 50 and anim["max_frames"] == 3
    assert prompts == {0: "a"}  # the manifest carries no prompts: the settings' stay
    assert sources == {"max_frames": "parseq", "scale": "parseq", "fov": "parseq", "seed": "parseq"}
    text = caplog.text
    assert "seed" in text and "scale" in text and "antiblur_amount" in text
    constant = read_manifest(json.dumps({"rendered_frames": [{"frame": f, "seed": 11} for f in range(3)]}))
    assert apply_manifest({}, {}, {}, constant)[0] == {"seed": 11, "seed_behavior": "fixed"}


def test_missing_frames_and_null_values_repeat_the_frame_before():
    manifest = read_manifest(json.dumps({"rendered_frames": [
        {"frame": 0, "zoom": 1.1, "strength": 0.5}, {"frame": 1, "zoom": None, "strength": 0.4},
        {"frame": 3, "zoom": 1.3}]}))
    assert manifest.frame_count == 4
    assert manifest.series("zoom") == [1.1, 1.1, 1.1, 1.3]
    assert manifest.series("strength") == [0.5, 0.4, 0.4, 0.4]
    _, anim, _, _ = apply_manifest({}, {"parseq_use_deltas": False}, {}, manifest)
    assert parse_schedule(anim["zoom"], 4).tolist() == [1.1, 1.1, 1.1, 1.3]


def test_schedule_strings_read_back_every_value_exactly():
    values = [0.1, 0.1, 0.1, 1e-05, -2.5, -2.5, 1 / 3, 1 / 3]
    text = schedule_string(values)
    assert text.startswith("0:(0.1), 2:(0.1), 3:(1e-05)")  # a run of equal values keeps its ends
    assert parse_schedule(text, len(values)).tolist() == values
    ramp = [float(i) for i in range(6000)]  # an exact ramp: its ends
    assert schedule_string(ramp) == "0:(0.0), 5999:(5999.0)"
    rng = np.random.default_rng(0)
    noisy = (1 + rng.random(50) / 10).tolist()  # nothing to leave out: one key a frame
    assert schedule_string(noisy).count(":(") == 50
    assert parse_schedule(schedule_string(noisy), 50).tolist() == noisy
    mixed = [0.5] * 20 + [0.5 + 0.25 * i for i in range(1, 9)] + noisy[:10]
    assert parse_schedule(schedule_string(mixed), len(mixed)).tolist() == mixed


@pytest.mark.slow
def test_a_manifest_renders_with_the_tiny_model(tmp_path):
    from deforum.testing import tiny_checkpoint

    ckpt, yaml = tiny_checkpoint(tmp_path / "assets", fmt="safetensors")
    root = {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(yaml), "output_path": str(tmp_path / "out"), "map_location": "cpu",
            "mount_google_drive": False}
    result = render(ARGS, {**ANIM, "parseq_manifest": str(MANIFEST)}, None, SETTINGS["animation_prompts"], root,
                    progress=False)
    frames = sorted(result.outdir.glob(f"{result.timestring}_0*.png"))
    assert len(frames) == 5 and result.frames == frames
    saved = json.loads(result.settings_path.read_text())
    assert saved["max_frames"] == 5 and saved["seed"] == 55
    assert parse_schedule(saved["zoom"], 5).tolist() == [f["zoom_delta"] for f in FRAMES]
    assert saved["angle"] == SETTINGS["angle"]
    assert result.settings.prompts.animation_prompts[3] == FRAMES[3]["deforum_prompt"]
    images = [np.asarray(Image.open(path)) for path in frames]
    assert all(image.shape == (64, 64, 3) for image in images)


def test_a_long_manifest_of_irregular_values_applies_and_reads_back_exactly(monkeypatch):
    """6,000 frames of random values (a 3-minute video at 30 fps): one keyframe a frame, every value exact;
    past the schedule length limit (made small here) the field is named."""
    from deforum import keyframes

    rng = np.random.default_rng(1)
    frames = [{"frame": f, "zoom": 1.0, "zoom_delta": float(1 + rng.random())} for f in range(6000)]
    manifest = read_manifest(json.dumps({"rendered_frames": frames}))
    _, anim, _, _ = apply_manifest({}, {}, {}, manifest)
    np.testing.assert_array_equal(keyframes.parse_schedule(anim["zoom"], 6000), [f["zoom_delta"] for f in frames])
    monkeypatch.setattr(keyframes, "MAX_SCHEDULE_LENGTH", 100_000)
    with pytest.raises(SettingsError, match=r"^parseq_manifest: zoom_delta: .*over the limit of 100000"):
        apply_manifest({}, {}, {}, manifest)
    _, anim, _, _ = apply_manifest({}, {"parseq_use_deltas": False}, {}, manifest)  # constant: two keys
    assert anim["zoom"] == "0:(1.0), 5999:(1.0)"
