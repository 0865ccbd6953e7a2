"""Frames per second of the whole 2D/3D animation loop, ms per stage, and the ratio to its networks alone.

    python bench/loop_fps.py                # CUDA: every row below on the GPU (fp16)
    python bench/loop_fps.py --tiny         # CPU smoke test: tiny networks of the same kinds at 64 / 128 px
    python bench/loop_fps.py --loop host    # the host (numpy / OpenCV) loop instead of the device loop

Rows: {SD 1.5 at 50 steps (strength 0.65 runs 17, CFG 7: uncond + cond in one batch, its own VAE),
SD-Turbo 1 step + TAESD, SDXL-Turbo 4 steps + TAESDXL (both CFG 1: one UNet call per step)} x {2D, 3D with
Depth Anything V2 Small every frame} x {512, 1024} x {cadence 1, 3}. The networks are the real architectures
(diffusers' UNet2DConditionModel / AutoencoderKL / AutoencoderTiny, transformers' Depth Anything) with random
weights: nothing is downloaded. The key generator is the networks themselves (encode the init, the UNet
steps, decode; prompts are encoded once per run, so no text encoder per frame), so the table shows what the
loop adds around them:

- frames/s: the frames of one run divided by its wall time (after a warm-up run of the same row);
- floor ms: the networks alone per frame, each timed by itself in the same process: (keys x (encode + steps x
  UNet + decode) + depth predictions x depth) / frames; x floor: ms per frame over the floor;
- stage ms per frame from a second, synchronised run: unet, vae (encode + decode), depth, warp, colour (LAB),
  noise (contrast + noise), write (waiting for the frame's host copy and queueing its PNG).

``--tiny`` runs on a CPU in well under a minute and prints every row (the stand-in sizes 64 and 128 are
labelled as such); without it the rows need CUDA and are skipped with one line when there is none.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_frame import median_ms, synchronize  # noqa: E402  (the timing helpers of the GPU benchmark)

from deforum.plan import make_plan  # noqa: E402
from deforum.render import device_loop, steps  # noqa: E402
from deforum.render.animation import AnimationLoop  # noqa: E402
from deforum.render.device_loop import DeviceAnimationLoop  # noqa: E402
from deforum.sampling.run import steps_to_run  # noqa: E402
from deforum.settings import RunIdentity, resolve  # noqa: E402

STRENGTH = 0.65


@dataclass(frozen=True)
class ModelRow:
    label: str
    kind: str  # "sd15", "sd21", "sdxl"
    steps: int  # sampler steps
    cfg: bool  # classifier-free guidance: batch 2
    vae: str  # "kl" or "taesd"

    def steps_run(self, img2img: bool) -> int:
        return steps_to_run(self.steps, STRENGTH) if img2img and self.steps > 4 else self.steps


MODELS = (ModelRow("SD 1.5, 50 steps", "sd15", 50, True, "kl"),
          ModelRow("SD-Turbo 1 step + TAESD", "sd21", 1, False, "taesd"),
          ModelRow("SDXL-Turbo 4 steps + TAESDXL", "sdxl", 4, False, "taesd"))


# -- the networks (random weights) ------------------------------------------------------------------------

def unet_config(kind: str, tiny: bool) -> dict:
    """diffusers UNet2DConditionModel arguments of SD 1.5 / SD 2.1 (SD-Turbo) / SDXL (SDXL-Turbo)."""
    if tiny:
        base = dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, norm_num_groups=8)
        if kind == "sdxl":
            base.update(addition_embed_type="text_time", addition_time_embed_dim=8,
                        projection_class_embeddings_input_dim=32 + 6 * 8)
        return base
    sd = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    if kind == "sd15":
        return sd | dict(cross_attention_dim=768, attention_head_dim=8)
    if kind == "sd21":
        return sd | dict(cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
    return dict(block_out_channels=(320, 640, 1280), layers_per_block=2,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)


class Networks:
    """One model row's UNet, autoencoder and conditioning on ``device``: ``generate`` is the loop's key
    generator (encode, UNet steps, decode) and each part can be timed alone."""

    def __init__(self, row: ModelRow, device: torch.device, dtype: torch.dtype, tiny: bool, compile_: bool):
        from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

        torch.manual_seed(0)
        self.row, self.device, self.dtype = row, device, dtype
        config = unet_config(row.kind, tiny)
        with torch.device(device):
            self.unet = UNet2DConditionModel(**config).to(dtype).eval()
            if row.vae == "taesd":
                self.vae = AutoencoderTiny().to(dtype).eval()
            elif tiny:
                self.vae = AutoencoderKL(block_out_channels=(16,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
                                         norm_num_groups=8).to(dtype).eval()
            else:
                self.vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512),
                                         down_block_types=("DownEncoderBlock2D",) * 4,
                                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2).to(dtype).eval()
        if device.type == "cuda":
            self.unet.to(memory_format=torch.channels_last)
        batch = 2 if row.cfg else 1
        g = torch.Generator().manual_seed(1)
        self.context = torch.randn(batch, 77, config["cross_attention_dim"], generator=g).to(device, dtype)
        self.added = None
        if row.kind == "sdxl":
            pooled = 32 if tiny else 1280
            self.added = {"text_embeds": torch.randn(batch, pooled, generator=g).to(device, dtype),
                          "time_ids": torch.tensor([[512.0, 512.0, 0, 0, 512.0, 512.0]] * batch).to(device, dtype)}
        self.unet_fn, self.encode_fn, self.decode_fn = self._unet, self._encode, self._decode
        if compile_:  # static shapes; "reduce-overhead" records CUDA graphs
            mode = "reduce-overhead" if device.type == "cuda" else None
            self.unet_fn = torch.compile(self._unet, dynamic=False, mode=mode)
            self.encode_fn = torch.compile(self._encode, dynamic=False, mode=mode)
            self.decode_fn = torch.compile(self._decode, dynamic=False, mode=mode)

    def _unet(self, latent: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = latent.repeat(2, 1, 1, 1) if self.row.cfg else latent
        out = self.unet(x, t, encoder_hidden_states=self.context, added_cond_kwargs=self.added).sample
        if self.row.cfg:
            uncond, cond = out.chunk(2)
            return uncond + 7.0 * (cond - uncond)
        return out

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        if self.row.vae == "taesd":
            return self.vae.encode(image).latents
        return self.vae.encode(image).latent_dist.mean * 0.18215

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.row.vae == "taesd" else 1 / 0.18215
        return self.vae.decode(latent * scale).sample

    @torch.no_grad()
    def generate(self, row, init, strength, mask=None, overlay=None, timer=None):
        """The loop's key generator: the networks, values kept finite (random weights can overflow fp16)."""
        timer = timer or Timer(self.device, False)
        size = self.size
        if init is None:
            g = torch.Generator().manual_seed(int(row.seed))
            latent = torch.randn(1, 4, size // 8, size // 8, generator=g).to(self.device, self.dtype)
        else:
            image = init.to(self.device, self.dtype).clamp(-1, 1)
            latent = timer.time("vae", self.encode_fn, image)
        t = torch.full((latent.shape[0] * (2 if self.row.cfg else 1),), 500.0, device=self.device)
        for _ in range(self.row.steps_run(init is not None)):
            eps = timer.time("unet", self.unet_fn, latent, t)
            latent = torch.nan_to_num(latent - 0.05 * eps).clamp(-4, 4)
        decoded = timer.time("vae", self.decode_fn, latent)
        return torch.nan_to_num(decoded.float()).clamp(-1, 1)

    @torch.no_grad()
    def floor_ms(self, size: int, repeat: int) -> dict[str, float]:
        """Each network alone: one UNet call, one encode, one decode (median ms)."""
        self.size = size
        g = torch.Generator().manual_seed(2)
        latent = torch.randn(1, 4, size // 8, size // 8, generator=g).to(self.device, self.dtype)
        image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(self.device, self.dtype)
        t = torch.full((2 if self.row.cfg else 1,), 500.0, device=self.device)
        return {"unet": median_ms(lambda: self.unet_fn(latent, t), self.device, repeat),
                "encode": median_ms(lambda: self.encode_fn(image), self.device, repeat),
                "decode": median_ms(lambda: self.decode_fn(latent), self.device, repeat)}


def depth_model(device: torch.device, dtype: torch.dtype, tiny: bool, folder: Path):
    """Depth Anything V2 Small's architecture with random weights (tiny: the test helper's small one)."""
    from deforum.motion.depth import DepthModel

    if tiny:
        from deforum.testing import tiny_depth_model

        return DepthModel(str(tiny_depth_model(folder / "tiny-da", kind="depth_anything")), device=device)
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                            image_size=518, patch_size=14, out_features=["stage3", "stage6", "stage9", "stage12"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                                 patch_size=14)
    with torch.device(device):
        network = DepthAnythingForDepthEstimation(config).to(dtype)
    return DepthModel.from_network(network, device=device, name="random Depth Anything V2 Small")


def bounded(depth):
    """Random weights predict any depth: map it into 1.5..2.5 on the device (the camera needs z > 0)."""
    def predict(image):
        return 2.0 + 0.5 * torch.tanh(torch.nan_to_num(depth(image).float()) * 1e-3)
    return predict


# -- timing -----------------------------------------------------------------------------------------------



class Timer:
    """Sums ms per stage; ``sync`` waits for the device around each (the profiled run only)."""

    def __init__(self, device: torch.device, sync: bool):
        self.device, self.sync, self.ms, self.calls = device, sync, defaultdict(float), defaultdict(int)

    def time(self, name, fn, *args, **kwargs):
        if self.sync:
            synchronize(self.device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.sync:
            synchronize(self.device)
        self.ms[name] += (time.perf_counter() - start) * 1000
        self.calls[name] += 1
        return out

    def wrap(self, name, fn):
        return lambda *args, **kwargs: self.time(name, fn, *args, **kwargs)


@contextlib.contextmanager
def stage_timers(timer: Timer, loop):
    """Time the loop's stages: warp, colour, noise, write (the device loop's functions, or the host loop's
    ``steps`` functions and camera; the host loop's ``write`` is queueing the PNG)."""
    device = isinstance(loop, DeviceAnimationLoop)
    module = device_loop if device else steps
    names = ("maintain_colors_torch", "init_sample_torch") if device else ("match_colors", "init_sample")
    saved = {name: getattr(module, name) for name in names}
    setattr(module, names[0], timer.wrap("colour", saved[names[0]]))
    setattr(module, names[1], timer.wrap("noise", saved[names[1]]))
    if device:
        loop._warp = timer.wrap("warp", loop._warp)
        loop._finish = timer.wrap("write", loop._finish)
    else:
        warp = "_camera" if hasattr(loop, "_camera") else "_warp"
        setattr(loop, warp, timer.wrap("warp", getattr(loop, warp)))
        loop.sink.write_frame = timer.wrap("write", loop.sink.write_frame)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


# -- one row ----------------------------------------------------------------------------------------------

def make_loop(nets: Networks, size: int, mode: str, cadence: int, frames: int, outdir: Path, depth, loop_kind: str,
              timer: Timer | None = None):
    settings = resolve(dict(W=size, H=size, seed=1, steps=nets.row.steps, strength=STRENGTH),
                       dict(animation_mode=mode, max_frames=frames, diffusion_cadence=str(cadence),
                            strength_schedule=f"0:({STRENGTH})", translation_z="0:(2)", angle="0:(0.5)",
                            zoom="0:(1.01)", color_coherence="Match Frame 0 LAB", use_depth_warping=True),
                       animation_prompts={0: "a lighthouse"})
    identity = RunIdentity("bench", outdir, 1)
    nets.size = size

    def generate(*args, **kwargs):
        return nets.generate(*args, **kwargs, timer=timer)

    loop_class = DeviceAnimationLoop if loop_kind == "device" else AnimationLoop
    depth_fn = None if depth is None else (depth if timer is None else timer.wrap("depth", depth))
    return loop_class(make_plan(settings, 1), settings, identity, generate, depth=depth_fn,
                      device=str(nets.device))


def run_row(nets: Networks, size: int, mode: str, cadence: int, frames: int, folder: Path, depth, loop_kind: str,
            floor: dict[str, float], depth_ms: float | None) -> dict[str, float]:
    device = nets.device
    make_loop(nets, size, mode, cadence, cadence + 1, folder / "warm", depth, loop_kind).run()
    synchronize(device)
    start = time.perf_counter()
    make_loop(nets, size, mode, cadence, frames, folder / "run", depth, loop_kind).run()
    synchronize(device)
    ms = (time.perf_counter() - start) * 1000 / frames
    timer = Timer(device, True)
    loop = make_loop(nets, size, mode, cadence, frames, folder / "profiled", depth, loop_kind, timer)
    with stage_timers(timer, loop):
        loop.run()
    keys = len(range(0, frames, cadence))
    img2img_keys = keys - 1
    unet_calls = nets.row.steps_run(False) + img2img_keys * nets.row.steps_run(True)
    network_ms = unet_calls * floor["unet"] + img2img_keys * floor["encode"] + keys * floor["decode"]
    if depth_ms is not None:
        network_ms += timer.calls["depth"] * depth_ms
    stages = {name: timer.ms[name] / frames for name in ("unet", "vae", "depth", "warp", "colour", "noise", "write")}
    return {"ms": ms, "floor": network_ms / frames, **stages}


# -- main -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny networks at 64 and 128 px")
    parser.add_argument("--frames", type=int, default=None, help="frames per timed run (default 12; tiny 4)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats of each network timing (default 10)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default 512 1024 (tiny: 64 128)")
    parser.add_argument("--models", nargs="+", default=None, choices=[m.kind for m in MODELS])
    parser.add_argument("--loop", choices=("device", "host"), default="device")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and VAE/TAESD (static "
                                                               "shapes; CUDA graphs on CUDA)")
    ns = parser.parse_args(argv)
    tiny = ns.tiny
    if not tiny and not torch.cuda.is_available():
        print("no CUDA device: the GPU rows need one (run with --tiny for the CPU smoke test)")
        return
    device = torch.device("cpu" if tiny else "cuda")
    if tiny:
        torch.set_num_threads(1)  # a busy CPU stalls torch's thread pool (tens of times slower on 2 shared cores)
    dtype = torch.float32 if tiny else torch.float16
    sizes = ns.sizes or ([64, 128] if tiny else [512, 1024])
    frames = ns.frames or (4 if tiny else 12)
    repeat = ns.repeat or (2 if tiny else 10)
    models = [m for m in MODELS if ns.models is None or m.kind in ns.models]
    where = (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})" if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"machine: {where}; torch {torch.__version__}; dtype {str(dtype).replace('torch.', '')}; "
          f"loop: {ns.loop}; {frames} frames per run; random weights{' (tiny stand-ins)' if tiny else ''}")
    header = (f"{'model':<30} {'mode':<4} {'size':>5} {'cad':>3} {'frames/s':>9} {'ms/frame':>9} {'floor':>8} "
              f"{'x floor':>7} | {'unet':>7} {'vae':>6} {'depth':>6} {'warp':>6} {'colour':>6} {'noise':>6} "
              f"{'write':>6}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        depth = depth_model(device, dtype, tiny, folder)
        for model_row in models:
            nets = Networks(model_row, device, dtype, tiny, ns.compile)
            for size in sizes:
                floor = nets.floor_ms(size, repeat)
                image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, device=device)
                depth_ms = median_ms(lambda image=image: depth.predict(image), device, repeat)
                for mode in ("2D", "3D"):
                    for cadence in (1, 3):
                        row_folder = folder / f"{model_row.kind}-{size}-{mode}-{cadence}"
                        r = run_row(nets, size, mode, cadence, frames, row_folder,
                                    bounded(depth.predict) if mode == "3D" else None, ns.loop, floor,
                                    depth_ms if mode == "3D" else None)
                        print(f"{model_row.label:<30} {mode:<4} {size:>5} {cadence:>3} {1000 / r['ms']:>9.2f} "
                              f"{r['ms']:>9.1f} {r['floor']:>8.1f} {r['ms'] / r['floor']:>7.2f} | "
                              f"{r['unet']:>7.1f} {r['vae']:>6.1f} {r['depth']:>6.1f} {r['warp']:>6.1f} "
                              f"{r['colour']:>6.1f} {r['noise']:>6.1f} {r['write']:>6.1f}", flush=True)
            del nets
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
