"""deforum.scale.ray_render and `deforum render --ray`: settings files as Ray tasks on this machine (tiny model,
CPU), compared byte for byte with the serial renders of the same runs."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import ray  # the ray extra: the test extra installs it
from helpers import root_for

from deforum import cli
from deforum.runner import render
from deforum.scale import RayMissing, require_ray
from deforum.scale.ray_render import render_on_ray, worker_options
from deforum.scale.tasks import plan_task, render_task
from deforum.settings import FIELDS

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7)
TINY = dict(W=64, H=64, steps=3, sampler="euler", animation_mode="2D", batch_name="batch")
PROMPTS = ["a still"]


def cells(**values) -> tuple[dict, dict]:
    """TINY with ``values`` as the notebook's (args, anim_args) cells."""
    values = TINY | values
    return ({k: v for k, v in values.items() if k in FIELDS["args"]},
            {k: v for k, v in values.items() if k in FIELDS["anim_args"]})


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    """One local Ray for the module (starting it takes seconds): two CPUs, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_settings_files_and_a_split_batch_on_ray_write_the_serial_renders_files(tmp_path, tiny):
    """Two animations and a None-mode batch (2 prompts x n_batch 3, split over both workers): rendered
    serially at NOW, moved aside, rendered again on Ray at NOW into the same place: the same files, byte for
    byte (frames, settings files, grids, resume states)."""
    out = tmp_path / "out"
    root = root_for(tiny, out)
    animation = {0: "a red apple", 3: "a banana"}
    batch = dict(seed=11, n_batch=3, make_grid=True, grid_rows=2, save_settings=True, animation_mode="None",
                 filename_format="{timestring}_{index}_{prompt}.png")
    runs = [(cells(seed=5, max_frames=3), PROMPTS, animation),
            (cells(seed=9, max_frames=2, strength=0.5), PROMPTS, animation),
            (cells(**batch), ["a red apple", "a yellow banana"], {})]
    serial_results = [render(*values, prompts, prompted, root, progress=False, now=NOW)
                      for values, prompts, prompted in runs]
    serial = tree(out)
    shutil.rmtree(out)
    tasks = [plan_task(f"run{i}", *values, prompts, prompted, root, now=NOW)
             for i, (values, prompts, prompted) in enumerate(runs)]
    results = render_on_ray(tasks, root, progress=False, device_from_driver=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    # The runs of one folder started in the same second get one timestring each, as serial runs do.
    assert [r.timestring for r in results] == ["20260304050607", "20260304050608", "20260304050609"]
    assert [len(r.frames) for r in results] == [3, 2, 8]  # the batch: 6 images and 2 grids
    assert [p.name for p in results[2].frames] == [p.name for p in serial_results[2].frames]
    assert results[2].extra["parts"] == 2  # rendered as two pieces of work, one per worker's slot
    assert sum(name.endswith(".png") for name in serial) == 13
    assert sum(name.endswith("_settings.txt") for name in serial) == 3
    on_ray = tree(out)
    assert on_ray.keys() == serial.keys()
    assert [name for name in serial if on_ray[name] != serial[name]] == []


def test_a_worker_killed_mid_render_is_retried_and_resumes_to_the_serial_frames(tmp_path, tiny):
    pids: list[int] = []
    killed: list[int] = []
    frame = tmp_path / "out" / "2026-03" / "batch" / "20260304050607_00003.png"

    def kill_when_frame_3_is_written():
        end = time.monotonic() + 120
        while time.monotonic() < end and not (pids and frame.exists()):
            time.sleep(0.01)
        if pids and frame.exists():
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    def started(worker_pids):
        pids.extend(worker_pids)

    out = tmp_path / "out"
    root = root_for(tiny, out)
    values = dict(seed=5, max_frames=10)
    render(*cells(**values), PROMPTS, {0: "a red apple"}, root, progress=False, now=NOW)
    serial = tree(out)
    shutil.rmtree(out)
    task = plan_task("run", *cells(**values), PROMPTS, {0: "a red apple"}, root, now=NOW)
    killer = threading.Thread(target=kill_when_frame_3_is_written, daemon=True)
    killer.start()
    [result] = render_on_ray([task], root, workers=1, progress=False, on_workers=started, device_from_driver=True)
    killer.join(timeout=5)
    assert killed, "the worker finished before it could be killed"
    assert not isinstance(result, BaseException), result
    assert result.extra["pid"] != killed[0]  # rendered to the end by the restarted worker ...
    assert result.extra["resumed_from"] >= 3  # ... from its last finished key frame, not from frame 0
    assert len(result.frames) == 10
    on_ray = tree(out)
    assert on_ray.keys() == serial.keys()  # no frame lost or doubled, no second run folder or timestring
    assert [name for name in serial if on_ray[name] != serial[name]] == []


def test_render_task_resumes_a_run_with_state_and_starts_one_without(tmp_path, tiny):
    """The worker's decision, without Ray: state.json present -> resume from its key frame."""
    from types import SimpleNamespace

    out = tmp_path / "out"
    root = SimpleNamespace(**root_for(tiny, out), model=None)
    task = plan_task("run", *cells(seed=3, max_frames=3), PROMPTS, {0: "a red apple"}, root, now=NOW)
    first = render_task(task, root)
    assert first.extra["resumed_from"] is None and len(first.frames) == 3
    again = render_task(task, root)  # the run is complete: it resumes at its end and writes nothing new
    assert again.extra["resumed_from"] == 3 and again.timestring == first.timestring


def test_the_command_line_renders_files_on_ray_and_reports_each_failure(tmp_path, tiny, capsys):
    files = []
    for name, seed in (("a", 1), ("b", 2)):
        path = tmp_path / f"{name}.txt"
        path.write_text(json.dumps(TINY | dict(seed=seed, max_frames=2, animation_prompts={"0": "a cat"})))
        files.append(path)
    bad = tmp_path / "bad.txt"  # refused on the driver: never dispatched
    bad.write_text(json.dumps(TINY | dict(max_frames="lots")))
    lost = tmp_path / "lost.txt"  # fails in its worker: the init image is read there (it is not there)
    lost.write_text(json.dumps(TINY | dict(max_frames=1, use_init=True, init_image=str(tmp_path / "gone.png"))))
    code = cli.main(["render", *map(str, files), str(bad), str(lost), "--checkpoint", str(tiny[0]),
                     "--config", str(tiny[1]), "--output", str(tmp_path / "out"), "--no-video", "-q",
                     "--set", "root.map_location=cpu", "--ray", "local", "--workers", "1"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_SETTINGS, captured.err  # the code of the first file that failed (bad.txt)
    errors = [line for line in captured.err.splitlines() if line.startswith("deforum: error")]
    assert len(errors) == 2, captured.err
    assert "bad.txt" in errors[0] and "max_frames='lots'" in captured.err
    assert "lost.txt" in errors[1] and "init_image" in errors[1] and "died" not in errors[1]  # not retried
    assert "2 of 4 settings files rendered" in captured.err
    for path in files:
        assert f"{path}: 2 frame(s) in" in captured.out
    assert len(list((tmp_path / "out").rglob("*_0000[01].png"))) == 4


def test_ray_missing_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(RayMissing, match=r"deforum-stable-diffusion\[ray\]"):
        require_ray()
    settings = tmp_path / "a.txt"
    settings.write_text(json.dumps(TINY | dict(max_frames=2)))
    code = cli.main(["render", str(settings), "--output", str(tmp_path / "out"), "--ray"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED and "pip install 'deforum-stable-diffusion[ray]'" in err
    assert not (tmp_path / "out").exists()  # nothing resolved, claimed or rendered


def test_workers_are_one_per_gpu_or_per_cpu():
    assert worker_options({"CPU": 16, "GPU": 4}, None, 10) == ({"num_gpus": 1}, 4)
    assert worker_options({"CPU": 16, "GPU": 4}, None, 2) == ({"num_gpus": 1}, 2)
    assert worker_options({"CPU": 2}, None, 5) == ({"num_cpus": 1}, 2)
    assert worker_options({"CPU": 8}, 3, 5) == ({"num_cpus": 1}, 3)
