"""How much of a 2D/3D animation's wall time is spent outside the networks, with the tiny test checkpoint.

    python bench/overhead.py [--sizes 512 128] [--frames 6] [--steps 50] [--device cpu|cuda]
    python bench/overhead.py --tiny            # smoke test: 64 px, few frames and steps

The tiny checkpoint (tests/data/ldm via deforum.testing.tiny_checkpoint) is loaded through the real loader;
the UNet, the VAE encoder/decoder, the text encoder and the depth network are timed with forward hooks.
Each run is a real AnimationLoop (euler_ancestral, strength 0.65 of 50 steps, cadence 1, LAB colour
coherence, PNG frames; 3D predicts depth with a tiny random DPT). Rows come in pairs: "inline" writes each
PNG before going on (as v0.6 did), "background" hands it to the writer thread (this version's default).
"outside %" is the share of the wall time spent in none of the networks: warps, colour matching, noise,
conversions, file writes and Python. With a real SD model the networks cost far more, so this share is an
upper bound of what the per-frame work adds on a GPU (bench/gpu_frame.py measures that directly).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_frame  # noqa: E402

from deforum.generate import Generator  # noqa: E402
from deforum.models.loader import load_model  # noqa: E402
from deforum.motion.depth import DepthModel  # noqa: E402
from deforum.testing import tiny_checkpoint, tiny_depth_model  # noqa: E402


class NetworkTimer:
    """Wall time spent inside chosen modules' forward calls, per group (synchronising CUDA at both ends)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._started: dict[int, float] = {}
        self._handles: list = []

    def watch(self, group: str, module: torch.nn.Module) -> None:
        def before(mod, _inputs):
            gpu_frame.synchronize(self.device)
            self._started[id(mod)] = time.perf_counter()

        def after(mod, _inputs, _output):
            gpu_frame.synchronize(self.device)
            self.seconds[group] += time.perf_counter() - self._started.pop(id(mod))

        self._handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def reset(self) -> None:
        self.seconds.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke test: 64 px, 3 frames, 10 steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 512 128")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--steps", type=int, default=gpu_frame.STEPS)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ns = parser.parse_args(argv)
    sizes = ns.sizes or ([64] if ns.tiny else [512, 128])
    frames = 3 if ns.tiny else ns.frames
    gpu_frame.set_steps(10 if ns.tiny else ns.steps)
    device = torch.device(ns.device)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint, config = tiny_checkpoint(tmp, fmt="safetensors")
        model = load_model(checkpoint, config, device=device, cache=False)
        depth = DepthModel(str(tiny_depth_model(tmp / "tiny-dpt")), device=device)
        generator = Generator(model)
        timer = NetworkTimer(device)
        timer.watch("unet", model.unet)
        timer.watch("text", model.text_encoder)
        for part in ("encoder", "quant_conv", "decoder", "post_quant_conv"):
            timer.watch("vae", getattr(model.vae, part))
        timer.watch("depth", depth.network)

        print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads, device {device}; model: tiny SD1 test checkpoint")
        print(f"frames: {frames} per run, {gpu_frame.SAMPLER} {gpu_frame.STEPS} steps at strength "
              f"{gpu_frame.STRENGTH}, cadence 1, LAB colour coherence")
        header = (f"{'size':>5} {'mode':>4} {'PNG writes':<10} {'wall s':>7} {'UNet s':>7} {'VAE s':>6} "
                  f"{'text s':>6} {'depth s':>7} {'outside s':>9} {'outside %':>9}")
        print(header)
        print("-" * len(header))
        for size in sizes:
            # warm-up (first calls at a new size pick kernels and allocate), not shown
            gpu_frame.animation_loop(generator, size, "3D", 2, tmp / "warmup", depth=depth).run()
            for mode in ("2D", "3D"):
                for background in (False, True):
                    loop = gpu_frame.animation_loop(generator, size, mode, frames, tmp / ("bg" if background
                                                    else "inline"), depth=depth if mode == "3D" else None,
                                                    background_writes=background)
                    timer.reset()
                    gpu_frame.synchronize(device)
                    start = time.perf_counter()
                    loop.run()
                    gpu_frame.synchronize(device)
                    wall = time.perf_counter() - start
                    s = timer.seconds
                    outside = wall - sum(s.values())
                    print(f"{size:>5} {mode:>4} {'background' if background else 'inline':<10} {wall:>7.2f} "
                          f"{s['unet']:>7.2f} {s['vae']:>6.2f} {s['text']:>6.3f} {s['depth']:>7.2f} "
                          f"{outside:>9.2f} {100 * outside / wall:>8.1f}%", flush=True)


if __name__ == "__main__":
    main()
