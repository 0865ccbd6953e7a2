"""Per-frame cost of optical flow: estimate_flow + warp_by_flow at 512x512 and 1024x1024, per method, and one
frame of optical-flow cadence (``flow_tween``: the flows both ways, both keys moved, the cross-fade).

    python bench/flow.py [--repeat N] [--threads N] [--models-path models] [--tiny]

The frames are a smooth random texture and the same texture moved by (2.3, -1.6) px; each row is the median
of --repeat runs, with the median flow found (it should read 2.30, -1.60). The cv2 methods always run; RAFT
(raft_small, raft_large) only when torchvision's weights file is in --models-path (on CUDA when there is one);
nothing is downloaded. --tiny: 64 and 128 px, one run, for the smoke test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np

from deforum.motion.flow import CV2_METHODS, RAFT_WEIGHTS, estimate_flow, flow_tween, raft_weights_file, warp_by_flow

SHIFT = (2.3, -1.6)


def frames(size: int) -> tuple[np.ndarray, np.ndarray]:
    noise = np.random.default_rng(size).random((size, size, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)  # the same detail at every size
    img = ((img - img.min()) / (img.max() - img.min()) * 255).round().astype(np.uint8)
    matrix = np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]])
    return img, cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def time_method(method: str, size: int, repeat: int, **kwargs) -> tuple[float, float, np.ndarray]:
    """(estimate ms, warp ms, median flow) over ``repeat`` runs after one warm-up."""
    prev, nxt = frames(size)
    flow = estimate_flow(prev, nxt, method, **kwargs)  # warm-up (RAFT: load the weights)
    estimate, warp = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        flow = estimate_flow(prev, nxt, method, **kwargs)
        middle = time.perf_counter()
        warp_by_flow(nxt, flow)
        warp.append((time.perf_counter() - middle) * 1000)
        estimate.append((middle - started) * 1000)
    return statistics.median(estimate), statistics.median(warp), np.median(flow.reshape(-1, 2), axis=0)


def time_tween(method: str, size: int, repeat: int, **kwargs) -> float:
    """ms of one in-between frame of optical-flow cadence at tween 0.5 (median of ``repeat`` after a warm-up)."""
    prev, nxt = (frame.astype(np.float32) for frame in frames(size))

    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return estimate_flow(a, b, method, **kwargs)

    flow_tween(prev, nxt, 0.5, 1.0, flow)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        flow_tween(prev, nxt, 0.5, 1.0, flow)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="cv2 (and torch) threads (default: theirs)")
    parser.add_argument("--models-path", default="models", help="where RAFT's weights files are looked for")
    parser.add_argument("--tiny", action="store_true", help="64 and 128 px, one run (smoke test)")
    ns = parser.parse_args()
    sizes = (64, 128) if ns.tiny else (512, 1024)
    repeat = 1 if ns.tiny else ns.repeat
    if ns.threads:
        cv2.setNumThreads(ns.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, cv2 {cv2.__version__}, "
          f"{cv2.getNumThreads()} cv2 threads, median of {repeat}")
    runs: list[tuple[str, dict]] = [(method, {}) for method in CV2_METHODS]
    for raft_model in RAFT_WEIGHTS:
        path = raft_weights_file(raft_model, ns.models_path)
        if path.is_file():
            runs.append((f"RAFT ({raft_model})", {"raft_model": raft_model, "models_path": ns.models_path}))
        else:
            print(f"skipped: RAFT ({raft_model}): {path} is absent")
    if any(label.startswith("RAFT") for label, _ in runs):
        import torch

        if ns.threads:
            torch.set_num_threads(ns.threads)
    print(f"{'method':<22} {'size':>5} {'estimate ms':>12} {'warp ms':>8} {'total ms':>9} {'frames/s':>9}  "
          "median flow")
    for size in sizes:
        for label, kwargs in runs:
            method = "RAFT" if label.startswith("RAFT") else label
            est, warp, median = time_method(method, size, repeat, **kwargs)
            total = est + warp
            print(f"{label:<22} {size:>5} {est:>12.2f} {warp:>8.2f} {total:>9.2f} {1000 / total:>9.1f}  "
                  f"{median[0]:.2f}, {median[1]:.2f}")
    print(f"\n{'flow cadence frame':<22} {'size':>5} {'ms':>12} {'frames/s':>9}")
    for size in sizes:
        for label, kwargs in runs:
            ms = time_tween("RAFT" if label.startswith("RAFT") else label, size, repeat, **kwargs)
            print(f"{label:<22} {size:>5} {ms:>12.2f} {1000 / ms:>9.1f}")


if __name__ == "__main__":
    main()
