"""deforum.video.interpolate_folder / interpolated_video: frames made between the frames of a folder along the
optical flow (``deforum video FOLDER --interpolate N``)."""

import cv2
import numpy as np
import pytest
from PIL import Image

from deforum import video
from deforum.errors import DeforumError, MediaError
from deforum.outputs import is_ours
from deforum.video import INTERPOLATE_MAX, interpolate_folder, interpolated_video

SIZE = 96


def texture(seed: int = 0) -> np.ndarray:
    noise = cv2.GaussianBlur(np.random.default_rng(seed).random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    return ((noise - noise.min()) / (noise.max() - noise.min()) * 255).round().astype(np.uint8)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved by (dx, dy) (out[y + dy, x + dx] = image[y, x])."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def write_frames(folder, images) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"run_{i:05d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def shift_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dx, dy) that moves ``a`` onto ``b``, by phase correlation (sub-pixel)."""
    gray = [cv2.cvtColor(np.asarray(x, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (a, b)]
    window = cv2.createHanningWindow((SIZE, SIZE), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(gray[0], gray[1], window)
    return np.array([dx, dy])


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("method", ["DIS Medium", "Farneback"])
def test_interpolating_by_two_puts_the_midpoint_between_the_frames(tmp_path, method):
    first = texture(1)
    moves = [(4.0, -2.0), (-3.0, 2.5)]
    frames = [first, shifted(first, *moves[0]), shifted(shifted(first, *moves[0]), *moves[1])]
    paths = write_frames(tmp_path / "in", frames)
    made = interpolate_folder(paths, tmp_path / "out", 2, method)
    assert [p.name for p in made] == [f"{i:05d}.png" for i in range(5)]  # (F - 1) * n + 1
    for k in (0, 2, 4):  # the frames themselves, unchanged
        np.testing.assert_array_equal(read(made[k]), frames[k // 2])
    for k, move in ((1, moves[0]), (3, moves[1])):
        before = frames[k // 2]
        assert np.allclose(shift_between(before, read(made[k])), np.array(move) / 2, atol=0.5), (k, method)
        assert np.allclose(shift_between(before, frames[k // 2 + 1]), move, atol=0.5)  # the measure works
    assert all(is_ours(p, "png") for p in made)


def test_interpolating_by_n_makes_evenly_spaced_frames_from_a_pattern(tmp_path):
    first = texture(2)
    frames = [first, shifted(first, 6.0, 0.0)]
    write_frames(tmp_path / "in", frames)
    made = interpolate_folder(tmp_path / "in" / "run_%05d.png", tmp_path / "out", 3)
    assert len(made) == (2 - 1) * 3 + 1
    for k in (1, 2):
        assert np.allclose(shift_between(first, read(made[k])), [6.0 * k / 3, 0.0], atol=0.5), k


@pytest.mark.parametrize("n", [1, 0, -2, INTERPOLATE_MAX + 1, 10**9, 2.5, True, "3"])
def test_a_bad_n_is_an_error_naming_interpolate(tmp_path, n):
    paths = write_frames(tmp_path / "in", [texture(3), texture(4)])
    with pytest.raises(DeforumError, match="--interpolate") as info:
        interpolate_folder(paths, tmp_path / "out", n)
    assert repr(n) in str(info.value) and f"2 to {INTERPOLATE_MAX}" in str(info.value)
    with pytest.raises(DeforumError, match="--interpolate"):
        interpolated_video(paths, tmp_path / "v.mp4", 12, n)
    assert not (tmp_path / "out").exists() and not (tmp_path / "v.mp4").exists()


def test_a_file_deforum_did_not_write_is_not_overwritten_and_stale_frames_go(tmp_path):
    paths = write_frames(tmp_path / "in", [texture(5), texture(5)])
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "00002.png"
    Image.fromarray(texture(6)).save(foreign)  # not marked as ours
    with pytest.raises(MediaError, match="not written by deforum"):
        interpolate_folder(paths, out, 4)
    assert not (out / "00000.png").exists()  # refused before any frame was written
    foreign.unlink()
    assert len(interpolate_folder(paths, out, 4)) == 5
    assert len(interpolate_folder(paths, out, 2)) == 3
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_the_video_plays_at_fps_times_n_or_keeps_the_fps(tmp_path):
    first = texture(7)
    paths = write_frames(tmp_path / "in", [first, shifted(first, 2, 1), shifted(first, 4, 2)])
    result = interpolated_video(paths, tmp_path / "v.mp4", 12, 3)
    assert result.frame_count == 7 and result.fps == 36
    assert video.count_video_frames(result.mp4_path) == 7
    assert video.probe_video(result.mp4_path, count_frames=False).fps == pytest.approx(36)
    assert len(list((tmp_path / "v_x3").glob("*.png"))) == 7
    slow = interpolated_video(paths, tmp_path / "slow.mp4", 12, 2, keep_fps=True)
    assert slow.fps == 12 and video.count_video_frames(slow.mp4_path) == 5
    with pytest.raises(DeforumError, match="--keep-fps"):
        interpolated_video(paths, tmp_path / "fast.mp4", 800, 2)
