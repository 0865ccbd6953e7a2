"""N tiny renders, one after another vs on Ray on this machine (`deforum render ... --ray local`).

    python bench/ray_batch.py [--runs 8] [--frames 6] [--size 64] [--steps 6] [--workers N]
    python bench/ray_batch.py --tiny        # smoke test: 2 runs of 2 frames

Each row runs the `deforum` command in a fresh process on the same N settings files (2D, different seeds)
with the tiny test checkpoint, as a user would, and times its wall clock from start to exit: the process
start, the model load(s), Ray's start and its workers' (for --ray), and the frames. Rows:

- ``serial, 1 thread``: one process, torch on one thread (OMP_NUM_THREADS=1), runs one after another;
- ``serial, all threads``: the same with torch on every core (what a plain `deforum render` does);
- ``ray local``: `--ray local`, one worker process per CPU (or ``--workers``), torch on one thread each.

"ratio" is the ``serial, 1 thread`` row's wall time over the row's: the speed-up from spreading the runs
over the cores. With a tiny model the fixed costs (Ray's start, one model load per worker) weigh heavily;
the ``frames/s`` column is the throughput over the whole wall time. The two ``fixed cost`` rows run the same
commands on N runs of one 64 x 64 frame of one step (start-up, model loads, Ray's start and stop, almost no
rendering); the last line is the ratio of the rendering alone (each wall time less its fixed cost). On a
GPU machine Ray gives each worker one GPU, so the speed-up there is bounded by the number of GPUs, not cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_runs(folder: Path, runs: int, frames: int, size: int, steps: int) -> list[Path]:
    """``runs`` 2D settings files that differ in their seed."""
    files = []
    for k in range(runs):
        path = folder / f"run{k:02d}.txt"
        path.write_text(json.dumps(dict(W=size, H=size, steps=steps, seed=100 + k, sampler="euler",
                                        animation_mode="2D", max_frames=frames, batch_name="bench",
                                        animation_prompts={"0": "a red apple"})))
        files.append(path)
    return files


def timed(argv: list[str], threads: int | None, cwd: Path) -> float:
    """Wall seconds of one `deforum` command (its output is hidden unless it fails)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", RAY_AUTH_MODE="disabled")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deforum", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv[:3])}... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, help="Ray workers (default: one per CPU, or per GPU)")
    parser.add_argument("--device", default="cpu", help="map_location of every run (default cpu)")
    parser.add_argument("--tiny", action="store_true", help="smoke test: 2 runs of 2 frames")
    ns = parser.parse_args()
    if ns.tiny:
        ns.runs, ns.frames, ns.steps = 2, 2, 2
    from deforum.testing import tiny_checkpoint

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt, config = tiny_checkpoint(folder / "model", fmt="safetensors")
        files = [str(f) for f in write_runs(folder, ns.runs, ns.frames, ns.size, ns.steps)]
        common = ["render", *files, "--checkpoint", str(ckpt), "--config", str(config), "--no-video", "-q",
                  "--set", f"root.map_location={ns.device}"]
        workers = ["--workers", str(ns.workers)] if ns.workers else []
        rows = [
            ("serial, 1 thread", timed([*common, "--output", "serial1"], 1, folder)),
            (f"serial, all threads ({cores})", timed([*common, "--output", "serialN"], None, folder)),
            ("ray local" + (f" ({ns.workers} workers)" if ns.workers else ""),
             timed([*common, "--output", "ray", "--ray", "local", *workers], 1, folder)),
        ]
        (folder / "fixed").mkdir()
        fixed_files = [str(f) for f in write_runs(folder / "fixed", ns.runs, 1, 64, 1)]
        fixed = [*common[:1], *fixed_files, *common[1 + ns.runs:]]
        fixed_rows = [timed([*fixed, "--output", "fixed1"], 1, folder),
                      timed([*fixed, "--output", "fixedray", "--ray", "local", *workers], 1, folder)]
        frames_ray = sorted(p.name for p in (folder / "ray").rglob("*.png"))
        frames_serial = sorted(p.name for p in (folder / "serial1").rglob("*.png"))
        if len(frames_ray) != ns.runs * ns.frames or len(frames_serial) != ns.runs * ns.frames:
            sys.exit(f"expected {ns.runs * ns.frames} frames, got {len(frames_serial)} serial, {len(frames_ray)} ray")
    import torch

    print(f"machine: {platform.machine()}, {cores} CPU cores, Python {platform.python_version()}, torch "
          f"{torch.__version__}, device {ns.device}")
    print(f"{ns.runs} runs x {ns.frames} frames of {ns.size} x {ns.size}, {ns.steps} steps (2D, tiny SD 1.x)")
    base = rows[0][1]
    total = ns.runs * ns.frames
    print(f"{'':28}{'wall s':>9}{'frames/s':>10}{'ratio':>8}")
    for name, seconds in rows:
        print(f"{name:28}{seconds:9.1f}{total / seconds:10.2f}{base / seconds:8.2f}")
    print(f"{'fixed cost, serial':28}{fixed_rows[0]:9.1f}")
    print(f"{'fixed cost, ray local':28}{fixed_rows[1]:9.1f}")
    rendering = (base - fixed_rows[0]) / max(1e-9, rows[2][1] - fixed_rows[1])
    print(f"rendering alone (wall less fixed cost): ray local / serial 1 thread = {rendering:.2f}x")


if __name__ == "__main__":
    main()
