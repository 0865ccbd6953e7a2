"""What one Deforum frame costs on a GPU next to its floor and next to diffusers' img2img pipeline.

    python bench/gpu_frame.py [--sizes 512 768 1024] [--frames 6] [--dtype fp16|bf16] [--compile]
    python bench/gpu_frame.py --device cpu --sizes 256 --repeat 3   # the same rows on the CPU (fp32)
    python bench/gpu_frame.py --tiny          # CPU smoke test: the tiny test model at 64 px

The model is the real SD 1.5 architecture (configs/v1-inference.yaml built by deforum.models.config and
deforum.models.convert) with random weights, so nothing is downloaded; the 3D depth network is MiDaS
DPT-Large's architecture with random weights. Per size it prints:

- UNet step: one CFG step (batch 2: uncond + cond), VAE encode, VAE decode, each timed alone;
- floor = steps run x UNet step + encode + decode (strength 0.65 of 50 steps runs int(0.35 * 50) = 17);
- Generator call: one img2img ``deforum.generate.Generator`` call (prompt cached, no per-frame steps);
- 2D / 3D frame: the steady-state time per frame of a real 2D / 3D animation loop (warp, LAB colour match,
  contrast, noise, the img2img call, PNG writing; 3D adds depth prediction), euler_ancestral, cadence 1;
- diffusers img2img: ``StableDiffusionImg2ImgPipeline`` built from the same modules, running the same 17
  steps (diffusers' strength is the noise share: 0.35 there is Deforum's 0.65) with the same embeddings;
- peak VRAM of each row (torch.cuda.max_memory_allocated). 1024 x 1024 runs with VAE tiling.

Then it counts CPU-GPU synchronisations inside one sampling run (torch.cuda.set_sync_debug_mode) for two
step counts: equal counts mean nothing in the per-step loop waits for the GPU.

Few-step rows (real weights, from ``--models-path``, default ``models``; see docs/models.md): SD-Turbo at
1 step and SDXL-Turbo at 1 and 4 steps, img2img at 512 x 512 with cfg scale 1 (one UNet call per step) and
euler_ancestral, each with the checkpoint's own VAE and with TAESD / TAESDXL (``vae = 'taesd'``): ms and
frames/s of one ``Generator`` call, the floor (the UNet calls + VAE encode + decode of that call, each timed
alone) and the ratio to it. A row whose files are absent is skipped with a line naming them. With ``--tiny``
the tiny test model stands in for the Turbo models at 64 x 64 (the code path, not a timing).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deforum.generate import GenerationRequest, Generator  # noqa: E402
from deforum.models import config as ldm_config  # noqa: E402
from deforum.models.convert import build_modules  # noqa: E402
from deforum.models.ldm import LatentDiffusionModel, linear_alphas_cumprod  # noqa: E402
from deforum.models.text import Tokenizer  # noqa: E402
from deforum.plan import make_plan  # noqa: E402
from deforum.render.animation import AnimationLoop, key_generator  # noqa: E402
from deforum.sampling.run import steps_to_run  # noqa: E402
from deforum.settings import RunIdentity, resolve  # noqa: E402

STEPS, STRENGTH, SAMPLER, SCALE = 50, 0.65, "euler_ancestral", 7.0
PROMPT = "a lighthouse on a cliff at sunset, oil painting"
GiB = 1024 ** 3


def set_steps(steps: int) -> None:
    """Sampler steps of every run (50 by default; the smoke tests use fewer)."""
    global STEPS
    STEPS = max(2, int(steps))


# -- timing helpers -------------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """out['peak'] = the peak bytes allocated on ``device`` inside the block (None off CUDA)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    out["peak"] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def machine_line(device: torch.device, dtype: torch.dtype) -> str:
    import diffusers

    where = (f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})" if device.type == "cuda"
             else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    return (f"machine: {where}; torch {torch.__version__}, diffusers {diffusers.__version__}, "
            f"python {platform.python_version()}; dtype {str(dtype).replace('torch.', '')}")


# -- the model --------------------------------------------------------------------------------------------

def build_model(config: Path, device: torch.device, dtype: torch.dtype) -> LatentDiffusionModel:
    """The architecture of ``config`` with random weights, built directly on ``device`` (no checkpoint)."""
    spec = ldm_config.load_config(config)
    torch.manual_seed(0)
    modules = build_modules(spec, device=device)
    model = LatentDiffusionModel(
        modules["unet"], modules["vae"], modules["text"], Tokenizer(spec.text.pad_id),
        linear_alphas_cumprod(spec.linear_start, spec.linear_end, spec.timesteps), spec.parameterization,
        spec.scale_factor, name=f"random {config.name}", config_name=config.name)
    model.to(device, dtype)
    if device.type == "cuda":
        model.use_channels_last()
    return model


def build_depth(device: torch.device, dtype: torch.dtype, tiny: bool, folder: Path):
    """A DepthModel: MiDaS DPT-Large's architecture with random weights (tiny: the test helper's DPT)."""
    from deforum.motion.depth import DepthModel

    if tiny:
        from deforum.testing import tiny_depth_model

        return DepthModel(str(tiny_depth_model(folder / "tiny-dpt")), device=device)
    from transformers import DPTConfig, DPTForDepthEstimation

    config = DPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       image_size=384, patch_size=16, backbone_out_indices=[5, 11, 17, 23],
                       neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256)
    with torch.device(device):
        network = DPTForDepthEstimation(config)
    network = network.to(dtype)
    if device.type == "cuda":
        network = network.to(memory_format=torch.channels_last)
    return DepthModel.from_network(network, device=device, name="random DPT-Large")


def init_image(size: int):
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([np.sin(9 * xx) * 0.5 + 0.5, np.cos(7 * yy) * 0.5 + 0.5, (xx * yy) ** 0.5], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


# -- the rows ---------------------------------------------------------------------------------------------

def component_times(model: LatentDiffusionModel, size: int, repeat: int) -> dict[str, float]:
    device, dtype = model.device, model.dtype
    f = 8
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(2, 4, size // f, size // f, generator=g).to(device, dtype)
    t = torch.full((2,), 500.0, device=device)
    context = model.get_learned_conditioning(["", PROMPT]).to(dtype)
    image = (torch.rand(1, 3, size, size, generator=g) * 2 - 1).to(device, dtype)
    z = latent[:1].float()
    with torch.no_grad():
        return {
            "unet": median_ms(lambda: model.apply_model(latent, t, context), device, repeat),
            "encode": median_ms(lambda: model.encode_first_stage(image).sample(), device, max(2, repeat // 2)),
            "decode": median_ms(lambda: model.decode_first_stage(z), device, max(2, repeat // 2)),
        }


def img2img_calls(generator: Generator, pipe, size: int):
    """(ours, theirs): one img2img of the test image by ``generator`` and by diffusers' ``pipe`` (built from
    the same modules; None: theirs is None), the same steps with the same embeddings (diffusers' strength
    is the noise share: 0.35 there is Deforum's 0.65)."""
    model = generator.model
    init = init_image(size)
    embeddings = model.get_learned_conditioning(["", PROMPT])
    uc, c = embeddings[:1], embeddings[1:]
    request = GenerationRequest(seed=1, W=size, H=size, prompt=PROMPT, init_image=init, strength=STRENGTH,
                                steps=STEPS, sampler=SAMPLER, scale=SCALE)

    def ours():
        generator.generate(request)

    def theirs():
        pipe(prompt_embeds=c, negative_prompt_embeds=uc, image=init, strength=1.0 - STRENGTH,
             num_inference_steps=STEPS, guidance_scale=SCALE, output_type="np",
             generator=torch.Generator("cpu").manual_seed(1))
    return ours, (None if pipe is None else theirs)


def animation_loop(generator: Generator, size: int, mode: str, frames: int, outdir: Path, depth=None,
                   wrap=None, background_writes: bool = True) -> AnimationLoop:
    """A real 2D/3D AnimationLoop at ``size`` (cadence 1, LAB colour coherence, frame 0 img2img of a test
    image); ``wrap(generate) -> generate`` can time the key generator."""
    settings = resolve(dict(W=size, H=size, seed=1, steps=STEPS, scale=SCALE, sampler=SAMPLER, strength=STRENGTH),
                       dict(animation_mode=mode, max_frames=frames, diffusion_cadence="1",
                            strength_schedule=f"0:({STRENGTH})", translation_z="0:(2)"),
                       animation_prompts={0: PROMPT})
    identity = RunIdentity("bench", outdir / f"{mode}-{size}", 1)
    generate = key_generator(generator, settings, first_init=init_image(size))
    return AnimationLoop(make_plan(settings, identity.seed), settings, identity,
                         wrap(generate) if wrap else generate, depth=None if depth is None else depth.predict,
                         device=str(generator.model.device), background_writes=background_writes)


def loop_frame_ms(generator: Generator, size: int, mode: str, frames: int, outdir: Path,
                  depth=None) -> float:
    """Steady-state ms per frame of a real 2D/3D animation loop (the first two frames are warm-up)."""
    ends: list[float] = []

    def wrap(generate):
        def timed(*a, **k):
            out = generate(*a, **k)  # returns a CPU tensor: the GPU work of the frame is done
            ends.append(time.perf_counter())
            return out
        return timed

    animation_loop(generator, size, mode, frames, outdir, depth, wrap).run()
    gaps = np.diff(ends) * 1000
    return float(np.median(gaps[1:] if len(gaps) > 2 else gaps))


def diffusers_pipeline(model: LatentDiffusionModel):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionImg2ImgPipeline

    # SD 1.5's scheduler_config.json
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                num_train_timesteps=1000, steps_offset=1,
                                                timestep_spacing="leading")
    pipe = StableDiffusionImg2ImgPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=None,
                                          unet=model.unet, scheduler=scheduler, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync_counts(generator: Generator, size: int) -> dict[int, int]:
    """CPU-GPU syncs reported inside one sampling run, for two strengths (different step counts)."""
    from deforum.sampling.denoisers import CFGDenoiser
    from deforum.sampling.run import sample

    model = generator.model
    device = model.device
    embeddings = model.get_learned_conditioning(["", PROMPT])
    extra = {"uncond": embeddings[:1], "cond": embeddings[1:], "cond_scale": SCALE}
    init = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0)).to(device)
    counts = {}
    for strength in (0.65, 0.3):
        denoiser = CFGDenoiser(generator.denoiser)
        synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                sample(denoiser, SAMPLER, STEPS, strength, init_latent=init, extra_args=extra,
                       generator=torch.Generator().manual_seed(1), device=device)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts[steps_to_run(STEPS, strength)] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


# -- few-step rows (SD-Turbo, SDXL-Turbo, TAESD) ----------------------------------------------------------------

FEW_STEP_SIZE = 512
FEW_STEP = (  # (label, catalogue name of the checkpoint, UNet steps run)
    ("SD-Turbo 1 step", "sd_turbo.safetensors", 1),
    ("SDXL-Turbo 1 step", "sd_xl_turbo_1.0_fp16.safetensors", 1),
    ("SDXL-Turbo 4 steps", "sd_xl_turbo_1.0_fp16.safetensors", 4),
)


@contextlib.contextmanager
def part_timer(model, device: torch.device):
    """Times every UNet forward and VAE encode / decode inside the block, each alone (synchronised before and
    after): yields {'unet': [ms, ...], 'encode': [...], 'decode': [...]}."""
    times: dict[str, list[float]] = {"unet": [], "encode": [], "decode": []}

    def timed(key, fn):
        def run(*args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(device)
            times[key].append((time.perf_counter() - start) * 1000)
            return out
        return run

    patched = [(model.unet, "forward"), (model.vae, "encode"), (model.vae, "decode")]
    for (module, name), key in zip(patched, ("unet", "encode", "decode"), strict=True):
        setattr(module, name, timed(key, getattr(module, name)))
    try:
        yield times
    finally:
        for module, name in patched:
            if name in vars(module):
                delattr(module, name)  # the class's method again


def few_step_request(size: int, steps_run: int) -> GenerationRequest:
    """img2img of the test image that runs ``steps_run`` UNet steps (strength 0.5 of 2 x steps_run) at cfg 1."""
    return GenerationRequest(seed=1, W=size, H=size, prompt=PROMPT, init_image=init_image(size), strength=0.5,
                             steps=2 * steps_run, sampler="euler_ancestral", scale=1.0)


def few_step_row(generator: Generator, size: int, steps_run: int, repeat: int) -> dict[str, float]:
    """ms of one Generator call; the floor (its UNet calls + encode + decode, each timed alone); UNet calls."""
    model, device = generator.model, generator.model.device
    request = few_step_request(size, steps_run)
    ms = median_ms(lambda: generator.generate(request), device, repeat, warmup=2)
    with part_timer(model, device) as parts:
        generator.generate(request)
    calls = len(parts["unet"])
    with part_timer(model, device) as again:  # a second pass: the medians of two runs' parts
        generator.generate(request)
    unet = statistics.median(parts["unet"] + again["unet"]) * calls
    vae = sum(statistics.median(parts[k] + again[k]) for k in ("encode", "decode") if parts[k] + again[k])
    return {"ms": ms, "floor": unet + vae, "unet": unet, "vae": vae, "calls": calls}


def load_turbo(path: Path, device: torch.device, dtype: torch.dtype):
    from deforum.models import catalogue, load_model

    entry = catalogue.lookup(path.name)
    config = REPO / "configs" / entry.config if entry is not None and entry.config else None
    return load_model(path, config, device=device, dtype=dtype, cache=False)


def few_step_rows(models_path: Path, device: torch.device, dtype: torch.dtype, repeat: int,
                  tiny_generator: Generator | None = None) -> None:
    """The few-step table; ``tiny_generator``: the tiny model stands in for the Turbo checkpoints (64 x 64)."""
    from deforum.errors import DeforumError
    from deforum.models import catalogue

    size = 64 if tiny_generator is not None else FEW_STEP_SIZE
    print(f"few-step rows: img2img {size}x{size}, euler_ancestral, cfg scale 1 (one UNet call per step), models "
          f"from {models_path}" + (" (--tiny: the tiny test model stands in)" if tiny_generator else ""))
    header = (f"{'size':>5}  {'row':<34} {'ms':>10} {'x floor':>8} {'frames/s':>9} {'floor ms':>9} "
              f"{'UNet ms':>8} {'VAE ms':>7} {'calls':>5}")
    print(header)
    print("-" * len(header))
    jobs = [("tiny stand-in 1 step", None, 1)] if tiny_generator is not None else list(FEW_STEP)
    loaded: dict[str, Generator] = {}
    for label, name, steps_run in jobs:
        if tiny_generator is not None:
            generator = tiny_generator
        else:
            path = models_path / name
            if not path.is_file():
                print(f"skipped: {label}: {path} is absent (deforum models list; docs/models.md)")
                continue
            if name not in loaded:
                loaded.clear()  # one big checkpoint in memory at a time
                try:
                    loaded[name] = Generator(load_turbo(path, device, dtype))
                except DeforumError as exc:
                    print(f"skipped: {label}: {exc}")
                    continue
            generator = loaded[name]
        model = generator.model
        family = "sdxl" if "xl" in (name or "").lower() else "sd1"
        tae = catalogue.lookup("taesdxl" if family == "sdxl" else "taesd")
        for vae in ("default", "taesd"):
            if vae == "taesd":
                if not tae.present(models_path):
                    print(f"skipped: {label} + {tae.name}: {tae.path_in(models_path)} is absent (config.json and "
                          f"{tae.filename}; docs/models.md)")
                    continue
                try:
                    from deforum.models.taesd import use_vae

                    use_vae(model, "taesd", models_path=models_path)
                except (ImportError, DeforumError) as exc:
                    print(f"skipped: {label} + {tae.name}: {exc}")
                    continue
            try:
                r = few_step_row(generator, size, steps_run, repeat)
            finally:
                if vae == "taesd":
                    from deforum.models.taesd import use_vae

                    use_vae(model, "default")
            row_label = f"{label}, {'TAESD' if vae == 'taesd' else 'own VAE'}"
            print(f"{size:>5}  {row_label:<34} {r['ms']:>10.1f} {r['ms'] / r['floor']:>8.2f} "
                  f"{1000 / r['ms']:>9.1f} {r['floor']:>9.1f} {r['unet']:>8.1f} {r['vae']:>7.1f} "
                  f"{r['calls']:>5}", flush=True)
    loaded.clear()


# -- main -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny test model")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 512 768 1024 (tiny: 64)")
    parser.add_argument("--frames", type=int, default=6, help="frames per 2D/3D loop (first 2 are warm-up)")
    parser.add_argument("--repeat", type=int, default=10, help="repeats of the component timings")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"sampler steps (default {STEPS})")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                        help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda when present; --device cpu runs the real architecture on the CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet first (slow start)")
    parser.add_argument("--no-diffusers", action="store_true", help="skip the diffusers pipeline rows")
    parser.add_argument("--models-path", type=Path, default=Path("models"),
                        help="where the few-step rows find sd_turbo.safetensors, sd_xl_turbo_1.0_fp16.safetensors, "
                             "taesd/ and taesdxl/ (default: models)")
    parser.add_argument("--few-step-only", action="store_true", help="only the few-step rows")
    ns = parser.parse_args(argv)
    set_steps(ns.steps)

    if ns.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    tiny = ns.tiny or (ns.device is None and not torch.cuda.is_available())
    device = torch.device("cpu" if tiny or ns.device == "cpu" else "cuda")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        ns.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    if tiny and dtype != torch.float32:
        parser.error("--tiny runs in fp32")
    sizes = ns.sizes or ([64] if tiny else [512, 768, 1024])
    repeat = 3 if tiny else ns.repeat
    frames = max(3, ns.frames)
    config = (REPO / "tests" / "data" / "ldm" / "tiny-sd1-inference.yaml" if tiny
              else REPO / "configs" / "v1-inference.yaml")
    if tiny and not ns.tiny:
        print("no CUDA device: running the tiny CPU smoke test (--tiny; --device cpu runs SD 1.5 on the CPU)")

    started = time.perf_counter()
    model = build_model(config, device, dtype)
    if ns.compile:
        model.compile_unet()
    generator = Generator(model)
    print(machine_line(device, dtype))
    print(f"model: {model.name} (random weights); attention processors: "
          f"{', '.join(sorted(model.attention_processors()))}; UNet memory format: "
          f"{'channels_last' if device.type == 'cuda' else 'contiguous'}; compiled UNet: {model.unet_compiled}")
    t_enc = steps_to_run(STEPS, STRENGTH)
    print(f"frame: {SAMPLER}, {STEPS} steps at strength {STRENGTH} -> {t_enc} steps run, CFG scale {SCALE} "
          f"(uncond + cond in one batch), cadence 1, colour coherence LAB; {frames} frames per loop, "
          "first 2 are warm-up")
    header = f"{'size':>5}  {'row':<34} {'ms':>10} {'x floor':>8} {'peak GiB':>9}"
    print(header)
    print("-" * len(header))

    def row(size: int, label: str, ms: float, floor: float | None, peak: int | None) -> None:
        ratio = f"{ms / floor:>8.2f}" if floor else f"{'':>8}"
        gib = f"{peak / GiB:>9.2f}" if peak is not None else f"{'-':>9}"
        print(f"{size:>5}  {label:<34} {ms:>10.1f} {ratio} {gib}", flush=True)

    if ns.few_step_only:
        sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        depth = build_depth(device, dtype, tiny, Path(tmp)) if sizes else None
        pipe = None if ns.no_diffusers else diffusers_pipeline(model)
        for size in sizes:
            model.set_vae_tiling(size >= 1024)
            mem: dict = {}
            with peak_memory(device, mem):
                parts = component_times(model, size, repeat)
            floor = t_enc * parts["unet"] + parts["encode"] + parts["decode"]
            row(size, "UNet step (CFG batch 2)", parts["unet"], None, mem["peak"])
            row(size, "VAE encode" + (" (tiled)" if model.vae_tiling else ""), parts["encode"], None, None)
            row(size, "VAE decode" + (" (tiled)" if model.vae_tiling else ""), parts["decode"], None, None)
            row(size, f"floor ({t_enc} x step + encode + decode)", floor, floor, None)
            ours, theirs = img2img_calls(generator, pipe, size)
            with peak_memory(device, mem):
                ms = median_ms(ours, device, max(2, repeat // 3), warmup=1)
            row(size, "Generator img2img call", ms, floor, mem["peak"])
            with peak_memory(device, mem):
                ms = loop_frame_ms(generator, size, "2D", frames, Path(tmp))
            row(size, "2D frame (animation loop)", ms, floor, mem["peak"])
            with peak_memory(device, mem):
                ms = loop_frame_ms(generator, size, "3D", frames, Path(tmp), depth=depth)
            row(size, "3D frame (loop + depth)", ms, floor, mem["peak"])
            if theirs is not None:
                with peak_memory(device, mem):
                    ms = median_ms(theirs, device, max(2, repeat // 3), warmup=1)
                row(size, "diffusers img2img pipeline", ms, floor, mem["peak"])
        if device.type == "cuda" and sizes:
            counts = sync_counts(generator, sizes[0])
            print("CPU-GPU syncs inside one sampling run: "
                  + ", ".join(f"{n} steps -> {count}" for n, count in counts.items())
                  + " (equal counts: none per step)")
    del generator, pipe, depth
    few_step_rows(ns.models_path, device, dtype, repeat, tiny_generator=Generator(model) if tiny else None)
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
