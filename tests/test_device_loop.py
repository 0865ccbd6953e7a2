"""The device-resident frame loop (issue 27): the host loop's frames, one host read per saved frame, resume,
and the choice between the two loops."""

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import FrameError, SettingsError
from deforum.plan import make_plan
from deforum.render import device_loop
from deforum.render.animation import AnimationLoop
from deforum.render.device_loop import DeviceAnimationLoop, device_loop_unsupported, use_device_loop
from deforum.render.resume import load_state, shaping_settings, state_dir
from deforum.settings import RunIdentity
from deforum.testing import settings_for_test

SIZE = 64
MOTION_2D = dict(angle="0:(2.5)", zoom="0:(1.04)", translation_x="0:(2.3)", translation_y="0:(-1.6)")
MOTION_3D = dict(translation_x="0:(1.5)", translation_z="0:(4)", rotation_3d_y="0:(1.2)", rotation_3d_z="0:(0.8)")


def make_settings(mode="2D", cadence=1, color="Match Frame 0 LAB", border="replicate", frames=5, **extra):
    values = dict(seed=7, W=SIZE, H=SIZE, animation_mode=mode, max_frames=frames, diffusion_cadence=str(cadence),
                  color_coherence=color, border=border, noise_schedule="0:(0.03)", contrast_schedule="0:(0.98)",
                  strength_schedule="0:(0.6)", **(MOTION_2D if mode == "2D" else MOTION_3D))
    return settings_for_test(animation_prompts={0: "a"}, **(values | extra))


def fake_generate(calls=None, steps=4):
    """A key generator that depends on its init, mask and kept image (so the chain is compared), contracts
    differences, and runs ``steps`` device ops without reading anything back."""

    def generate(row, init, strength, mask=None, overlay=None):
        if calls is not None:
            calls.append(row.frame)
        g = torch.Generator().manual_seed(row.seed)
        base = torch.rand((1, 3, SIZE, SIZE), generator=g) * 2 - 1
        if init is None:
            return base
        device = init.device
        out = init.float() * 0.75 + base.to(device) * 0.25
        for _ in range(steps):
            out = out * 0.999 + 0.0005
        if mask is not None:
            keep = torch.from_numpy(np.asarray(mask)).to(device).float()[None, None] / 255.0
            out = out * keep + base.to(device) * (1 - keep)
        if overlay is not None:
            kept = torch.from_numpy(np.asarray(overlay)).to(device).permute(2, 0, 1)[None] / 127.5 - 1
            out = out * 0.9 + kept * 0.1
        return out

    return generate


def fake_depth(image):
    """Depth from the image (numpy or tensor), larger where brighter: both loops get the same map."""
    pixels = torch.as_tensor(image).float()
    return 1.5 + pixels.mean(-1) / 255.0


def mask_of(size=SIZE):
    mask = np.zeros((size, size), np.uint8)
    mask[:, : size // 2] = 255
    return mask


def render(loop_class, settings, folder, mask=None, depth=None, save_depth=None, generate=None, **kwargs):
    identity = RunIdentity("T", folder, 7)
    loop = loop_class(make_plan(settings, 7), settings, identity, generate or fake_generate(), depth=depth,
                      save_depth=save_depth, mask=mask, **kwargs)
    return loop.run()


def frames_of(result):
    return [np.asarray(Image.open(path)).astype(int) for path in result.frames]


def assert_within_one_level(settings, tmp_path, **kwargs):
    host = frames_of(render(AnimationLoop, settings, tmp_path / "host", **kwargs))
    dev = frames_of(render(DeviceAnimationLoop, settings, tmp_path / "device", **kwargs))
    assert len(host) == len(dev) == settings.animation.max_frames
    for j, (a, b) in enumerate(zip(host, dev, strict=True)):
        assert np.abs(a - b).max() <= 1, f"frame {j}: {np.abs(a - b).max()} levels"
    return host, dev


# -- the frames -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["None", "Match Frame 0 RGB", "Match Frame 0 HSV", "Match Frame 0 LAB"])
@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_each_colour_mode_gives_the_host_frames(tmp_path, mode, color):
    depth = fake_depth if mode == "3D" else None
    host, _ = assert_within_one_level(make_settings(mode, color=color, use_depth_warping=True), tmp_path,
                                      depth=depth)
    assert all(frame.std() > 0 for frame in host)


@pytest.mark.parametrize("border", ["wrap", "replicate"])
@pytest.mark.parametrize("cadence", [1, 3])
def test_2d_borders_and_cadence_give_the_host_frames(tmp_path, border, cadence):
    assert_within_one_level(make_settings("2D", cadence=cadence, border=border, frames=7), tmp_path)


@pytest.mark.parametrize("cadence", [1, 3])
@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_masks_give_the_host_frames(tmp_path, mode, cadence):
    settings = make_settings(mode, cadence=cadence, frames=7, use_depth_warping=True)
    assert_within_one_level(settings, tmp_path, mask=mask_of(), depth=fake_depth if mode == "3D" else None)


def test_3d_cadence_3_with_depth_maps_gives_the_host_frames_and_maps(tmp_path):
    from deforum.motion.depth import save_depth_map

    settings = make_settings("3D", cadence=3, frames=7, use_depth_warping=True, save_depth_maps=True)
    assert_within_one_level(settings, tmp_path, depth=fake_depth, save_depth=save_depth_map)
    for j in range(7):
        name = f"T_depth_{j:05}.png"
        host = np.asarray(Image.open(tmp_path / "host" / name)).astype(int)
        dev = np.asarray(Image.open(tmp_path / "device" / name)).astype(int)
        assert np.abs(host - dev).max() <= 1, name


def test_perspective_flip_gives_the_host_frames(tmp_path):
    settings = make_settings("2D", cadence=3, frames=6, flip_2d_perspective=True,
                             perspective_flip_theta="0:(3)", perspective_flip_phi="0:(2)")
    assert_within_one_level(settings, tmp_path)


def test_the_device_init_sample_is_the_host_one():
    from deforum.render import steps

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    host = steps.init_sample(image, 1.1, 0.2, torch.Generator().manual_seed(3))
    dev = device_loop.init_sample_torch(torch.from_numpy(image), 1.1, 0.2, torch.Generator().manual_seed(3))
    assert host.dtype == dev.dtype == torch.float32
    torch.testing.assert_close(dev, host, rtol=0, atol=0)


# -- host reads ---------------------------------------------------------------------------------------------


class CountHostReads:
    """Counts what crosses from a tensor to the host: the loop's packed copies (``host_copy``), ``.cpu()``,
    ``.numpy()`` of a tensor that is not such a copy, and Python scalar reads (each a GPU sync on CUDA)."""

    SCALARS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")

    def __init__(self, monkeypatch):
        self.count = 0
        real_copy = device_loop.host_copy

        def counted_copy(packed):
            self.count += 1
            return real_copy(packed)

        monkeypatch.setattr(device_loop, "host_copy", counted_copy)
        for name in self.SCALARS + ("cpu",):
            real = getattr(torch.Tensor, name)

            def counted(tensor, *args, _real=real, **kwargs):
                self.count += 1
                return _real(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_one_host_read_per_saved_frame_whatever_the_frame_and_step_count(tmp_path, monkeypatch, mode):
    counts = {}
    for frames in (4, 7):
        for steps in (2, 12):
            settings = make_settings(mode, cadence=1, frames=frames, use_depth_warping=True,
                                     color="Match Frame 0 RGB")
            # the 3D camera's 3x3 rotation is built on the host from the schedule values and read with
            # tolist; it never touches the device, so it is counted out here
            counter = CountHostReads(monkeypatch)
            if mode == "3D":
                warp3d = importlib.import_module("deforum.motion.warp3d")  # the package exports the function
                monkeypatch.setattr(warp3d, "rotation_matrix",
                                    lambda *a, _real=warp3d.rotation_matrix, **k: _real(*a, **k).numpy())
            render(DeviceAnimationLoop, settings, tmp_path / f"{frames}-{steps}", background_writes=False,
                   generate=fake_generate(steps=steps), depth=fake_depth if mode == "3D" else None)
            counts[frames, steps] = counter.count
            monkeypatch.undo()
    assert counts == {(4, 2): 4, (4, 12): 4, (7, 2): 7, (7, 12): 7}


# -- resume and errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, masked", [("2D", False), ("3D", True)])
def test_resume_continues_a_device_run_with_the_same_frames(tmp_path, mode, masked):
    settings = make_settings(mode, cadence=2, frames=9, color="Match Frame 0 HSV", use_depth_warping=True)
    extra = dict(mask=mask_of() if masked else None, depth=fake_depth if mode == "3D" else None)
    whole = frames_of(render(DeviceAnimationLoop, settings, tmp_path / "whole", **extra))
    good = fake_generate()

    def stop_at_key_6(row, *args, **kwargs):
        if row.frame == 6:
            raise KeyboardInterrupt
        return good(row, *args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        render(DeviceAnimationLoop, settings, tmp_path / "part", generate=stop_at_key_6, **extra)
    folder = state_dir(tmp_path / "part", "T")
    shaping = shaping_settings(settings, RunIdentity("T", tmp_path / "part", 7))
    saved = load_state(folder, shaping, width=SIZE, height=SIZE, max_frames=9, cadence=2)
    # key 4's state rides with frame 4's copy, saved once frame 4 is on disk; frame 5 was still in flight
    assert saved.next_key == 6 and saved.next_idx == 4 and saved.prev_idx == 3  # key 2 was warped up to 3
    assert saved.color_ref is not None and (saved.mask_img is not None) is masked
    assert sorted(p.name for p in (tmp_path / "part").glob("T_0*.png")) == [f"T_{j:05}.png" for j in range(5)]
    loop = DeviceAnimationLoop(make_plan(settings, 7), settings, RunIdentity("T", tmp_path / "part", 7),
                               fake_generate(), **extra)
    resumed = frames_of(loop.run(resume=True))
    for j, (a, b) in enumerate(zip(whole, resumed, strict=True)):
        assert np.array_equal(a, b), j
    assert load_state(folder, shaping, width=SIZE, height=SIZE, max_frames=9, cadence=2).complete


def test_a_non_finite_key_stops_the_run_naming_it_with_the_frames_before_it_on_disk(tmp_path):
    settings = make_settings("2D", cadence=1, frames=6)
    good = fake_generate()

    def generate(row, *args):
        sample = good(row, *args)
        return sample * float("nan") if row.frame == 3 else sample

    with pytest.raises(FrameError, match="frame 3: the generated image is not finite"):
        render(DeviceAnimationLoop, settings, tmp_path, generate=generate)
    written = sorted(p.name for p in tmp_path.glob("T_*.png"))
    assert written == [f"T_{j:05}.png" for j in range(3)]
    saved = load_state(state_dir(tmp_path, "T"), shaping_settings(settings, RunIdentity("T", tmp_path, 7)),
                       width=SIZE, height=SIZE, max_frames=6)
    assert saved.next_key == 3 and np.isfinite(saved.next_img).all()  # the state of key 2, never key 3's


# -- which loop ---------------------------------------------------------------------------------------------


def test_use_device_loop_follows_frame_loop_and_the_device():
    assert use_device_loop(make_settings(), "cuda") is True
    assert use_device_loop(make_settings(), "cpu") is False
    assert use_device_loop(make_settings(frame_loop="device"), "cpu") is True
    assert use_device_loop(make_settings(frame_loop="host"), "cuda") is False


@pytest.mark.parametrize("field, value, reason", [
    ("kernel_schedule", "0:(201)", "kernel_schedule"),  # with amount_schedule on (below): wider than the frame
    ("hybrid_motion", "Perspective", "hybrid_motion"),
    ("hybrid_composite", "Normal", "hybrid_composite"),
    ("optical_flow_cadence", "DIS Fine", "optical_flow_cadence"),
    ("optical_flow_redo_generation", "DIS Fine", "optical_flow_redo_generation"),
])
def test_features_of_the_host_loop_keep_auto_on_the_host(field, value, reason):
    settings = make_settings(amount_schedule="0:(0.5)", **{field: value})
    assert reason in device_loop_unsupported(settings)
    assert use_device_loop(settings, "cuda") is False
    with pytest.raises(SettingsError, match=reason):
        use_device_loop(make_settings(frame_loop="device", amount_schedule="0:(0.5)", **{field: value}), "cuda")


@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_perlin_noise_and_anti_blur_give_the_host_frames(tmp_path, mode):
    settings = make_settings(mode, cadence=1, frames=6, use_depth_warping=True, noise_type="perlin", perlin_w=3,
                             perlin_h=2, noise_schedule="0:(0.2)", amount_schedule="0:(0.8), 3:(0)",
                             kernel_schedule="0:(5), 4:(9)", sigma_schedule="0:(1.5)", threshold_schedule="0:(2)")
    assert device_loop_unsupported(settings) is None
    assert_within_one_level(settings, tmp_path, depth=fake_depth if mode == "3D" else None)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize(("amount", "kernel", "sigma", "threshold"),
                         [(0.5, 5, 1.0, 0), (1.5, 8, 0, 4), (0.3, 3, 2.5, 0)])
def test_the_torch_unsharp_mask_is_opencvs(dtype, amount, kernel, sigma, threshold):
    from deforum.image.sharpen import unsharp_mask
    from deforum.render.device_loop import unsharp_mask_torch

    image = np.random.default_rng(3).uniform(0, 255, (24, 40, 3))
    image = image.astype(np.uint8) if dtype == torch.uint8 else image.astype(np.float32)
    ours = unsharp_mask_torch(torch.from_numpy(image), amount, kernel, sigma, threshold).numpy()
    theirs = unsharp_mask(image, amount, kernel, sigma, threshold)
    assert ours.dtype == theirs.dtype
    assert np.abs(ours.astype(np.float64) - theirs).max() <= (1 if dtype == torch.uint8 else 1e-3)


def test_depth_every_reuses_the_map_between_predictions(tmp_path):
    predicted = []

    def depth(image):
        predicted.append(1)
        return fake_depth(image)

    settings = make_settings("3D", cadence=1, frames=7, use_depth_warping=True)
    render(DeviceAnimationLoop, settings, tmp_path / "every1", depth=depth)
    every_frame = len(predicted)
    predicted.clear()
    every3 = make_settings("3D", cadence=1, frames=7, use_depth_warping=True, depth_every=3)
    render(DeviceAnimationLoop, every3, tmp_path / "every3", depth=depth)
    assert every_frame == 6 and len(predicted) == 2  # as the host loop: frames 1 and 4


@pytest.mark.parametrize("kind", ["dpt", "depth_anything"])
def test_depth_of_a_device_frame_is_the_depth_of_the_host_frame(tmp_path, kind):
    from deforum.motion.depth import DepthModel
    from deforum.testing import tiny_depth_model

    model = DepthModel(str(tiny_depth_model(tmp_path / kind, kind=kind)))
    image = np.random.default_rng(5).integers(0, 256, (SIZE, 80, 3), dtype=np.uint8)
    host, dev = model.predict(image), model.predict(torch.from_numpy(image))
    assert dev.shape == host.shape == (SIZE, 80)
    # torch's bicubic resize instead of OpenCV's: the same kernel, float rounding apart
    torch.testing.assert_close(dev, host, rtol=0, atol=1e-4 * float(host.abs().max()))


def test_compiled_taesd_gives_the_same_latents_and_images():
    from diffusers import AutoencoderTiny

    from deforum.models.taesd import TinyVAE, compile_tiny_vae

    torch.manual_seed(0)
    taesd = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8)).eval()
    vae = TinyVAE(taesd, 0.18215)
    image, z = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        latent, decoded = vae.encode(image).latent_dist.parameters, vae.decode(z).sample
        compile_tiny_vae(vae, backend="eager")  # the wiring; inductor needs a compiler and minutes on a CPU
        assert taesd.encoder._compiled_call_impl is not None and taesd.decoder._compiled_call_impl is not None
        torch.testing.assert_close(vae.encode(image).latent_dist.parameters, latent)
        torch.testing.assert_close(vae.decode(z).sample, decoded)


@pytest.mark.parametrize("mode", ["2D", "3D"])
def test_the_runner_renders_in_the_loop_frame_loop_names(tiny, tmp_path, monkeypatch, mode):
    from helpers import root_for

    from deforum.render import device_loop as device_loop_module
    from deforum.runner import render as run

    used = []
    real = device_loop_module.loop_class_for
    monkeypatch.setattr(device_loop_module, "loop_class_for", lambda s, d: used.append(real(s, d)) or used[-1])
    args = dict(W=64, H=64, seed=5, steps=2, sampler="euler", scale=7.5)
    frames = {}
    for choice in ("host", "device"):
        anim = {"animation_mode": mode, "max_frames": 3, "translation_x": "0:(2)", "frame_loop": choice,
                "use_depth_warping": False}
        result = run(args, anim, None, {0: "a red apple"}, root_for(tiny, tmp_path / choice), progress=False)
        frames[choice] = [np.asarray(Image.open(p)).astype(int) for p in result.frames]
    assert [c.__name__ for c in used] == ["AnimationLoop", "DeviceAnimationLoop"]
    assert len(frames["device"]) == 3
    for host, device in zip(frames["host"], frames["device"], strict=True):
        assert np.abs(host - device).max() <= 1
