"""Benchmark: `deforum preview` of the default 3D settings (1000 frames at 512x512, flat depth) on this CPU.

Runs the real command in a subprocess (start-up included) and prints a table; the target is under a
minute on 2 CPU cores. The mp4 only (--no-png), as measured before the preview also wrote its frames as PNGs.
Usage: python bench/preview.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = [  # (label, settings file, extra arguments)
    ("3D flat depth (default_3d)", "settings/default_3d.txt", ["--depth", "flat"]),
    ("3D synthetic depth", "settings/default_3d.txt", ["--depth", "synthetic"]),
    ("2D (default_animation)", "settings/default_animation.txt", []),
]


def run_case(settings: str, extra: list[str], frames: int, out: Path) -> tuple[float, float]:
    """(wall seconds of the whole command, seconds the preview itself reported)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "deforum", "preview", str(REPO / settings), "--frames", str(frames),
           "--set", "W=512", "--set", "H=512", "--output", str(out), "--no-png", "-q", *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    reported = float(re.search(r", ([\d.]+) s$", proc.stdout.splitlines()[0]).group(1))
    return wall, reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--only-default", action="store_true", help="run the 3D flat case only")
    ns = parser.parse_args()
    print(f"deforum preview, {ns.frames} frames at 512x512, {os.cpu_count()} CPU cores")
    print(f"{'case':<28} {'wall s':>8} {'preview s':>10} {'frames/s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, settings, extra in CASES[:1] if ns.only_default else CASES:
            wall, reported = run_case(settings, extra, ns.frames, Path(tmp) / "preview.mp4")
            print(f"{label:<28} {wall:>8.1f} {reported:>10.1f} {ns.frames / reported:>9.1f}")


if __name__ == "__main__":
    main()
