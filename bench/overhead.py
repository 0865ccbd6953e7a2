"""How much of a 2D/3D animation's wall time is spent outside the networks, with the tiny test checkpoint.

    python bench/overhead.py [--sizes 512 128] [--frames 6] [--steps 50] [--device cpu|cuda]
    python bench/overhead.py --model sd15 --sizes 256 --frames 3   # the real SD 1.5 architecture
    python bench/overhead.py --tiny            # smoke test: 64 px, few frames and steps
    python bench/overhead.py --family sdxl --configs v06 few --sizes 128 --frames 3   # a tiny SDXL checkpoint

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

``--family sd1|sd2|sdxl`` loads ``deforum.models.tiny.write_tiny_checkpoint(family, ...)`` (a tiny random
checkpoint in the family's single-file key layout, no yaml) through ``deforum.models.load_model`` instead of
the tiny test checkpoint, and shows only the background rows. ``--configs`` picks the sampler settings of
the rows: ``v06`` (default) is the one above (euler_ancestral, ``--steps`` steps, CFG scale 7), ``few`` is a
few-step model's (lcm, 4 steps, scale 1: no unconditional prediction). Every row also gives the UNet's
forward calls per frame ("calls/fr") and the latents they evaluated per frame ("evals/fr": the batch rows;
CFG at scale > 1 evaluates [uncond, cond] as one batch of 2 per step, scale <= 1 the cond alone).
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
from deforum.models.tiny import write_tiny_checkpoint  # noqa: E402
from deforum.motion.depth import DepthModel  # noqa: E402
from deforum.sampling.run import steps_to_run  # noqa: E402
from deforum.testing import tiny_checkpoint, tiny_depth_model  # noqa: E402


class NetworkTimer:
    """Wall time spent inside chosen modules' forward calls, per group (synchronising CUDA at both ends)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)  # forward calls per group
        self.rows: dict[str, int] = defaultdict(int)  # batch rows of the first input, summed over the calls
        self._started: dict[int, float] = {}
        self._handles: list = []

    def watch(self, group: str, module: torch.nn.Module) -> None:
        def before(mod, inputs):
            self.calls[group] += 1
            if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim():
                self.rows[group] += inputs[0].shape[0]
            gpu_frame.synchronize(self.device)
            self._started[id(mod)] = time.perf_counter()

        def after(mod, _inputs, _output):
            gpu_frame.synchronize(self.device)
            self.seconds[group] += time.perf_counter() - self._started.pop(id(mod))

        self._handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.rows.clear()


# --configs: (sampler, steps (None: --steps), CFG scale) of the rows
CONFIGS = {"v06": ("euler_ancestral", None, 7.0), "few": ("lcm", 4, 1.0)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke test: 64 px, 3 frames, 10 steps")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 512 128")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--steps", type=int, default=gpu_frame.STEPS)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--model", choices=("tiny", "sd15"), default="tiny",
                        help="tiny test checkpoint (default) or the SD 1.5 architecture with random weights")
    parser.add_argument("--family", choices=("sd1", "sd2", "sdxl"), default=None,
                        help="a tiny random checkpoint of this family (deforum.models.tiny), loaded without a yaml")
    parser.add_argument("--configs", choices=tuple(CONFIGS), nargs="+", default=["v06"],
                        help="v06: euler_ancestral, --steps steps, scale 7 (default); few: lcm, 4 steps, scale 1")
    ns = parser.parse_args(argv)
    if ns.family and ns.model != "tiny":
        parser.error("--family needs --model tiny")
    sizes = ns.sizes or ([64] if ns.tiny else [512, 128])
    frames = 3 if ns.tiny else ns.frames
    v06_steps = 10 if ns.tiny else ns.steps
    device = torch.device(ns.device)
    sd15 = ns.model == "sd15"

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if sd15:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            model = gpu_frame.build_model(gpu_frame.REPO / "configs" / "v1-inference.yaml", device, dtype)
            depth = gpu_frame.build_depth(device, dtype, False, tmp)
        elif ns.family:
            checkpoint = write_tiny_checkpoint(ns.family, tmp / f"tiny-{ns.family}.safetensors")
            model = load_model(checkpoint, device=device, cache=False)
        else:
            checkpoint, config = tiny_checkpoint(tmp, fmt="safetensors")
            model = load_model(checkpoint, config, device=device, cache=False)
        if not sd15:
            depth = DepthModel(str(tiny_depth_model(tmp / "tiny-dpt")), device=device)
        generator = Generator(model)
        timer = NetworkTimer(device)
        timer.watch("unet", model.unet)
        timer.watch("text", model.text_encoder)
        if getattr(model, "text_encoder_2", None) is not None:  # SDXL's OpenCLIP bigG
            timer.watch("text", model.text_encoder_2)
        for part in ("encoder", "quant_conv", "decoder", "post_quant_conv"):
            timer.watch("vae", getattr(model.vae, part))
        timer.watch("depth", depth.network)

        if sd15:
            described = f"SD 1.5 architecture, random weights, {model.dtype}"
        elif ns.family:
            described = (f"tiny {ns.family} checkpoint (deforum.models.tiny, no yaml), family "
                         f"{getattr(getattr(model, 'family', None), 'name', '?')} detected")
        else:
            described = "tiny SD1 test checkpoint"
        print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads, device {device}; model: {described}")
        for name in ns.configs:
            sampler, steps, scale = CONFIGS[name]
            steps = steps or v06_steps
            print(f"config {name}: {frames} frames per run, {sampler} {steps} steps at strength "
                  f"{gpu_frame.STRENGTH} ({steps_to_run(steps, gpu_frame.STRENGTH)} run), CFG scale {scale}, "
                  "cadence 1, LAB colour coherence")
        header = (f"{'size':>5} {'mode':>4} {'PNG writes':<10} {'wall s':>7} {'UNet s':>7} {'VAE s':>6} "
                  f"{'text s':>6} {'depth s':>7} {'outside s':>9} {'outside %':>9} {'calls/fr':>8} "
                  f"{'evals/fr':>8} config")
        print(header)
        print("-" * len(header))
        def timed_row(size: int, mode: str, label: str, run, config: str = "v06") -> None:
            timer.reset()
            gpu_frame.synchronize(device)
            start = time.perf_counter()
            run()
            gpu_frame.synchronize(device)
            wall = time.perf_counter() - start
            s = timer.seconds
            outside = wall - sum(s.values())
            print(f"{size:>5} {mode:>4} {label:<10} {wall:>7.2f} {s['unet']:>7.2f} {s['vae']:>6.2f} "
                  f"{s['text']:>6.3f} {s['depth']:>7.2f} {outside:>9.2f} {100 * outside / wall:>8.1f}% "
                  f"{timer.calls['unet'] / frames:>8.2f} {timer.rows['unet'] / frames:>8.2f} {config}", flush=True)

        pipe = gpu_frame.diffusers_pipeline(model) if sd15 else None
        for size in sizes:
            for name in ns.configs:
                sampler, steps, scale = CONFIGS[name]
                gpu_frame.SAMPLER, gpu_frame.SCALE = sampler, scale
                gpu_frame.set_steps(steps or v06_steps)
                # warm-up (first calls at a new size pick kernels and allocate), not shown
                gpu_frame.animation_loop(generator, size, "3D", 2, tmp / "warmup", depth=depth).run()
                for mode in ("2D", "3D"):
                    for background in (True,) if sd15 or ns.family else (False, True):
                        loop = gpu_frame.animation_loop(generator, size, mode, frames, tmp / ("bg" if background
                                                        else "inline"), depth=depth if mode == "3D" else None,
                                                        background_writes=background)
                        timed_row(size, mode, "background" if background else "inline", loop.run, name)
            if pipe is not None:
                gpu_frame.SAMPLER, gpu_frame.SCALE = CONFIGS["v06"][0], CONFIGS["v06"][2]
                gpu_frame.set_steps(v06_steps)
                ours, theirs = gpu_frame.img2img_calls(generator, pipe, size)
                theirs()  # warm-up of the pipeline's own code paths
                for label, call in (("Generator", ours), ("diffusers", theirs)):
                    timed_row(size, "-", label, lambda call=call: [call() for _ in range(frames)])


if __name__ == "__main__":
    main()
