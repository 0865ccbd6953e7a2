"""Per-frame cost of the non-diffusion steps (warp, colour match, contrast + noise) at 512 and 1024.

    python bench/frame_steps.py [--repeat N] [--threads N]

Prints one row per (step, size, device) with the median time in ms, and the v0.6 time measured on the
development machine (512x512, CPU) for reference. Runs on CUDA too when it is available.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from deforum.image import add_noise, apply_contrast, image_to_sample, maintain_colors
from deforum.motion import warp2d, warp3d

V06_MS_512_CPU = {"2D warp": 0.9, "3D warp": 18.0, "LAB colour match": 5.8}

MOTION_2D = dict(angle=2.0, zoom=1.04, translation_x=3.5, translation_y=-2.0)
MOTION_3D = dict(
    translation_x=3.0,
    translation_y=2.0,
    translation_z=10.0,
    rotation_3d_x=1.0,
    rotation_3d_y=-2.0,
    rotation_3d_z=1.5,
)


def test_frame(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth textured RGB frame, a colour-shifted reference, and a depth map like MiDaS's range."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([np.sin(9 * xx) * 0.5 + 0.5, np.cos(7 * yy) * 0.5 + 0.5, (xx * yy) ** 0.5], -1)
    image = (image * 255).astype(np.uint8)
    reference = np.clip(image * np.array([0.8, 1.1, 1.2]) + 10, 0, 255).astype(np.uint8)
    depth = (2.0 + 1.5 * yy + 0.5 * np.sin(2 * np.pi * xx)).astype(np.float32)
    return image, reference, depth


def median_ms(fn, repeat: int, sync=lambda: None) -> float:
    fn()  # warm-up (first CUDA call, allocator, thread pool)
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def cases(size: int, device: str):
    image, reference, depth = test_frame(size)
    generator = torch.Generator().manual_seed(0)
    if device == "cpu":
        yield "2D warp", lambda: warp2d(image, **MOTION_2D)
        yield "3D warp", lambda: warp3d(image, depth, **MOTION_3D)
        yield "LAB colour match", lambda: maintain_colors(image, reference, "Match Frame 0 LAB")
        yield (
            "contrast + noise",
            lambda: add_noise(image_to_sample(apply_contrast(image, 1.0)), 0.02, generator),
        )
        return
    yield "3D warp (numpy in/out)", lambda: warp3d(image, depth, device=device, **MOTION_3D)
    image_gpu = torch.from_numpy(image).to(device)
    depth_gpu = torch.from_numpy(depth).to(device)
    yield "3D warp (tensor on GPU)", lambda: warp3d(image_gpu, depth_gpu, **MOTION_3D)
    yield (
        "contrast + noise -> GPU",
        lambda: add_noise(image_to_sample(apply_contrast(image, 1.0)).to(device), 0.02, generator),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print(f"{'step':<26} {'size':>5} {'device':>6} {'ms':>9} {'v0.6 ms (512, CPU)':>19}")
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for size in (512, 1024):
            for name, fn in cases(size, device):
                ms = median_ms(fn, args.repeat, sync)
                ref = V06_MS_512_CPU.get(name) if (size == 512 and device == "cpu") else None
                print(f"{name:<26} {size:>5} {device:>6} {ms:>9.2f} {'' if ref is None else f'{ref:>19.1f}'}")


if __name__ == "__main__":
    main()
