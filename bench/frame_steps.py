"""Per-frame cost of the non-diffusion steps (warp, colour match, contrast + noise) at 512 and 1024.

    python bench/frame_steps.py [--repeat N] [--threads N]

Prints one row per (step, size, device) with the median time in ms of ours and, on the CPU, of a baseline
that does what v0.6 did, measured in the same run (restated from the spec, not v0.6's code: the 2D matrix
built with getRotationMatrix2D and matmul; the 3D warp through two full 4x4 camera transforms of every pixel
as PyTorch3D's FoVPerspectiveCameras did; the LAB match through scikit-image's match_histograms; noise via
float16 torch ops), with how far the two outputs agree. The v0.6 column is what the original code took on
the development machine (512x512, CPU). Runs on CUDA too when it is available.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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


# ---- baselines: what v0.6 did per frame, restated from the spec (sections 4.1, 5.2, 6.3, 6.4) ------------------


def v06_warp2d(image: np.ndarray, angle: float, zoom: float, translation_x: float, translation_y: float):
    h, w = image.shape[:2]
    rot = np.vstack([cv2.getRotationMatrix2D((w // 2, h // 2), angle, zoom), [0, 0, 1]])
    trans = np.array([[1, 0, translation_x], [0, 1, translation_y], [0, 0, 1]], dtype=np.float64)
    return cv2.warpPerspective(image, np.matmul(rot, trans), (w, h), borderMode=cv2.BORDER_REPLICATE)


def _fov_projection(fov: float, aspect: float, near: float, far: float) -> torch.Tensor:
    """PyTorch3D's FoVPerspectiveCameras projection (row-vector convention), 4x4."""
    s = 1.0 / np.tan(np.radians(fov) / 2)
    k = torch.zeros(4, 4)
    k[0, 0], k[1, 1] = s / aspect, s
    k[2, 2], k[3, 2] = far / (far - near), -far * near / (far - near)
    k[2, 3] = 1.0
    return k


def v06_warp3d(image: np.ndarray, depth: np.ndarray, translation_x: float, translation_y: float,
               translation_z: float, rotation_3d_x: float, rotation_3d_y: float, rotation_3d_z: float,
               fov: float = 40, near: float = 200, far: float = 10000) -> np.ndarray:
    h, w = depth.shape
    rx, ry, rz = np.radians([rotation_3d_x, rotation_3d_y, rotation_3d_z])
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
         @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
    projection = _fov_projection(fov, w / h, near, far)
    new_view = torch.eye(4)
    new_view[:3, :3] = torch.tensor(r, dtype=torch.float32)
    new_view[3, :3] = torch.tensor([-translation_x / 200, translation_y / 200, -translation_z / 200])
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    z = torch.as_tensor(depth)
    world = torch.stack([x.flatten(), y.flatten(), z.flatten(), torch.ones(h * w)], dim=1)

    def project(transform: torch.Tensor) -> torch.Tensor:
        points = world @ transform
        return points[:, :2] / points[:, 3:4]

    offset = (project(new_view @ projection) - project(projection)).reshape(1, h, w, 2)
    identity = F.affine_grid(torch.eye(2, 3)[None], [1, 1, h, w], align_corners=False)
    source = torch.from_numpy(image).float().permute(2, 0, 1)[None] + (1 / 512 - 0.0001)
    warped = F.grid_sample(source, identity - offset, mode="bicubic", padding_mode="border", align_corners=False)
    return warped[0].permute(1, 2, 0).clamp(0, 255).numpy().astype(image.dtype)


def v06_lab_match(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    from skimage.exposure import match_histograms

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB)
    return cv2.cvtColor(match_histograms(lab, ref, channel_axis=-1), cv2.COLOR_LAB2RGB)


def v06_contrast_noise(image: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    sample = torch.from_numpy(((image * 1.0 / 255.0) * 2 - 1).astype(np.float16).transpose(2, 0, 1)[None])
    return sample + torch.randn(sample.shape, generator=generator) * 0.02


def agreement(ours: np.ndarray, baseline: np.ndarray) -> str:
    """Share of values within one level (uint8) of each other."""
    close = np.abs(ours.astype(np.int16) - baseline.astype(np.int16)) <= 1
    return f"{100 * close.mean():.2f}% within 1"


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
    """(name, ours, v0.6-like baseline or None, how to compare their outputs or None) per step."""
    image, reference, depth = test_frame(size)
    generator = torch.Generator().manual_seed(0)
    if device == "cpu":
        yield ("2D warp", lambda: warp2d(image, **MOTION_2D), lambda: v06_warp2d(image, **MOTION_2D), agreement)
        yield ("3D warp", lambda: warp3d(image, depth, **MOTION_3D), lambda: v06_warp3d(image, depth, **MOTION_3D),
               agreement)
        yield ("LAB colour match", lambda: maintain_colors(image, reference, "Match Frame 0 LAB"),
               lambda: v06_lab_match(image, reference), agreement)
        yield ("contrast + noise", lambda: add_noise(image_to_sample(apply_contrast(image, 1.0)), 0.02, generator),
               lambda: v06_contrast_noise(image, generator), None)
        return
    yield "3D warp (numpy in/out)", lambda: warp3d(image, depth, device=device, **MOTION_3D), None, None
    image_gpu = torch.from_numpy(image).to(device)
    depth_gpu = torch.from_numpy(depth).to(device)
    yield "3D warp (tensor on GPU)", lambda: warp3d(image_gpu, depth_gpu, **MOTION_3D), None, None
    yield ("contrast + noise -> GPU",
           lambda: add_noise(image_to_sample(apply_contrast(image, 1.0)).to(device), 0.02, generator), None, None)


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
    print(f"{'step':<26} {'size':>5} {'device':>6} {'ours ms':>9} {'v0.6-like ms':>13} {'v0.6 ms (512)':>14}"
          f"  outputs")
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for size in (512, 1024):
            for name, ours, baseline, compare in cases(size, device):
                ms = median_ms(ours, args.repeat, sync)
                base = f"{median_ms(baseline, args.repeat, sync):>13.2f}" if baseline else f"{'':>13}"
                ref = V06_MS_512_CPU.get(name) if (size == 512 and device == "cpu") else None
                ref_text = f"{ref:>14.1f}" if ref is not None else f"{'':>14}"
                agree = compare(ours(), baseline()) if compare else ""
                print(f"{name:<26} {size:>5} {device:>6} {ms:>9.2f} {base} {ref_text}  {agree}")


if __name__ == "__main__":
    main()
