"""The names of every file each render mode writes stay the same (issue 24: one frame sink).

Each mode renders a tiny run with the tiny random model; the files under its output folder (relative paths,
the run's timestring written as ``{timestring}``) are compared with ``tests/data/output_names.json``.
``DEFORUM_RECORD_NAMES=1`` rewrites that file from the current code instead of comparing.
"""

import datetime
import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import root_for

from deforum.generate import Generator
from deforum.runner import render

DATA = Path(__file__).parent / "data" / "output_names.json"
NOW = datetime.datetime(2031, 5, 6, 7, 8, 9)
ARGS = dict(W=64, H=64, seed=5, steps=1, sampler="euler", scale=7.5)
PROMPTS = {0: "a red apple", 2: "a yellow banana"}
MOTION = {"translation_x": "0:(2)", "translation_z": "0:(3)", "color_coherence": "None"}
RECORD = os.environ.get("DEFORUM_RECORD_NAMES") == "1"


def names(folder: Path, timestring: str) -> list[str]:
    """Every file under ``folder``, relative, sorted, with ``timestring`` replaced by ``{timestring}``."""
    return sorted(str(p.relative_to(folder)).replace(timestring, "{timestring}")
                  for p in folder.rglob("*") if p.is_file())


def write_video(path: Path, frames: int = 3) -> Path:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=12, codec="libx264", quality=10,
                                         macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    for k in range(frames):
        writer.send(np.full((64, 64, 3), 40 + 50 * k, np.uint8))
    writer.close()
    return path


def run_none(tmp_path, tiny):
    args = dict(ARGS, n_batch=2, make_grid=True, save_settings=True, save_sample_per_step=True)
    return render(args, {"animation_mode": "None"}, ["a cat", "a dog"], None, root_for(tiny, tmp_path / "out"),
                  progress=False, now=NOW)


def run_2d(tmp_path, tiny):
    anim = dict(MOTION, animation_mode="2D", max_frames=4, diffusion_cadence=2)
    return render(ARGS, anim, None, PROMPTS, root_for(tiny, tmp_path / "out"), progress=False, now=NOW)


def run_3d(tmp_path, tiny):
    from deforum.testing import tiny_depth_model

    depth = str(tiny_depth_model(tmp_path / "dpt"))
    anim = dict(MOTION, animation_mode="3D", max_frames=3, use_depth_warping=True, save_depth_maps=True,
                depth_model=depth, midas_weight=1.0)
    return render(ARGS, anim, None, PROMPTS, root_for(tiny, tmp_path / "out"), progress=False, now=NOW)


def run_video_input(tmp_path, tiny):
    video = write_video(tmp_path / "in.mp4")
    anim = {"animation_mode": "Video Input", "video_init_path": str(video)}
    args = dict(ARGS, steps=2, strength=0.5, save_sample_per_step=True)
    return render(args, anim, None, PROMPTS, root_for(tiny, tmp_path / "out"), progress=False, now=NOW)


def run_interpolation(tmp_path, tiny):
    anim = {"animation_mode": "Interpolation", "interpolate_x_frames": 1}
    args = dict(ARGS, save_sample_per_step=True)
    return render(args, anim, None, PROMPTS, root_for(tiny, tmp_path / "out"), progress=False, now=NOW)


def run_resumed_2d(tmp_path, tiny, monkeypatch):
    """A 2D run stopped while its third key is generated, then resumed to the end."""
    anim = dict(MOTION, animation_mode="2D", max_frames=3)
    root = root_for(tiny, tmp_path / "out")
    real_generate = Generator.generate
    calls = []

    def stop_at_third(self, request):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_generate(self, request)

    monkeypatch.setattr(Generator, "generate", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        render(ARGS, anim, None, PROMPTS, root, progress=False, now=NOW)
    monkeypatch.setattr(Generator, "generate", real_generate)
    (state,) = (tmp_path / "out").rglob("*_state")
    timestring = state.name.split("_")[0]
    return render(ARGS, dict(anim, resume_from_timestring=True, resume_timestring=timestring), None, PROMPTS,
                  root, progress=False, now=NOW)


MODES = {"None": run_none, "2D": run_2d, "3D": run_3d, "Video Input": run_video_input,
         "Interpolation": run_interpolation}


def expected() -> dict[str, list[str]]:
    return json.loads(DATA.read_text(encoding="utf-8")) if DATA.exists() else {}


def check(mode: str, result) -> None:
    got = names(result.outdir, result.timestring)
    if RECORD:
        recorded = expected()
        recorded[mode] = got
        DATA.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert got == expected()[mode]


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_writes_the_same_file_names(tmp_path, tiny, mode):
    check(mode, MODES[mode](tmp_path, tiny))


@pytest.mark.slow
def test_a_resumed_2d_run_writes_the_same_file_names(tmp_path, tiny, monkeypatch):
    check("2D resumed", run_resumed_2d(tmp_path, tiny, monkeypatch))


def test_the_sink_names_every_file_in_one_place(tmp_path):
    from deforum.render.output import PROMPT_FILENAME_FORMAT, FrameSink

    sink = FrameSink(tmp_path, "T")
    assert sink.frame_path(7) == tmp_path / "T_00007.png"
    assert sink.depth_path(7) == tmp_path / "T_depth_00007.png"
    assert sink.still_path("{timestring}_{index}_{seed}.png", 3, "a cat", 42) == tmp_path / "T_00003_42.png"
    assert sink.still_path(PROMPT_FILENAME_FORMAT, 3, "a cat!", 42) == tmp_path / "T_00003_a_cat.png"
    assert sink.grid_path(1, 42) == tmp_path / "T_00001_grid_42.png"
    assert sink.step_dir(42) == tmp_path / "T_00_42"
    assert sink.settings_path() == tmp_path / "T_settings.txt"


@pytest.mark.parametrize("background", [False, True])
def test_the_sink_reports_each_frame_once_its_files_exist(tmp_path, background):
    from contextlib import nullcontext

    from deforum.render.output import FrameSink

    seen = []

    def on_frame(frame, path):
        seen.append((frame, path.is_file(), sink.depth_path(frame).is_file()))

    def write_depth(depth, path, state):
        from deforum.image.io import save_png_atomic

        save_png_atomic(depth, path)

    sink = FrameSink(tmp_path, "T", on_frame=on_frame)
    image = np.zeros((4, 4, 3), np.uint8)
    with sink.background() if background else nullcontext():
        for j in range(3):
            sink.write_frame(j, image, depth=(write_depth, image, {}))
    assert seen == [(0, True, True), (1, True, True), (2, True, True)]
    assert sink.written == [tmp_path / f"T_{j:05}.png" for j in range(3)]
