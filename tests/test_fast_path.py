"""The fast path: background PNG writer, depth-model offload, no per-step host reads while sampling,
channels-last UNet and SDPA attention."""

import threading
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import MediaError
from deforum.generate import GenerationRequest
from deforum.image.io import BackgroundWriter
from deforum.plan import make_plan
from deforum.render import animation
from deforum.render.animation import AnimationLoop
from deforum.sampling.denoisers import DiscreteSchedule
from deforum.sampling.run import sample
from deforum.settings import SAMPLERS, RunIdentity
from deforum.testing import settings_for_test

# -- background writer ------------------------------------------------------------------------------------


def test_writer_writes_every_frame_in_order_and_reports_finished_tags(tmp_path):
    images = [np.full((8, 8, 3), 30 * i, np.uint8) for i in range(6)]
    with BackgroundWriter(max_pending=2) as writer:
        for i, image in enumerate(images):
            writer.write(image, tmp_path / f"f{i}.png", tag=i)
        finished = writer.done() + writer.flush()
    assert finished == list(range(6))
    for i, image in enumerate(images):
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"f{i}.png")), image)
    assert not list(tmp_path.glob("*.tmp"))


def test_writer_raises_a_failed_write_on_the_next_call_and_drops_the_rest(tmp_path):
    writer = BackgroundWriter()
    writer.write(np.zeros((4, 4, 3), np.float32), tmp_path / "bad.png")  # not uint8: MediaError in the thread
    with pytest.raises(MediaError, match="uint8"):
        writer.flush()
    with pytest.raises(MediaError, match="earlier frame write failed"):
        writer.write(np.zeros((4, 4, 3), np.uint8), tmp_path / "after.png")
    with pytest.raises(MediaError, match="earlier frame write failed"):
        writer.close()
    assert not (tmp_path / "after.png").exists()


def test_writer_queue_is_bounded():
    gate = threading.Event()
    writer = BackgroundWriter(max_pending=1)
    writer.submit(gate.wait)  # running, blocked
    writer.submit(lambda: None)  # fills the queue
    third = threading.Thread(target=writer.submit, args=(lambda: None,))
    third.start()
    third.join(timeout=0.3)
    assert third.is_alive()  # waits for room instead of queueing without bound
    gate.set()
    third.join(timeout=10)
    assert not third.is_alive()
    writer.close()


# -- the animation loop with the writer ---------------------------------------------------------------


def run_loop(folder, background, cadence=2, max_frames=7, on_frame=None, translation_x="0:(3)"):
    settings = settings_for_test(seed=5, W=64, H=64, animation_mode="2D", max_frames=max_frames,
                                 diffusion_cadence=str(cadence), translation_x=translation_x,
                                 color_coherence="None", animation_prompts={0: "a"})
    calls = []

    def generate(row, init, strength, mask=None, overlay=None):
        calls.append(row.frame)
        g = torch.Generator().manual_seed(row.seed)
        return torch.rand((1, 3, 16, 16), generator=g) * 2 - 1

    loop = AnimationLoop(make_plan(settings, 5), settings, RunIdentity("T", folder, 5), generate,
                         on_frame=on_frame, background_writes=background)
    return loop.run(), calls


def test_background_writes_give_the_same_frames_and_on_frame_sees_written_files(tmp_path):
    seen = []
    result, _ = run_loop(tmp_path / "bg", True,
                         on_frame=lambda j, path: seen.append((j, path.is_file())))
    assert seen == [(j, True) for j in range(7)]
    inline, _ = run_loop(tmp_path / "inline", False)
    for ours, theirs in zip(result.frames, inline.frames, strict=True):
        assert np.array_equal(np.asarray(Image.open(ours)), np.asarray(Image.open(theirs))), ours.name


def test_resume_state_is_saved_only_after_its_frames_are_on_disk(tmp_path, monkeypatch):
    real_save = animation.save_state
    checked = []

    def save_state(folder, state, settings):
        written_before_key = range(0, max(0, state.next_key - 2))  # cadence 2: frames before the last key
        checked.append(all(animation.frame_path(tmp_path, "T", j).is_file() for j in written_before_key))
        real_save(folder, state, settings)

    monkeypatch.setattr(animation, "save_state", save_state)
    run_loop(tmp_path, True)
    assert checked and all(checked)


# -- depth model offload ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory):
    from deforum.testing import tiny_depth_model

    return str(tiny_depth_model(tmp_path_factory.mktemp("depth") / "tiny-dpt"))


def spy_moves(model, monkeypatch):
    moves = []
    real_to = model.network.to

    def to(*args, **kwargs):
        moves.append(torch.device(args[0]) if args else kwargs.get("device"))
        return real_to(*args, **kwargs)

    monkeypatch.setattr(model.network, "to", to)
    return moves


@pytest.mark.parametrize("offload, expected", [(True, ["cpu", "cpu"]), (False, [])])
def test_offload_moves_the_depth_network_only_around_each_prediction(tiny_dpt, monkeypatch, offload, expected):
    from deforum.motion.depth import DepthModel

    model = DepthModel(tiny_dpt, offload=offload)
    moves = spy_moves(model, monkeypatch)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = model.predict(image)
    assert depth.shape == (48, 64)
    # to(device) before the forward pass, to(cpu) after: here both are the CPU (no GPU in the tests)
    assert [str(m) for m in moves] == expected
    assert torch.equal(depth, DepthModel(tiny_dpt).predict(image))  # same depth either way


def test_offload_depth_model_field_reaches_the_depth_model(tiny_dpt):
    for offload in (True, False):
        settings = settings_for_test(animation_mode="3D", use_depth_warping=True, save_depth_maps=False,
                                     depth_model=tiny_dpt, midas_weight=1.0, offload_depth_model=offload)
        predict, _ = animation.depth_functions(settings, "cpu")
        assert predict.__self__.offload is offload


# -- sampling: no host reads per step -------------------------------------------------------------------


class CountHostReads:
    """Counts tensor -> Python reads (bool, float, int, item, tolist): each is a GPU sync on CUDA."""

    NAMES = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            real = getattr(torch.Tensor, name)

            def counted(tensor, *args, _real=real, **kwargs):
                self.count += 1
                return _real(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)


class FakeDenoiser:
    """D(x, sigma) = x / (1 + sigma^2), with SD's discrete schedule; reads nothing back."""

    def __init__(self):
        from deforum.models.ldm import linear_alphas_cumprod

        self.schedule = DiscreteSchedule(linear_alphas_cumprod(0.00085, 0.012, 1000))

    def get_sigmas(self, n, **kwargs):
        return self.schedule.get_sigmas(n, **kwargs)

    def __call__(self, x, sigma, **kwargs):
        return x / (1 + sigma[:, None, None, None] ** 2)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpm2", "dpmpp_2m", "dpmpp_2m_sde",
                                     "dpmpp_sde", "ddim", "plms"])
def test_host_reads_do_not_grow_with_the_step_count(monkeypatch, sampler):
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    counts = []
    for steps in (8, 32):
        counter = CountHostReads(monkeypatch)
        out = sample(FakeDenoiser(), sampler, steps, 0.25, init_latent=init, generator=torch.Generator().manual_seed(1))
        counts.append(counter.count)
        monkeypatch.undo()
        assert torch.isfinite(out).all()
    assert counts[0] == counts[1], counts


# -- the model: SDPA attention and channels-last --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from deforum.models.loader import load_model
    from deforum.testing import tiny_checkpoint

    checkpoint, config = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), fmt="safetensors", seed=3)
    return load_model(checkpoint, config, cache=False)


def test_unet_attention_is_pytorch_sdpa(tiny_model):
    assert tiny_model.attention_processors() == {"AttnProcessor2_0"}


def test_channels_last_unet_gives_the_same_prediction(tiny_model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    cond = torch.randn(2, 77, 32, generator=g)
    t = torch.tensor([10.0, 700.0])
    with torch.no_grad():
        before = tiny_model.apply_model(x, t, cond)
        tiny_model.use_channels_last()
        after = tiny_model.apply_model(x, t, cond)
    assert tiny_model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


# -- half precision: fp16 on the CPU exercises the dtype handling CUDA's fp16 path relies on ---------------


@pytest.fixture(scope="module")
def half_pair():
    from deforum.generate import Generator
    from deforum.models.loader import load_model
    from deforum.testing import oracle_checkpoint, oracle_config

    return tuple(Generator(load_model(oracle_checkpoint(), oracle_config(), "cpu", dtype, cache=False))
                 for dtype in (torch.float32, torch.float16))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_float16_model_gives_the_float32_image(half_pair, sampler):
    """Same seeds, noise, sigmas and steps in fp16: txt2img and masked img2img match fp32 to fp16 rounding."""
    full, half = half_pair
    assert half.model.dtype == torch.float16
    rng = np.random.default_rng(0)
    init = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = Image.fromarray(np.where(np.arange(64) < 32, 255, 0).astype(np.uint8)[None].repeat(64, 0))
    for extra in ({}, {"init_image": init, "strength": 0.5, "mask": mask}):
        request = GenerationRequest(seed=1, W=64, H=64, prompt="a cat:1 a dog:-0.5", steps=6, sampler=sampler,
                                    **extra)
        expected, got = full.generate(request), half.generate(request)
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        difference = (got - expected).abs()
        assert difference.mean() < 0.01 and difference.max() < 0.1, (sampler, bool(extra))


def test_a_float16_depth_overflow_is_redone_in_float32_and_kept(tiny_dpt):
    from deforum.motion.depth import MIDAS, DepthModel, _network_forward, prepare_input

    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    expected = DepthModel(tiny_dpt).predict(image)
    model = DepthModel(tiny_dpt, half=True)
    with torch.no_grad():  # the tiny random DPT predicts ~1e6, beyond float16's 65504
        assert not torch.isfinite(_network_forward(model.network, prepare_input(image, MIDAS).half())).all()
    with pytest.warns(UserWarning, match="overflowed in float16"):
        depth = model.predict(image)
    assert torch.equal(depth, expected)
    assert model.dtype == torch.float32 and next(model.network.parameters()).dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(model.predict(image), expected)  # float32 from now on, no second warning
    assert DepthModel(tiny_dpt, half=True).dtype == torch.float16  # a new model starts in float16 again


def test_non_finite_float32_depth_is_a_media_error(tiny_dpt, monkeypatch):
    from deforum.motion import depth as depth_module

    model = depth_module.DepthModel(tiny_dpt)
    monkeypatch.setattr(depth_module, "_network_forward", lambda network, pixels: torch.full((1, 32, 32), np.nan))
    with pytest.raises(MediaError, match="non-finite depth"):
        model.predict(np.zeros((32, 32, 3), np.uint8))


@pytest.mark.parametrize("half_precision, half", [(True, None), (False, False)])
def test_half_precision_field_reaches_the_depth_model(monkeypatch, half_precision, half):
    from deforum.motion import depth as depth_module

    made = []
    monkeypatch.setattr(depth_module, "DepthModel", lambda name, **kwargs: made.append(kwargs) or
                        SimpleNamespace(predict=None))
    settings = settings_for_test(animation_mode="3D", use_depth_warping=True, save_depth_maps=False,
                                 depth_model="midas", midas_weight=1.0, half_precision=half_precision)
    animation.depth_functions(settings, "cuda")
    assert made[0]["half"] is half  # None: float16 on CUDA, as the diffusion model


def test_a_float16_3d_animation_renders_finite_frames(half_pair, tiny_dpt, tmp_path):
    from deforum.motion.depth import DepthModel
    from deforum.render.animation import key_generator

    settings = settings_for_test(W=64, H=64, seed=1, steps=6, sampler="euler_ancestral", strength=0.65,
                                 animation_mode="3D", max_frames=4, diffusion_cadence="2", translation_z="0:(2)",
                                 color_coherence="Match Frame 0 LAB", animation_prompts={0: "a lighthouse"})
    depth = DepthModel(tiny_dpt, half=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "invalid value encountered in cast" (NaN)
        warnings.filterwarnings("ignore", "depth model .* overflowed", UserWarning)
        result = AnimationLoop(make_plan(settings, 1), settings, RunIdentity("half", tmp_path, 1),
                               key_generator(half_pair[1], settings), depth=depth.predict, device="cpu").run()
    frames = [np.asarray(Image.open(path)) for path in result.frames]
    assert len(frames) == 4 and all(frame.std() > 0 for frame in frames)
