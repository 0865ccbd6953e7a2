"""Motion beyond v0.6 in the 2D/3D render loop: hybrid video (motion and the three composite timings), optical-flow
redo generation, Perlin noise and anti-blur, each seen in the frames and inits a render makes."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import MediaError
from deforum.image.convert import image_to_sample
from deforum.plan import make_plan
from deforum.render import animation
from deforum.render.animation import AnimationLoop, redo_seed
from deforum.render.hybrid_video import HybridVideo
from deforum.render.inputs import RunInputs
from deforum.render.steps import sample_to_float_image
from deforum.runner import preflight
from deforum.settings import RunIdentity
from deforum.testing import settings_for_test
from tests.helpers import measured_shift, shifted, texture, write_video

SIZE = 128
STILL = dict(zoom="0:(1)", angle="0:(0)", translation_x="0:(0)", translation_y="0:(0)", noise_schedule="0:(0)",
             contrast_schedule="0:(1)", strength_schedule="0:(0.5)", color_coherence="None")
DX, DY = 2.5, -1.5  # the video's motion per frame


def settings_of(**overrides):
    values = dict(W=SIZE, H=SIZE, seed=3, animation_mode="2D", max_frames=4, animation_prompts={0: "a"}, **STILL)
    values.update(overrides)
    return settings_for_test(**values)


class Echo:
    """A generator that gives frame 0 a texture and every later key its init (so a frame is its init), and
    records every call."""

    def __init__(self, first=None):
        self.first = texture(SIZE, seed=0) if first is None else first
        self.calls = []

    def __call__(self, row, init, strength, mask=None, overlay=None):
        self.calls.append((row, None if init is None else init.clone()))
        if init is None:
            return image_to_sample(self.first.astype(np.float32), torch.float32)
        return init.clone()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A video of a texture moving (DX, DY) a frame, as extracted frames (PNG files)."""
    folder = tmp_path_factory.mktemp("video")
    base = texture(SIZE, seed=1)
    paths = []
    for i in range(6):
        path = folder / f"{i:05}.png"
        Image.fromarray(shifted(base, DX * i, DY * i)).save(path)
        paths.append(path)
    return paths


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def render(tmp_path, settings, generate, video=None):
    hybrid = HybridVideo(video, settings) if video is not None else None
    loop = AnimationLoop(make_plan(settings, settings.image.seed), settings, RunIdentity("T", tmp_path, 3), generate,
                         background_writes=False, hybrid=hybrid)
    return [read(p) for p in loop.run().frames]


@pytest.mark.parametrize(("motion", "method"), [("Optical Flow", "DIS Medium"), ("Optical Flow", "Farneback"),
                                                ("Perspective", "RAFT"), ("Affine", "RAFT")])
def test_hybrid_motion_moves_the_render_by_the_videos_motion(tmp_path, video, motion, method):
    settings = settings_of(hybrid_motion=motion, hybrid_flow_method=method)
    frames = render(tmp_path, settings, Echo(), video)
    for before, after in zip(frames, frames[1:], strict=False):
        sx, sy = measured_shift(before, after)
        assert abs(sx - DX) < 1 and abs(sy - DY) < 1, (sx, sy)
    still = render(tmp_path / "still", settings_of(), Echo())
    assert all(np.abs(measured_shift(a, b)).max() < 0.3 for a, b in zip(still, still[1:], strict=False))


def test_the_videos_motion_also_moves_the_frames_between_keys(tmp_path, video):
    frames = render(tmp_path, settings_of(hybrid_motion="Perspective", diffusion_cadence="2", max_frames=5),
                    Echo(), video)
    for before, after in zip(frames[1:], frames[2:], strict=False):  # frames 1..4: both keys move with the video
        sx, sy = measured_shift(before, after)
        assert abs(sx - DX) < 1 and abs(sy - DY) < 1, (sx, sy)


def test_normal_composite_blends_the_video_frame_into_each_init(tmp_path, video):
    generate = Echo()
    render(tmp_path, settings_of(hybrid_composite="Normal", hybrid_comp_alpha_schedule="0:(0.25)"), generate, video)
    previous = generate.first.astype(np.float32)  # frame 0; every later frame is its init (Echo), still camera
    for row, init in generate.calls[1:]:
        expected = 0.75 * previous + 0.25 * read(video[row.frame]).astype(np.float32)
        got = sample_to_float_image(init)
        assert np.abs(got - expected).max() <= 1.5 * row.frame, row.frame  # a level of truncation a frame
        previous = got


def test_before_motion_composites_then_moves(tmp_path, video):
    generate = Echo()
    render(tmp_path, settings_of(hybrid_composite="Before Motion", hybrid_motion="Affine",
                                 hybrid_comp_alpha_schedule="0:(1)"), generate, video)
    for row, init in generate.calls[1:]:
        # video frame j, then moved by the video's motion into frame j: where video frame j+1 is
        sx, sy = measured_shift(read(video[row.frame]), sample_to_float_image(init))
        assert abs(sx - DX) < 1 and abs(sy - DY) < 1, (row.frame, sx, sy)


def test_after_generation_blends_the_video_frame_into_the_generated_frame(tmp_path, video):
    grey = np.full((SIZE, SIZE, 3), 100, np.uint8)

    def generate(row, init, strength, mask=None, overlay=None):
        return image_to_sample(grey.astype(np.float32), torch.float32)

    frames = render(tmp_path, settings_of(hybrid_composite="After Generation", hybrid_comp_alpha_schedule="0:(0.5)"),
                    generate, video)
    for j, frame in enumerate(frames):
        expected = 0.5 * 100 + 0.5 * read(video[j]).astype(np.float32)
        assert np.abs(frame.astype(np.float32) - expected).max() <= 1.5, j


def test_alpha_0_and_no_motion_leave_the_render_as_without_hybrid_video(tmp_path, video):
    plain = render(tmp_path / "plain", settings_of(), Echo())
    off = render(tmp_path / "off", settings_of(hybrid_composite="Normal", hybrid_comp_alpha_schedule="0:(0)"),
                 Echo(), video)
    assert all(np.array_equal(a, b) for a, b in zip(plain, off, strict=True))


class RequestGenerator:
    """A ``deforum.generate.Generator`` stand-in: records each request and returns its init (or grey)."""

    def __init__(self):
        self.requests = []

    def generate(self, request):
        self.requests.append(request)
        if request.init_sample is not None:
            return request.init_sample.clone()
        if request.init_image is not None:
            return image_to_sample(np.asarray(request.init_image, np.float32), torch.float32)
        return torch.zeros((1, 3, SIZE, SIZE))


def test_a_render_starts_from_the_videos_first_frame_with_a_composite_on(tmp_path, video):
    settings = settings_of(hybrid_composite="Normal", strength=0.5, max_frames=2)
    generator = RequestGenerator()
    inputs = RunInputs(video=SimpleNamespace(frames=video))
    animation.render_animation(settings, RunIdentity("T", tmp_path, 3), generator, make_plan(settings, 3), inputs,
                               depth=(None, None), device="cpu")
    first = generator.requests[0]
    assert np.array_equal(np.asarray(first.init_image), read(video[0])) and first.strength == 0.5
    unused = settings_of(hybrid_composite="Normal", hybrid_use_first_frame_as_init_image=False, max_frames=2)
    generator = RequestGenerator()
    animation.render_animation(unused, RunIdentity("U", tmp_path, 3), generator, make_plan(unused, 3), inputs,
                               depth=(None, None), device="cpu")
    assert generator.requests[0].init_image is None


def test_preflight_extracts_the_video_of_a_hybrid_2d_run(tmp_path):
    mp4 = write_video(tmp_path / "in.mp4", [shifted(texture(SIZE, 1), DX * i, DY * i) for i in range(5)])
    settings = settings_of(hybrid_motion="Affine", video_init_path=str(mp4), output_path=str(tmp_path / "out"))
    inputs = preflight(settings, RunIdentity("T", tmp_path / "out", 3))
    try:
        assert len(inputs.video.frames) == 5 and all(Path(p).is_file() for p in inputs.video.frames)
    finally:
        inputs.video.release()
    assert preflight(settings_of(), RunIdentity("T", tmp_path / "o2", 3)).video is None  # no hybrid: nothing read
    with pytest.raises(MediaError, match="video_init_path"):
        preflight(settings_of(hybrid_composite="Normal", video_init_path=""), RunIdentity("T", tmp_path / "o3", 3))


# -- optical-flow redo generation ----------------------------------------------------------------------------


class Redo(Echo):
    """The first (scratch) generation of a redo frame moves the init 3 px right; the real one echoes it."""

    def __call__(self, row, init, strength, mask=None, overlay=None):
        sample = super().__call__(row, init, strength, mask, overlay)
        if init is not None and row.seed == redo_seed(self.seed_of[row.frame]):
            return torch.roll(sample, 3, dims=3)
        return sample


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_redo_generation_moves_the_init_along_the_flow_to_the_scratch_image(tmp_path, factor):
    settings = settings_of(optical_flow_redo_generation="DIS Medium", redo_flow_factor_schedule=f"0:({factor})",
                           max_frames=3)
    generate = Redo()
    generate.seed_of = {row.frame: row.seed for row in make_plan(settings, 3).rows}
    render(tmp_path, settings, generate)
    calls = [(row, init) for row, init in generate.calls if init is not None]
    assert len(calls) == 4  # frames 1 and 2, each generated twice
    for (scratch_row, scratch), (row, final) in zip(calls[::2], calls[1::2], strict=True):
        assert scratch_row.seed == redo_seed(row.seed) != row.seed and scratch_row.frame == row.frame
        sx, sy = measured_shift(sample_to_float_image(scratch), sample_to_float_image(final))
        assert abs(sx - 3 * factor) < 0.5 and abs(sy) < 0.5, (sx, sy)


# -- noise type and anti-blur ----------------------------------------------------------------------------------


def inits(tmp_path, **overrides):
    generate = Echo()
    render(tmp_path, settings_of(max_frames=3, **overrides), generate)
    return [init for _, init in generate.calls[1:]]


def test_perlin_noise_shapes_the_noise_of_each_init(tmp_path):
    clean = inits(tmp_path / "clean")
    uniform = inits(tmp_path / "uniform", noise_schedule="0:(0.5)")
    perlin = inits(tmp_path / "perlin", noise_schedule="0:(0.5)", noise_type="perlin", perlin_w=4, perlin_h=2)
    # The same normals, each scaled by (P + 1) / 2 in 0..1: smaller on average, never larger, and not constant.
    noise_u, noise_p = uniform[0] - clean[0], perlin[0] - clean[0]
    ratio = (noise_p / noise_u)[noise_u.abs() > 1e-3]
    assert 0.25 < float(ratio.mean()) < 0.75 and float(ratio.max()) <= 1.0001 and float(ratio.std()) > 0.05
    assert torch.equal(perlin[0], inits(tmp_path / "again", noise_schedule="0:(0.5)", noise_type="perlin",
                                        perlin_w=4, perlin_h=2)[0])


def test_anti_blur_sharpens_each_init(tmp_path):
    def sharpness(sample):
        import cv2

        grey = sample_to_float_image(sample).mean(axis=2).astype(np.float64)
        return float(cv2.Laplacian(grey, cv2.CV_64F).var())

    plain = inits(tmp_path / "plain")
    off = inits(tmp_path / "off", amount_schedule="0:(0)", kernel_schedule="0:(9)")
    sharp = inits(tmp_path / "sharp", amount_schedule="0:(1)", kernel_schedule="0:(5)", sigma_schedule="0:(1)")
    assert all(torch.equal(a, b) for a, b in zip(plain, off, strict=True))
    assert all(sharpness(s) > 1.5 * sharpness(p) for s, p in zip(sharp, plain, strict=True))


# -- Video Input ----------------------------------------------------------------------------------------------


def test_video_input_with_hybrid_video_starts_each_frame_from_the_last_one(tmp_path, video):
    from deforum.render.video_input import VideoFrames, render_input_video

    def run(folder, **overrides):
        settings = settings_of(animation_mode="Video Input", strength=0.5, **overrides)
        inputs = RunInputs(video=VideoFrames(frames=list(video[:4]), mask_frames=None, fps_hint=8.0))
        paths = render_input_video(settings, RunIdentity("T", tmp_path / folder, 3), RequestGenerator(), inputs)
        return [read(p).astype(np.float32) for p in paths]

    plain = run("plain")
    assert all(np.abs(frame - read(video[k])).max() <= 1 for k, frame in enumerate(plain))  # each its video frame
    blended = run("hybrid", hybrid_composite="Normal", hybrid_comp_alpha_schedule="0:(0.5)")
    assert np.abs(blended[0] - read(video[0])).max() <= 1
    for k in range(1, 4):
        expected = 0.5 * blended[k - 1] + 0.5 * read(video[k]).astype(np.float32)
        assert np.abs(blended[k] - expected).max() <= 1.5, k
    moved = run("moved", hybrid_motion="Affine")  # no composite: the first frame, moved as the video moves
    for k in range(1, 4):
        sx, sy = measured_shift(moved[k - 1], moved[k])
        assert abs(sx - DX) < 1 and abs(sy - DY) < 1, (k, sx, sy)


def test_the_preview_shows_the_videos_motion(video):
    from deforum.render.preview import preview_frames

    settings = settings_of(hybrid_motion="Perspective", max_frames=4)
    card = texture(SIZE, seed=0)
    frames = list(preview_frames(card, make_plan(settings, 3), settings, hybrid=HybridVideo(video, settings)))
    assert len(frames) == 4
    for before, after in zip(frames, frames[1:], strict=False):
        sx, sy = measured_shift(before, after)
        assert abs(sx - DX) < 1 and abs(sy - DY) < 1, (sx, sy)


def test_depth_every_n_frames_reuses_the_depth_map_in_between(tmp_path):
    def count_depth(every):
        calls = []

        def depth(image):
            calls.append(image)
            return torch.ones(image.shape[:2])

        settings = settings_of(animation_mode="3D", translation_z="0:(1)", max_frames=7, depth_every=every)
        loop = AnimationLoop(make_plan(settings, 3), settings, RunIdentity("T", tmp_path / str(every), 3), Echo(),
                             depth=depth, background_writes=False)
        loop.run()
        return len(calls)

    assert count_depth(1) == 6  # frames 1..6 each warp a new image
    assert count_depth(2) == 3
    assert count_depth(6) == 1


def test_the_field_tables_choices_are_the_ones_the_steps_take():
    from deforum.image import noise
    from deforum.motion import flow
    from deforum.settings import fields

    assert noise.NOISE_TYPES == fields.NOISE_TYPES
    assert set(fields.FLOW_METHODS) <= set(flow.METHODS)
