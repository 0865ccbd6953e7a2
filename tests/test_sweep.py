"""`deforum sweep`: --vary parsing and checks (deforum.scale.sweep), the variants rendered one after another
(tiny model, CPU) and their contact sheet (deforum.scale.contact_sheet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum import cli
from deforum.errors import SettingsError
from deforum.scale.contact_sheet import SheetRow, contact_sheet, layout
from deforum.scale.sweep import parse_vary, variants

TINY = dict(W=64, H=64, steps=2, sampler="euler", animation_mode="2D", max_frames=3, batch_name="sweep",
            animation_prompts={"0": "a red apple"})


@pytest.mark.parametrize("text, name, values", [
    ("seed=1..4", "seed", (1, 2, 3, 4)),
    ("steps=2..4", "steps", (2, 3, 4)),
    ("cfg_scale=5,7.5,9", "scale", (5, 7.5, 9)),  # A1111 Deforum's name for scale
    ("args.strength=0.2, 0.6", "strength", (0.2, 0.6)),
    ("sampler=euler,ddim", "sampler", ("euler", "ddim")),
    ("zoom=0:(1.0)|0:(1.02), 10:(1.1)", "zoom", ("0:(1.0)", "0:(1.02), 10:(1.1)")),  # | when values hold commas
    ("use_init=false,true", "use_init", (False, True)),
])
def test_vary_values(text, name, values):
    vary = parse_vary(text)
    assert vary.name == name
    assert vary.values == values


@pytest.mark.parametrize("text, message", [
    ("sead=1..3", r"'sead' is not a setting a sweep can vary \(did you mean 'seed'\?\)"),
    ("root.map_location=cpu,cuda", r"unknown group 'root'"),
    ("seed=5..2", r"'5\.\.2' is not a range"),
    ("seed=1..x", r"'1\.\.x' is not a range"),
    ("seed=-2..0", r"seed=-2: must be an integer from -1"),
    ("steps=0,5", r"steps=0: must be an integer from 1"),
    ("cfg_scale=5,lots", r"scale='lots': must be a number"),
    ("sampler=euler,nosuch", r"sampler"),
    ("seed", r"expected NAME=VALUES"),
    ("seed=1,,2", r"an empty value"),
])
def test_bad_vary_is_refused_naming_it(text, message):
    with pytest.raises(SettingsError, match=message):
        parse_vary(text)


def test_variants_are_the_cartesian_product_first_vary_slowest():
    out = variants([parse_vary("seed=1..2"), parse_vary("cfg_scale=5,7,9")])
    assert out == [{"seed": s, "scale": c} for s in (1, 2) for c in (5, 7, 9)]
    with pytest.raises(SettingsError, match="scale is varied twice"):
        variants([parse_vary("scale=5,7"), parse_vary("cfg_scale=9")])


def test_contact_sheet_places_first_and_last_frames_beside_labels(tmp_path):
    rows = []
    for k in range(2):
        frames = []
        for i in range(3):
            path = tmp_path / f"{k}_{i}.png"
            Image.fromarray(np.full((40, 50, 3), 60 * k + 20 * i + 10, np.uint8)).save(path)
            frames.append(path)
        rows.append(SheetRow(f"seed={k} scale=7", frames))
    rows.append(SheetRow("seed=9 scale=7", []))  # a failed run: grey cells, the rows still line up
    sheet = np.asarray(contact_sheet(rows))
    plan = layout(rows)
    assert plan.cell == (50, 40)
    for k in range(2):
        first, last = plan.box(k, 0), plan.box(k, 1)
        assert (sheet[first[1]:first[3], first[0]:first[2]] == 60 * k + 10).all()
        assert (sheet[last[1]:last[3], last[0]:last[2]] == 60 * k + 50).all()
    grey = plan.box(2, 0)
    assert (sheet[grey[1]:grey[3], grey[0]:grey[2]] == 160).all()
    label_column = sheet[plan.tops[0]:plan.tops[0] + 24, :plan.label_w]
    assert (label_column < 128).any()  # the label is drawn


def test_a_2x2_sweep_writes_4_runs_4_settings_files_and_a_contact_sheet(tmp_path, tiny, capsys):
    source = tmp_path / "base.txt"
    source.write_text(json.dumps(TINY))
    code = cli.main(["sweep", str(source), "--vary", "seed=1..2", "--vary", "cfg_scale=5,9", "--checkpoint",
                     str(tiny[0]), "--config", str(tiny[1]), "--output", str(tmp_path / "out"), "--no-video",
                     "-q", "--set", "root.map_location=cpu"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    [folder] = (tmp_path / "out").glob("*/sweep/sweep_*")
    variant_files = sorted(folder.glob("*.txt"))
    assert [f.name for f in variant_files] == ["00_seed=1_scale=5.txt", "01_seed=1_scale=9.txt",
                                               "02_seed=2_scale=5.txt", "03_seed=2_scale=9.txt"]
    manifest = json.loads((folder / "sweep.json").read_text())
    runs = manifest["variants"]
    assert [r["values"] for r in runs] == [{"seed": s, "scale": c} for s in (1, 2) for c in (5, 9)]
    assert len({r["timestring"] for r in runs}) == 4 and all(r["frames"] == 3 for r in runs)
    for run, variant in zip(runs, variant_files, strict=True):
        saved = json.loads((folder.parent / f"{run['timestring']}_settings.txt").read_text())  # beside its frames
        assert (saved["seed"], saved["scale"]) == (run["values"]["seed"], run["values"]["scale"])
        given = json.loads(variant.read_text())
        assert (given["seed"], given["scale"], given["steps"]) == (saved["seed"], saved["scale"], 2)
    frames = {r["timestring"]: sorted(folder.parent.glob(f"{r['timestring']}_0000?.png")) for r in runs}
    assert all(len(f) == 3 for f in frames.values())
    images = [np.asarray(Image.open(f[0])) for f in frames.values()]
    assert not np.array_equal(images[0], images[2])  # another seed, another image
    sheet = np.asarray(Image.open(folder / "contact_sheet.png").convert("RGB"))
    rows = [SheetRow(" ".join(f"{k}={v}" for k, v in r["values"].items()), frames[r["timestring"]]) for r in runs]
    plan = layout(rows)
    for k, run in enumerate(runs):
        for column, frame in ((0, frames[run["timestring"]][0]), (1, frames[run["timestring"]][-1])):
            left, top, right, bottom = plan.box(k, column)
            assert np.array_equal(sheet[top:bottom, left:right], np.asarray(Image.open(frame).convert("RGB")))
    assert f"contact sheet {folder / 'contact_sheet.png'}" in captured.out


@pytest.mark.parametrize("vary, message", [
    ("nosuch=1,2", "'nosuch' is not a setting"),
    ("seed=9..1", "'9..1' is not a range"),
    ("max_frames=2,0", "max_frames=0: must be an integer from 1"),
])
def test_a_bad_sweep_is_refused_before_anything_renders(tmp_path, capsys, no_model_load, vary, message):
    source = tmp_path / "base.txt"
    source.write_text(json.dumps(TINY))
    code = cli.main(["sweep", str(source), "--vary", "seed=1,2", "--vary", vary, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_SETTINGS, err
    assert message in err
    assert no_model_load == [] and not (tmp_path / "out").exists()


def test_a_variant_the_whole_file_refuses_is_named(tmp_path, capsys, no_model_load):
    """Each value passes its own check, but one combination breaks a rule of the run as a whole."""
    source = tmp_path / "base.txt"
    source.write_text(json.dumps(dict(W=64, H=64, animation_mode="None", prompts=["a", "b"])))
    code = cli.main(["sweep", str(source), "--vary", "n_batch=1,90000", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_SETTINGS, err
    assert "--vary n_batch=90000" in err and "base.txt" in err and "2 prompt(s)" in err
    assert no_model_load == [] and not (tmp_path / "out").exists()


def test_sweep_file_names_keep_to_safe_characters():
    from deforum.scale.sweep import file_name

    assert file_name(3, {"seed": 1, "zoom": "0:(1.02)"}) == "03_seed=1_zoom=0-1.02.txt"
    assert Path(file_name(0, {"prompt": "a/b\\c"})).name == "00_prompt=a-b-c.txt"
