"""Video Input mode (spec animation 7, generation 5.7) on the tiny checkpoint and a synthetic video."""

import dataclasses
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from deforum.errors import DeforumError, MediaError, SettingsError
from deforum.generate import Generator
from deforum.image.convert import sample_to_uint8
from deforum.image.io import load_init_image
from deforum.models import load_model
from deforum.plan import FrameRow
from deforum.render.inputs import RunInputs, read_inputs
from deforum.render.steps import generation_request
from deforum.render.video_input import (
    VideoFrames,
    frame_strengths,
    prepare_video_input,
    render_input_video,
)
from deforum.settings import FrameValues, RunIdentity
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test
from tests import helpers

TIMESTRING = "20240102030405"
N_FRAMES = 30
FPS = 24
SEED = 500
PROMPTS = {0: "a red apple", 15: "a yellow banana"}


@pytest.fixture(scope="module")
def generator():
    return Generator(load_model(oracle_checkpoint(), oracle_config()))


def brightness(i: int) -> int:
    return 10 + 8 * i


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    return helpers.write_video(path, frames, FPS)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    source = [np.full((64, 64, 3), brightness(i), np.uint8) for i in range(N_FRAMES)]
    masks = []
    for i in range(N_FRAMES):
        mask = np.zeros((64, 64, 3), np.uint8)
        mask[16:48, i:i + 32] = 255  # a white square moving right, one pixel per frame
        masks.append(mask)
    return write_video(folder / "in.mp4", source), write_video(folder / "mask.mp4", masks)


class Recorder:
    """A Generator stand-in that records every request (its fields as a dict) and forwards it."""

    def __init__(self, generator):
        self.generator = generator
        self.calls = []

    def generate(self, request):
        self.calls.append({f.name: getattr(request, f.name) for f in dataclasses.fields(request)})
        return self.generator.generate(request)


def video_settings(video, *, animation_prompts=None, **overrides):
    """Typed settings of a Video Input run of ``video`` (64 x 64, 5 euler steps, strength 0.9)."""
    values = dict(W=64, H=64, steps=5, sampler="euler", seed=SEED, strength=0.9, mask_overlay_blur=0,
                  animation_mode="Video Input", video_init_path=str(video), extract_nth_frame=1)
    values.update(overrides)
    return settings_for_test(animation_prompts=PROMPTS if animation_prompts is None else animation_prompts,
                             **values)


def identity_for(tmp_path, outdir=None):
    return RunIdentity(TIMESTRING, tmp_path / "out" if outdir is None else outdir, SEED)


def render(settings, identity, generator, frames, **kwargs):
    """The runner's way: the inputs read once, the extracted frames in ``inputs.video``."""
    inputs = dataclasses.replace(read_inputs(settings), video=frames)
    return render_input_video(settings, identity, generator, inputs, **kwargs)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def direct(generator, settings, frame_path, *, seed, prompt, frame, strength, mask_path=None):
    """What one Video Input frame must be: img2img of that video frame with its prompt, seed and mask."""
    init, _ = load_init_image(frame_path, 64, 64)
    mask = Image.open(mask_path) if mask_path else None
    request = dataclasses.replace(generation_request(settings, seed), strength=strength, prompt=prompt,
                                  frame=frame, init_image=init, mask=mask)
    if mask is not None:
        request = dataclasses.replace(request, overlay_mask=True)
    return sample_to_uint8(generator.generate(request))


@pytest.mark.parametrize("nth, with_mask", [(1, False), (3, True)])
def test_video_input_follows_the_video(generator, videos, tmp_path, nth, with_mask):
    video, mask_video = videos
    settings = video_settings(video, extract_nth_frame=nth, use_mask_video=with_mask,
                              video_mask_path=str(mask_video))
    identity = identity_for(tmp_path)
    prepared = prepare_video_input(settings, identity)
    count = len(range(0, N_FRAMES, nth))
    out = tmp_path / "out"
    assert prepared.frames == [out / "inputframes" / f"{i:05}.jpg" for i in range(1, count + 1)]
    assert prepared.source_fps == pytest.approx(FPS)
    assert prepared.fps_hint == pytest.approx(FPS / nth)
    if with_mask:
        assert prepared.mask_frames == [out / "maskframes" / f"{i:05}.jpg" for i in range(1, count + 1)]
    else:
        assert prepared.mask_frames is None

    recorder = Recorder(generator)
    seen = []
    written = render(settings, identity, recorder, prepared, on_frame=lambda k, p: seen.append((k, p)))
    expected = [out / f"{TIMESTRING}_{k:05}.png" for k in range(count)]
    assert written == expected and [p for _, p in seen] == expected
    assert all(p.is_file() for p in expected)

    # Seeds iterate per frame, prompts follow their keys, every frame is img2img at strength 0.9.
    assert [c["seed"] for c in recorder.calls] == [SEED + k for k in range(count)]
    assert [c["prompt"] for c in recorder.calls] == [
        PROMPTS[15] if k >= 15 else PROMPTS[0] for k in range(count)]
    assert {c["strength"] for c in recorder.calls} == {0.9}

    # The extracted frames are video frames 0, n, 2n, ... (their brightness says which).
    source = [read(p).mean() for p in prepared.frames]
    assert source == pytest.approx([brightness(k * nth) for k in range(count)], abs=3)

    # The output follows the video: frame k is exactly the img2img of video frame k (and mask frame k),
    # and differs from the img2img of another video frame with the same seed and prompt. (The tiny model's
    # random VAE does not carry brightness through, so a brightness correlation would test the weights.)
    for k in (0, count - 1):
        mask_path = prepared.mask_frames[k] if with_mask else None
        same = dict(seed=SEED + k, prompt=recorder.calls[k]["prompt"], frame=k, strength=0.9,
                    mask_path=mask_path)
        output = read(written[k])
        assert np.array_equal(output, direct(generator, settings, prepared.frames[k], **same))
        other = prepared.frames[count - 1 - k]
        assert np.abs(output.astype(int) - direct(generator, settings, other, **same)).mean() > 0.5


def test_mask_video_overlay_follows_the_mask_and_the_video(generator, videos, tmp_path):
    """Under the white part of mask frame k, output k is video frame k (the overlay mask moves, #9 fixed)."""
    video, mask_video = videos
    settings = video_settings(video, strength=0.3, extract_nth_frame=10, use_mask_video=True,
                              video_mask_path=str(mask_video))
    identity = identity_for(tmp_path)
    prepared = prepare_video_input(settings, identity)
    assert len(prepared.frames) == 3 and len(prepared.mask_frames) == 3
    written = render(settings, identity, generator, prepared)
    kept_regions = []
    for k, path in enumerate(written):
        mask = read(prepared.mask_frames[k])[..., 0]
        kept = mask == mask.max()  # the overlay mask binarises to the mask's maximum (blur 0 here)
        source = read(prepared.frames[k]).astype(int)
        output = read(path).astype(int)
        assert kept.sum() > 200
        assert np.abs(output[kept] - source[kept]).max() <= 1
        assert np.abs(output[~kept] - source[~kept]).mean() > 5  # the rest is regenerated
        kept_regions.append(kept)
    assert not np.array_equal(kept_regions[0], kept_regions[-1])


def test_strength_zero_uses_the_strength_schedule(generator, videos, tmp_path):
    video, _ = videos
    settings = video_settings(video, strength=0.0, extract_nth_frame=10, strength_schedule="0:(0.2), 2:(0.6)",
                              animation_prompts={0: "a cat"})
    identity = identity_for(tmp_path)
    prepared = prepare_video_input(settings, identity)
    recorder = Recorder(generator)
    render(settings, identity, recorder, prepared)
    assert [c["strength"] for c in recorder.calls] == pytest.approx([0.2, 0.4, 0.6])
    assert all(c["init_image"] is not None for c in recorder.calls)


def rows(*strengths):
    zero = FrameValues(**{f.name: 0.0 for f in dataclasses.fields(FrameValues)})
    return [FrameRow(k, "p", k, "video", dataclasses.replace(zero, strength_schedule=s))
            for k, s in enumerate(strengths)]


@pytest.mark.parametrize("strength, schedule, expected, source", [
    (0.5, (0.1, 0.9), [0.5, 0.5], "strength"),  # v0.6: the global strength for every frame
    (1.0, (0.1,), [1.0], "strength"),
    (0.0, (0.1, 0.9), [0.1, 0.9], "strength_schedule"),  # v0.6 used 0 here and ignored the video
    (0.0, (-0.5, 1.5), [0.0, 1.0], "strength_schedule"),  # clamped like the 2D/3D strength
])
def test_frame_strengths(strength, schedule, expected, source):
    assert frame_strengths(settings_for_test(strength=strength), rows(*schedule)) == (expected, source)


def test_reuses_frames_of_the_same_video_only(videos, tmp_path):
    video, mask_video = videos
    identity = identity_for(tmp_path)
    first = prepare_video_input(video_settings(video, extract_nth_frame=3), identity)
    stamps = [p.stat().st_mtime_ns for p in first.frames]
    again = prepare_video_input(video_settings(video, extract_nth_frame=3, overwrite_extracted_frames=False),
                                identity)
    assert again.frames == first.frames and [p.stat().st_mtime_ns for p in again.frames] == stamps
    other = prepare_video_input(video_settings(mask_video, extract_nth_frame=3, overwrite_extracted_frames=False),
                                identity)
    assert read(other.frames[0]).max() > 200  # re-extracted from the mask video, not the old frames


def zero_frame_video(path: Path) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=64x64:d=1:r=10", "-frames:v", "0", "-c:v", "libx264", str(path)],
                   check=True)
    return path


@pytest.mark.parametrize("case, error, message", [
    ("missing video", MediaError, "video_init_path.*does not exist"),
    ("text file named .mp4", MediaError, "video_init_path.*not a video"),
    ("zero frames", MediaError, "video_init_path.*(no video stream|no frames)"),
    ("outdir under a regular file", MediaError, "outdir.*cannot write"),
    ("missing mask video", MediaError, "video_mask_path.*does not exist"),
    ("mask video shorter than the video", MediaError, "video_mask_path.*at least as many"),
    ("extract_nth_frame 0", SettingsError, "extract_nth_frame"),
])
def test_bad_inputs_fail_before_any_diffusion(videos, tmp_path, case, error, message):
    video, mask_video = videos
    outdir = tmp_path / "out"
    anim = dict(video_init_path=str(video))
    if case == "missing video":
        anim["video_init_path"] = str(tmp_path / "nope.mp4")
    elif case == "text file named .mp4":
        fake = tmp_path / "notes.mp4"
        fake.write_text("this is not a video\n" * 20)
        anim["video_init_path"] = str(fake)
    elif case == "zero frames":
        anim["video_init_path"] = str(zero_frame_video(tmp_path / "empty.mp4"))
    elif case == "outdir under a regular file":
        (tmp_path / "file").write_text("x")
        outdir = tmp_path / "file" / "out"
    elif case == "missing mask video":
        anim.update(use_mask_video=True, video_mask_path=str(tmp_path / "nope.mp4"))
    elif case == "mask video shorter than the video":
        short = write_video(tmp_path / "short.mp4", [np.zeros((64, 64, 3), np.uint8)] * 5)
        anim.update(use_mask_video=True, video_mask_path=str(short))
    elif case == "extract_nth_frame 0":
        anim["extract_nth_frame"] = 0
    with pytest.raises(error, match=message) as caught:  # settings errors are raised while resolving them
        prepare_video_input(video_settings(video, **anim), identity_for(tmp_path, outdir))
    assert isinstance(caught.value, DeforumError)
    if case != "mask video shorter than the video":  # that one is known only after extracting
        assert not (tmp_path / "out" / "inputframes").exists()  # nothing extracted before the check failed


def test_render_refuses_missing_frames(generator, tmp_path):
    class Refuse:
        calls = []

        def generate(self, request):
            self.calls.append(request)

    video = VideoFrames(frames=[tmp_path / "00001.jpg"], mask_frames=None, fps_hint=12.0)
    stand_in = Refuse()
    with pytest.raises(MediaError, match="missing"):
        render_input_video(video_settings("x.mp4", animation_prompts={0: "a"}), identity_for(tmp_path), stand_in,
                           RunInputs(video=video))
    assert stand_in.calls == []


def test_a_video_with_more_frames_than_allowed_is_refused_before_extracting(videos, tmp_path, monkeypatch):
    """The frame limit holds for the frames a video gives too (max_frames comes from the video)."""
    import deforum.render.video_input as video_input

    video, _ = videos
    limit = -(-N_FRAMES // 3) - 1  # one fewer than extract_nth_frame=3 gives
    monkeypatch.setattr(video_input, "MAX_FRAMES_LIMIT", limit)
    with pytest.raises(MediaError, match=rf"video_init_path: .* has {N_FRAMES} frames, so extract_nth_frame=3 "
                                         rf"gives {limit + 1} frames to render; at most {limit} are allowed"):
        prepare_video_input(video_settings(video, extract_nth_frame=3), identity_for(tmp_path))
    assert not (tmp_path / "out" / "inputframes").exists()
    monkeypatch.setattr(video_input, "MAX_FRAMES_LIMIT", limit + 1)
    prepared = prepare_video_input(video_settings(video, extract_nth_frame=3), identity_for(tmp_path))
    assert len(prepared.frames) == limit + 1
