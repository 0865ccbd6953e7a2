"""How much of a 2D/3D animation's wall time is spent outside the networks, with the tiny test checkpoint.

    python bench/overhead.py [--sizes 512 128] [--frames 6] [--steps 50] [--device cpu|cuda]
    python bench/overhead.py --model sd15 --sizes 256 --frames 3   # the real SD 1.5 architecture
    python bench/overhead.py --tiny            # smoke test: 64 px, few frames and steps

The tiny checkpoint (tests/data/ldm via deforum.testing.tiny_checkpoint) is loaded through the real loader;
the UNet, the VAE encoder/decoder, the text encoder and the depth network are timed with forward hooks.
Each run is a real AnimationLoop (euler_ancestral, strength 0.65 of 50 steps, cadence 1, LAB colour
coherence, PNG frames; 3D predicts depth with a tiny random DPT). Rows come in pairs: "inline" writes each
PNG before going on (as v0.6 did), "background" hands it to the writer thread (this version's default).
"outside %" is the share of the wall time spent in none of the networks: warps, colour matching, noise,
conversions, file writes and Python. With a real SD model the networks cost far more, so this share is an
upper bound of what the per-frame work adds on a GPU (bench/gpu_frame.py measures that directly).

``--model sd15`` uses the SD 1.5 architecture and MiDaS DPT-Large's with random weights instead (as
bench/gpu_frame.py builds them; nothing is downloaded), only the background rows, and adds two rows of
single img2img calls (``frames`` calls each): this version's ``Generator`` and diffusers'
``StableDiffusionImg2ImgPipeline`` built from the same modules, same 17 steps and embeddings. Time inside
the networks is measured inside the same calls, so the comparison does not depend on the machine's speed
drifting between separately timed parts.
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
    parser.add_argument("--model", choices=("tiny", "sd15"), default="tiny",
                        help="tiny test checkpoint (default) or the SD 1.5 architecture with random weights")
    ns = parser.parse_args(argv)
    sizes = ns.sizes or ([64] if ns.tiny else [512, 128])
    frames = 3 if ns.tiny else ns.frames
    gpu_frame.set_steps(10 if ns.tiny else ns.steps)
    device = torch.device(ns.device)
    sd15 = ns.model == "sd15"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if sd15:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            model = gpu_frame.build_model(gpu_frame.REPO / "configs" / "v1-inference.yaml", device, dtype)
            depth = gpu_frame.build_depth(device, dtype, False, tmp)
        else:
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
              f"{torch.get_num_threads()} CPU threads, device {device}; model: "
              f"{'SD 1.5 architecture, random weights, ' + str(model.dtype) if sd15 else 'tiny SD1 test checkpoint'}")
        print(f"frames: {frames} per run, {gpu_frame.SAMPLER} {gpu_frame.STEPS} steps at strength "
              f"{gpu_frame.STRENGTH}, cadence 1, LAB colour coherence")
        header = (f"{'size':>5} {'mode':>4} {'PNG writes':<10} {'wall s':>7} {'UNet s':>7} {'VAE s':>6} "
                  f"{'text s':>6} {'depth s':>7} {'outside s':>9} {'outside %':>9}")
        print(header)
        print("-" * len(header))
        def timed_row(size: int, mode: str, label: str, run) -> None:
            timer.reset()
            gpu_frame.synchronize(device)
            start = time.perf_counter()
            run()
            gpu_frame.synchronize(device)
            wall = time.perf_counter() - start
            s = timer.seconds
            outside = wall - sum(s.values())
            print(f"{size:>5} {mode:>4} {label:<10} {wall:>7.2f} {s['unet']:>7.2f} {s['vae']:>6.2f} "
                  f"{s['text']:>6.3f} {s['depth']:>7.2f} {outside:>9.2f} {100 * outside / wall:>8.1f}%", flush=True)

        pipe = gpu_frame.diffusers_pipeline(model) if sd15 else None
        for size in sizes:
            # warm-up (first calls at a new size pick kernels and allocate), not shown
            gpu_frame.animation_loop(generator, size, "3D", 2, tmp / "warmup", depth=depth).run()
            for mode in ("2D", "3D"):
                for background in (True,) if sd15 else (False, True):
                    loop = gpu_frame.animation_loop(generator, size, mode, frames, tmp / ("bg" if background
                                                    else "inline"), depth=depth if mode == "3D" else None,
                                                    background_writes=background)
                    timed_row(size, mode, "background" if background else "inline", loop.run)
            if pipe is not None:
                ours, theirs = gpu_frame.img2img_calls(generator, pipe, size)
                theirs()  # warm-up of the pipeline's own code paths
                for label, call in (("Generator", ours), ("diffusers", theirs)):
                    timed_row(size, "-", label, lambda call=call: [call() for _ in range(frames)])


if __name__ == "__main__":
    main()
