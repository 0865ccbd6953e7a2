"""The benchmark scripts run end to end on the CPU (tiny models) and print their tables. No timing checks."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


GPU_FRAME_ROWS = ["UNet step (CFG batch 2)", "VAE encode", "VAE decode", "floor (", "Generator img2img call",
                  "2D frame (animation loop)", "3D frame (loop + depth)", "diffusers img2img pipeline"]


@pytest.mark.slow
def test_gpu_frame_tiny_prints_its_table():
    out = run_bench("gpu_frame.py", "--tiny", "--frames", "3", "--steps", "10")
    assert re.search(r"machine: .*torch \d", out)
    assert "attention processors: AttnProcessor2_0;" in out  # diffusers' SDPA processor, nothing else
    rows = {}
    for line in out.splitlines():
        match = re.match(r"\s*64\s+(.+?)\s{2,}([\d.]+)\s", line)
        if match:
            rows[match.group(1)] = float(match.group(2))
    for label in GPU_FRAME_ROWS:
        found = [ms for name, ms in rows.items() if name.startswith(label)]
        assert found, f"row {label!r} missing from:\n{out}"
        assert found[0] > 0, label
    floor = next(ms for name, ms in rows.items() if name.startswith("floor ("))
    parts = rows["UNet step (CFG batch 2)"], rows["VAE encode"], rows["VAE decode"]
    assert floor >= sum(parts)  # steps run x step + encode + decode
    # the few-step rows: the tiny model stands in for SD-Turbo (one UNet call at cfg 1); TAESD absent: skipped
    few = next(line.split() for line in out.splitlines() if "tiny stand-in 1 step, own VAE" in line)
    ms, ratio, fps, floor_ms, unet, vae, calls = map(float, few[-7:])
    assert ms > 0 and fps == pytest.approx(1000 / ms, rel=0.01) and ratio == pytest.approx(ms / floor_ms, rel=0.02)
    assert floor_ms == pytest.approx(unet + vae, abs=0.2) and calls == 1
    assert re.search(r"skipped: tiny stand-in 1 step \+ taesd: .* is absent", out)


def test_gpu_frame_few_step_rows_say_which_files_are_absent(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_frame", REPO / "bench" / "gpu_frame.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import torch

    bench.few_step_rows(tmp_path, torch.device("cpu"), torch.float32, 1)
    out = capsys.readouterr().out
    for label, name, _steps in bench.FEW_STEP:
        assert f"skipped: {label}: {tmp_path / name} is absent" in out
    assert "512x512" in out


@pytest.mark.slow
def test_overhead_tiny_prints_its_table():
    out = run_bench("overhead.py", "--tiny")
    assert re.search(r"machine: .*torch \d", out)
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*64\s+[23]D\s", line)]
    assert [(r[1], r[2]) for r in rows] == [("2D", "inline"), ("2D", "background"), ("3D", "inline"),
                                           ("3D", "background")]
    for row in rows:
        wall, unet, vae, _text, depth, outside = map(float, row[3:9])
        percent = float(row[9].rstrip("%"))
        assert wall > 0 and unet > 0 and vae > 0, row
        assert (depth > 0) == (row[1] == "3D"), row
        assert outside == pytest.approx(wall - unet - vae - _text - depth, abs=0.02)
        assert 0 <= percent <= 100
        # --tiny: 10 steps at strength 0.65 run 3, CFG scale 7: one batched [uncond, cond] call per step
        assert (float(row[10]), float(row[11]), row[12]) == (3, 6, "v06"), row


@pytest.mark.slow
def test_overhead_tiny_sdxl_counts_unet_calls_per_frame():
    out = run_bench("overhead.py", "--tiny", "--family", "sdxl", "--configs", "v06", "few")
    assert "tiny sdxl checkpoint" in out and "family sdxl detected" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*64\s+[23]D\s", line)]
    assert [(r[1], r[2], r[12]) for r in rows] == [("2D", "background", "v06"), ("3D", "background", "v06"),
                                                  ("2D", "background", "few"), ("3D", "background", "few")]
    for row in rows:
        wall, unet, vae, _text, depth, outside = map(float, row[3:9])
        assert wall > 0 and unet > 0 and vae > 0 and (depth > 0) == (row[1] == "3D"), row
        assert 0 <= float(row[9].rstrip("%")) <= 100
        calls, evals = float(row[10]), float(row[11])
        # v06: 3 steps run with CFG (one call of batch 2 each); few: lcm 4 steps at 0.65 run 1, scale 1: cond only
        assert (calls, evals) == ((3, 6) if row[12] == "v06" else (1, 1)), row


def test_flow_tiny_prints_its_table():
    out = run_bench("flow.py", "--tiny")
    assert re.search(r"machine: .*cv2 \d", out)
    flows, tweens = out.split("flow cadence frame")

    def rows_of(text):
        return [line for line in text.splitlines() if re.match(r"(DIS Medium|DIS Fine|DIS UltraFast|Farneback)\s+\d",
                                                                line)]

    rows = rows_of(flows)
    assert len(rows) == 8 and len(rows_of(tweens)) == 8, out  # 4 cv2 methods x 2 sizes, in each table
    for row in rows_of(tweens):
        ms, fps = map(float, row.split()[-2:])
        assert fps == pytest.approx(1000 / ms, rel=0.02)
    for row in rows:
        size, est, warp, total, fps = row.rsplit(None, 7)[-7:-2]
        assert int(size) in (64, 128) and float(est) > 0 and float(warp) > 0
        assert float(total) == pytest.approx(float(est) + float(warp), abs=0.02) and float(fps) > 0
    assert "skipped: RAFT (raft_large):" in out or "RAFT (raft_large)" in out


@pytest.mark.slow
def test_loop_fps_tiny_prints_every_row_of_a_model():
    out = run_bench("loop_fps.py", "--tiny", "--models", "sd21", "--sizes", "64")
    rows = [line.split() for line in out.splitlines() if line.startswith("SD-Turbo 1 step + TAESD")]
    assert [(r[5], r[6], r[7]) for r in rows] == [("2D", "64", "1"), ("2D", "64", "3"), ("3D", "64", "1"),
                                                   ("3D", "64", "3")]
    for row in rows:
        fps, ms = float(row[8]), float(row[9])
        assert fps > 0 and fps == pytest.approx(1000 / ms, rel=0.02)
