"""Video I/O: probing, frame extraction (Video Input mode) and the video cell (spec 7, 10.7).

Every test here runs with the default ffmpeg (imageio-ffmpeg's, as installed) and again with each other
ffmpeg build that an allowed imageio-ffmpeg release bundles (tests/data/imageio_ffmpeg_versions.txt;
fetched by scripts/fetch-ffmpeg.sh), so a version difference in ffmpeg's output or options shows up here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageSequence

from deforum.errors import MediaError, SettingsError
from deforum.outputs import is_ours
from deforum.video import (
    MANIFEST_NAME,
    Mp4Writer,
    audio_duration,
    count_packets,
    count_video_frames,
    extract_frames,
    ffmpeg_exe,
    frames_from_pattern,
    make_video,
    probe_video,
    read_video_frames,
    video_cell,
    video_duration,
    video_html,
)

GREY_STEP = 8  # frame i of a synthetic video is a flat grey of level i * GREY_STEP
TOLERANCE = 3  # grey levels lost to yuv420p / jpeg round trips


def grey_frame(level: int, width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), level, np.uint8)


def write_video(path: Path, levels: list[int], fps: float = 10, size: tuple[int, int] = (48, 32)) -> Path:
    """A video written by imageio-ffmpeg itself (independent of deforum.video)."""
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, quality=10, macro_block_size=16)
    writer.send(None)
    for level in levels:
        writer.send(grey_frame(level, *size))
    writer.close()
    return path


def write_pngs(folder: Path, name: str, levels: list[int], size: tuple[int, int],
               start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, level in enumerate(levels):
        path = folder / (name % (start + i))
        Image.fromarray(grey_frame(level, *size)).save(path)
        paths.append(path)
    return paths


def mean_levels(images) -> list[float]:
    return [float(np.asarray(im).mean()) for im in images]


def assert_levels(actual: list[float], expected: list[int]) -> None:
    assert len(actual) == len(expected)
    assert np.allclose(actual, expected, atol=TOLERANCE), (actual, expected)


# --------------------------------------------------------------------------------------------------
# The ffmpeg builds of the allowed imageio-ffmpeg releases

REPO = Path(__file__).resolve().parents[1]
VERSIONS_FILE = Path(__file__).parent / "data" / "imageio_ffmpeg_versions.txt"
FETCH_SCRIPT = "scripts/fetch-ffmpeg.sh"
VERSIONS_DIR_ENV = "DEFORUM_FFMPEG_VERSIONS_DIR"  # also honoured by the fetch script


def _listed_versions() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in VERSIONS_FILE.read_text().splitlines())
    return [line for line in lines if line]


FFMPEG_VERSIONS = _listed_versions()


def _version_key(version: str) -> tuple[int, ...]:
    """'0.6' and '0.6.0' compare equal; only plain release numbers are expected in the list."""
    parts = [int(part) for part in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def released_ffmpeg_path(version: str) -> Path:
    """Where scripts/fetch-ffmpeg.sh puts the ffmpeg bundled with imageio-ffmpeg `version`."""
    root = os.environ.get(VERSIONS_DIR_ENV) or REPO / ".cache" / "ffmpeg"
    return Path(root) / version / "ffmpeg"


def released_ffmpeg(version: str) -> Path:
    """The fetched binary of `version`; a test fails (never skips) when it has not been fetched."""
    exe = released_ffmpeg_path(version)
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        pytest.fail(f"no ffmpeg binary of imageio-ffmpeg {version} at {exe}: run `bash {FETCH_SCRIPT}` "
                    f"(it fetches every version in {VERSIONS_FILE.relative_to(REPO)}; set {VERSIONS_DIR_ENV} "
                    "for another folder)")
    return exe


def _build_of(exe: str | Path) -> str:
    """The first line of `ffmpeg -version`: which ffmpeg build a binary is."""
    try:
        proc = subprocess.run([str(exe), "-hide_banner", "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unusable {exe}: {exc}"
    return (proc.stdout.decode("utf-8", "replace").splitlines() or [f"silent {exe}"])[0]


def _ffmpeg_builds() -> list[tuple[str, Path | None]]:
    """("default", None) plus one (label, binary) per fetched release whose ffmpeg build differs from
    the default's and from those before it (0.6.0 and 0.7.0 both bundle ffmpeg 7.0.2, for instance).
    Versions not fetched are left out here; test_each_allowed_imageio_ffmpeg_makes_and_counts_videos
    fails for them."""
    builds: list[tuple[str, Path | None]] = [("default", None)]
    seen = {_build_of(imageio_ffmpeg.get_ffmpeg_exe())}
    for version in FFMPEG_VERSIONS:
        exe = released_ffmpeg_path(version)
        if exe.is_file():
            build = _build_of(exe)
            if build not in seen:
                seen.add(build)
                builds.append((f"imageio-ffmpeg-{version}", exe))
    return builds


FFMPEG_BUILDS = _ffmpeg_builds()


ONE_BUILD = {"test_listed_versions_start_at_the_pyproject_floor"}  # runs no ffmpeg


def pytest_generate_tests(metafunc):
    """Run each test of this file once per distinct ffmpeg build (module scope: one build at a time);
    not those that pick a release themselves (`version`) or run no ffmpeg."""
    if ("ffmpeg_build" in metafunc.fixturenames and "version" not in metafunc.fixturenames
            and metafunc.function.__name__ not in ONE_BUILD):
        metafunc.parametrize("ffmpeg_build", [exe for _, exe in FFMPEG_BUILDS], indirect=True,
                             scope="module", ids=[label for label, _ in FFMPEG_BUILDS])


@pytest.fixture(scope="module", autouse=True)
def ffmpeg_build(request):
    """Point imageio-ffmpeg (and so deforum.video) at the build under test through IMAGEIO_FFMPEG_EXE."""
    exe = getattr(request, "param", None)
    with pytest.MonkeyPatch.context() as mp:
        if exe is not None:
            mp.setenv("IMAGEIO_FFMPEG_EXE", str(exe))
        yield exe


@pytest.fixture(scope="module")
def video30(tmp_path_factory, ffmpeg_build) -> Path:
    folder = tmp_path_factory.mktemp("video30")
    return write_video(folder / "thirty.mp4", [i * GREY_STEP for i in range(30)], fps=10)


# --------------------------------------------------------------------------------------------------
# probe_video / reading back


def test_probe_reports_fps_size_and_frame_count(video30):
    info = probe_video(video30)
    assert (info.fps, info.frame_count, info.width, info.height) == (10.0, 30, 48, 32)
    assert info.output_fps(3) == pytest.approx(10 / 3)
    assert probe_video(video30, count_frames=False).frame_count is None


def test_read_video_frames_follow_the_source(video30):
    frames = read_video_frames(video30)
    assert frames[0].shape == (32, 48, 3)
    assert_levels(mean_levels(frames), [i * GREY_STEP for i in range(30)])
    assert count_video_frames(video30) == 30


def test_rotated_video_reports_the_displayed_size(video30, tmp_path):
    """A phone video stored 48x32 with a 90-degree display rotation is decoded (and extracted) as 32x48."""
    rotated = tmp_path / "rotated.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-display_rotation", "90",
                    "-i", str(video30), "-c", "copy", str(rotated)], check=True, capture_output=True)
    info = probe_video(rotated)
    assert (info.width, info.height, info.frame_count) == (32, 48, 30)
    assert read_video_frames(rotated)[0].shape == (48, 32, 3)
    assert Image.open(extract_frames(rotated, tmp_path / "frames", 10)[0]).size == (32, 48)


# --------------------------------------------------------------------------------------------------
# extract_frames


@pytest.mark.parametrize("nth, indices", [
    (1, list(range(30))),
    (3, list(range(0, 30, 3))),
    (7, [0, 7, 14, 21, 28]),
    (29, [0, 29]),
    (30, [0]),
    (100, [0]),
])
def test_extract_every_nth_frame_from_frame_zero(video30, tmp_path, nth, indices):
    frames = extract_frames(video30, tmp_path / "inputframes", nth)
    assert [p.name for p in frames] == [f"{k:05d}.jpg" for k in range(1, len(indices) + 1)]
    assert sorted(p.name for p in (tmp_path / "inputframes").glob("*.jpg")) == [p.name for p in frames]
    assert_levels(mean_levels(Image.open(p) for p in frames), [i * GREY_STEP for i in indices])


def test_extract_writes_a_manifest_naming_the_source(video30, tmp_path):
    tmp_path = tmp_path / "100% frames"  # '%' in a folder name must not be read as a pattern
    extract_frames(video30, tmp_path, 3)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["source"] == str(video30.resolve())
    assert (manifest["extract_nth_frame"], manifest["count"], manifest["fps"]) == (3, 10, 10.0)
    assert manifest["size"] == video30.stat().st_size


def test_overwrite_false_reuses_frames_of_the_same_video(video30, tmp_path):
    first = extract_frames(video30, tmp_path, 3)
    stamps = [p.stat().st_mtime_ns for p in first]
    again = extract_frames(video30, tmp_path, 3, overwrite=False)
    assert again == first
    assert [p.stat().st_mtime_ns for p in again] == stamps


def test_overwrite_false_reuses_a_copied_video(video30, tmp_path):
    first = extract_frames(video30, tmp_path / "frames", 1)
    stamps = [p.stat().st_mtime_ns for p in first]
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video30.read_bytes())
    assert extract_frames(copy, tmp_path / "frames", 1, overwrite=False) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps


def test_overwrite_false_re_extracts_from_a_different_video(video30, tmp_path):
    extract_frames(video30, tmp_path / "frames", 1)
    other = write_video(tmp_path / "other.mp4", [250 - 20 * i for i in range(12)], fps=10)
    frames = extract_frames(other, tmp_path / "frames", 1, overwrite=False)
    assert [p.name for p in frames] == [f"{k:05d}.jpg" for k in range(1, 13)]
    # the 18 frames the first video left beyond 00012 are gone
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 12
    assert_levels(mean_levels(Image.open(p) for p in frames), [250 - 20 * i for i in range(12)])


@pytest.mark.parametrize("tamper", ["other_nth", "no_manifest", "frame_deleted", "bad_manifest", "bad_count"])
def test_overwrite_false_re_extracts_when_the_frames_cannot_be_trusted(video30, tmp_path, tamper):
    out = tmp_path / "frames"
    extract_frames(video30, out, 3)
    nth = 3
    if tamper == "other_nth":
        nth = 5
    elif tamper == "no_manifest":  # frames left by v0.6 or by a killed extraction
        (out / MANIFEST_NAME).unlink()
    elif tamper == "frame_deleted":
        (out / "00004.jpg").unlink()
    elif tamper == "bad_manifest":
        (out / MANIFEST_NAME).write_text("{not json")
    else:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        (out / MANIFEST_NAME).write_text(json.dumps({**manifest, "count": "ten"}))
    for p in out.glob("*.jpg"):  # mark the old frames so a re-extraction is visible
        Image.fromarray(grey_frame(255, 48, 32)).save(p)
    frames = extract_frames(video30, out, nth, overwrite=False)
    expected = list(range(0, 30, nth))
    assert_levels(mean_levels(Image.open(p) for p in frames), [i * GREY_STEP for i in expected])
    assert json.loads((out / MANIFEST_NAME).read_text())["extract_nth_frame"] == nth


def test_overwrite_true_always_re_extracts(video30, tmp_path):
    first = extract_frames(video30, tmp_path, 10)
    Image.fromarray(grey_frame(255, 48, 32)).save(first[0])
    frames = extract_frames(video30, tmp_path, 10, overwrite=True)
    assert_levels(mean_levels(Image.open(p) for p in frames), [0, 80, 160])


@pytest.mark.parametrize("nth", [0, -1, 1.5, "2", True])
def test_extract_nth_frame_must_be_a_positive_whole_number(video30, tmp_path, nth):
    with pytest.raises(SettingsError, match="extract_nth_frame"):
        extract_frames(video30, tmp_path, nth)


# --------------------------------------------------------------------------------------------------
# bad video inputs


def test_missing_video_names_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaError, match="nope.mp4.*does not exist"):
        probe_video(missing)
    with pytest.raises(MediaError, match="nope.mp4"):
        extract_frames(missing, tmp_path / "frames")


def test_text_file_is_not_a_video(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(MediaError, match="notes.mp4.*not a video"):
        probe_video(fake)
    with pytest.raises(MediaError, match="notes.mp4.*not a video"):
        extract_frames(fake, tmp_path / "frames")
    assert not (tmp_path / "frames").exists()


def test_folder_is_not_a_video(tmp_path):
    with pytest.raises(MediaError, match="is not a file"):
        probe_video(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    audio = tmp_path / "tone.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-f", "lavfi", "-i",
                    "sine=duration=0.5", str(audio)], check=True, capture_output=True)
    with pytest.raises(MediaError, match="tone.m4a.*no video stream"):
        probe_video(audio)


def test_frames_folder_under_a_file_is_an_error(video30, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="frames folder"):
        extract_frames(video30, blocker / "frames")


# --------------------------------------------------------------------------------------------------
# make_video


@pytest.mark.parametrize("size, encoded_size", [
    ((66, 50), (66, 50)),
    ((65, 49), (66, 50)),  # odd sizes are padded by one black column/row for yuv420p
    ((16, 16), (16, 16)),
])
def test_make_video_has_one_frame_per_image(tmp_path, size, encoded_size):
    levels = [30 * i for i in range(7)]
    write_pngs(tmp_path, "f_%05d.png", levels, size)
    mp4 = make_video(str(tmp_path / "f_%05d.png"), tmp_path / "out.mp4", fps=12, make_gif=True)
    assert mp4 == tmp_path / "out.mp4"
    info = probe_video(mp4)
    assert (info.frame_count, info.width, info.height, info.fps) == (7, *encoded_size, 12.0)
    frames = read_video_frames(mp4)
    w, h = size
    assert_levels(mean_levels(f[:h, :w] for f in frames), levels)
    with Image.open(tmp_path / "out.gif") as gif:
        gif_frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert len(gif_frames) == 7
    assert gif_frames[0].shape == (encoded_size[1], encoded_size[0], 3)


@pytest.mark.parametrize("fps", [12, 24, 29.97, 1, 60])
def test_frame_count_does_not_depend_on_fps(tmp_path, fps):
    levels = [10 * i for i in range(13)]
    write_pngs(tmp_path, "%05d.png", levels, (16, 16))
    mp4 = make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4", fps=fps)
    assert count_video_frames(mp4) == 13
    assert probe_video(mp4).fps == pytest.approx(fps, rel=1e-3)


def test_repeated_images_are_kept_as_frames(tmp_path):
    levels = [0, 0, 0, 100, 100, 200]
    write_pngs(tmp_path, "r_%05d.png", levels, (16, 16))
    mp4 = make_video(str(tmp_path / "r_%05d.png"), tmp_path / "r.mp4", make_gif=True)
    assert_levels(mean_levels(read_video_frames(mp4)), levels)
    with Image.open(tmp_path / "r.gif") as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == 6


def test_make_video_from_a_list_a_folder_and_with_max_frames(tmp_path):
    levels = [20 * i for i in range(6)]
    paths = write_pngs(tmp_path / "frames", "%05d.png", levels, (16, 16), start=1)
    from_list = make_video(list(reversed(paths)), tmp_path / "list.mp4")
    assert_levels(mean_levels(read_video_frames(from_list)), list(reversed(levels)))
    from_folder = make_video(tmp_path / "frames", tmp_path / "folder.mp4", pattern="%05d.png", max_frames="4")
    assert_levels(mean_levels(read_video_frames(from_folder)), levels[:4])
    with pytest.raises(SettingsError, match="pattern"):
        make_video(tmp_path / "frames", tmp_path / "x.mp4")


def test_pattern_starts_at_the_lowest_number_and_ignores_other_files(tmp_path):
    write_pngs(tmp_path, "20220903000939_%05d.png", [0, 50, 100], (16, 16), start=3)
    Image.fromarray(grey_frame(255, 16, 16)).save(tmp_path / "20220903000939_depth_00003.png")
    Image.fromarray(grey_frame(255, 16, 16)).save(tmp_path / "20220903000939_7.png")  # not 5 digits
    (tmp_path / "20220903000939_settings.txt").write_text("{}")
    frames = frames_from_pattern(tmp_path / "20220903000939_%05d.png")
    assert [p.name for p in frames] == [f"20220903000939_{n:05d}.png" for n in (3, 4, 5)]


def test_missing_frames_are_named(tmp_path):
    write_pngs(tmp_path, "%05d.png", [0, 10, 20, 30, 40, 50], (16, 16), start=1)
    (tmp_path / "00003.png").unlink()
    (tmp_path / "00005.png").unlink()
    with pytest.raises(MediaError, match=r"2 frame\(s\) missing.*00003.png, 00005.png"):
        make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_missing_file_in_a_list_is_named(tmp_path):
    paths = write_pngs(tmp_path, "%05d.png", [0, 10], (16, 16))
    with pytest.raises(MediaError, match="gone.png"):
        make_video([*paths, tmp_path / "gone.png"], tmp_path / "o.mp4")


def test_no_frames_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no frames"):
        make_video(str(tmp_path / "empty" / "%05d.png"), tmp_path / "o.mp4")
    with pytest.raises(MediaError, match="no frames"):
        make_video([], tmp_path / "o.mp4")
    with pytest.raises(MediaError, match="does not exist"):
        make_video(str(tmp_path / "absent" / "%05d.png"), tmp_path / "o.mp4")


def test_unwritable_output_folder(tmp_path):
    write_pngs(tmp_path, "%05d.png", [0, 10], (16, 16))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MediaError, match="a_file"):
        make_video(str(tmp_path / "%05d.png"), blocker / "sub" / "x.mp4")


def test_frames_of_different_sizes_fail_without_touching_the_old_video(tmp_path):
    write_pngs(tmp_path, "%05d.png", [0, 10, 20], (16, 16))
    good = make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4")
    before = good.read_bytes()
    Image.fromarray(grey_frame(5, 18, 16)).save(tmp_path / "00003.png")
    with pytest.raises(MediaError, match="00003.png.*18x16.*16x16"):
        make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4")
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n:05d}.png" for n in range(4)] + ["o.mp4"]


def test_unreadable_image_is_named(tmp_path):
    write_pngs(tmp_path, "%05d.png", [0, 10], (16, 16))
    (tmp_path / "00001.png").write_text("not a png")
    with pytest.raises(MediaError, match="00001.png"):
        make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("kwargs, field", [
    ({"fps": 0}, "fps"), ({"fps": -12}, "fps"), ({"fps": "12"}, "fps"), ({"fps": True}, "fps"),
    ({"max_frames": "0"}, "max_frames"), ({"max_frames": "ten"}, "max_frames"),
    ({"max_frames": 2.5}, "max_frames"),
])
def test_bad_video_settings(tmp_path, kwargs, field):
    write_pngs(tmp_path, "%05d.png", [0, 10], (16, 16))
    with pytest.raises(SettingsError, match=field):
        make_video(str(tmp_path / "%05d.png"), tmp_path / "o.mp4", **kwargs)


@pytest.mark.parametrize("pattern", ["%05d_%05d.png", "frames.png", "%s.png"])
def test_pattern_needs_one_number_field(tmp_path, pattern):
    with pytest.raises((SettingsError, MediaError), match="image_path|pattern"):
        make_video(str(tmp_path / pattern), tmp_path / "o.mp4")


# --------------------------------------------------------------------------------------------------
# video_cell


TS = "20220903000939"


def test_video_cell_makes_the_run_video(tmp_path):
    write_pngs(tmp_path, f"{TS}_%05d.png", [0, 40, 80, 120, 160], (32, 32))
    Image.fromarray(grey_frame(255, 32, 32)).save(tmp_path / f"{TS}_depth_00000.png")
    write_pngs(tmp_path, "20220903111111_%05d.png", [255] * 3, (32, 32))  # another run
    result = video_cell(outdir=tmp_path, timestring=TS, fps=12, make_gif=True)
    assert result.mp4_path == tmp_path / f"{TS}.mp4"
    assert result.gif_path == tmp_path / f"{TS}.gif"
    assert (result.frame_count, result.fps) == (5, 12.0)
    assert_levels(mean_levels(read_video_frames(result.mp4_path)), [0, 40, 80, 120, 160])
    assert result.gif_path.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(result.mp4_path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    html = video_html(result.mp4_path, width=256)
    assert html.startswith('<video width="256"')
    assert base64.b64decode(html.split("base64,")[1].split('"')[0]) == result.mp4_path.read_bytes()


@pytest.mark.parametrize("seconds", [2.0, 0.2], ids=["longer", "shorter"])
def test_video_cell_muxes_a_soundtrack_of_the_video_length(tmp_path, seconds):
    """Each ffmpeg build: the audio (AAC) is cut or padded to the video, the video copied, the mark kept
    (more in tests/test_soundtrack.py)."""
    import wave

    rate = 22050
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype("<i2")
    with wave.open(str(tmp_path / "song.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    write_pngs(tmp_path, f"{TS}_%05d.png", [0, 40, 80, 120, 160, 200], (32, 32))
    result = video_cell(outdir=tmp_path, timestring=TS, fps=8, add_soundtrack="File",
                        soundtrack_path=str(tmp_path / "song.wav"))
    assert count_packets(result.mp4_path) == 6
    assert video_duration(result.mp4_path) == pytest.approx(6 / 8)
    assert abs(audio_duration(result.mp4_path) - 6 / 8) <= 1 / 8
    assert_levels(mean_levels(read_video_frames(result.mp4_path)), [0, 40, 80, 120, 160, 200])
    assert is_ours(result.mp4_path, "mp4")


@pytest.mark.skipif(os.name != "posix", reason="stale temp files are recognised by process id on POSIX")
def test_temp_files_of_a_killed_encode_are_removed_by_the_next_one(tmp_path):
    write_pngs(tmp_path, f"{TS}_%05d.png", [0, 80, 160], (32, 32))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid belongs to no process now
    stale = [tmp_path / f".{TS}.{dead.pid}.k1ll3d0{n}{suffix}" for n, suffix in enumerate((".mp4", ".gif"))]
    alive = tmp_path / f".{TS}.{os.getppid()}.running.mp4"  # a live process's encode: not touched
    other = tmp_path / f".other.{dead.pid}.k1ll3d00.mp4"  # another video's name: not touched
    for path in (*stale, alive, other):
        path.write_bytes(b"half an mp4")
    result = video_cell(outdir=tmp_path, timestring=TS, fps=12, make_gif=True)
    assert result.frame_count == 3 and result.gif_path.exists()
    assert not any(path.exists() for path in stale)
    assert alive.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.glob(".*")) == sorted([alive.name, other.name])  # none of its own


def test_video_cell_skip(tmp_path):
    assert video_cell(outdir=tmp_path, timestring=TS, skip_video_for_run_all=True) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("modifier", ["x0_pred", "x"])
def test_video_cell_render_steps_uses_this_runs_step_folder(tmp_path, modifier):
    steps = tmp_path / f"{TS}_00_1234"
    write_pngs(steps, "x0_pred_%05d.png", [0, 50, 100, 150], (16, 16))
    write_pngs(steps, "x_%05d.png", [200, 150, 100, 50], (16, 16))
    write_pngs(tmp_path / "inputframes", "%05d.png", [255], (16, 16))  # newer, but not a step folder
    result = video_cell(outdir=tmp_path, timestring=TS, render_steps=True, path_name_modifier=modifier)
    assert result.mp4_path == steps / f"{TS}_{modifier}.mp4"
    expected = [0, 50, 100, 150] if modifier == "x0_pred" else [200, 150, 100, 50]
    assert_levels(mean_levels(read_video_frames(result.mp4_path)), expected)


def test_video_cell_render_steps_without_step_images(tmp_path):
    (tmp_path / "inputframes").mkdir()
    with pytest.raises(MediaError, match="save_sample_per_step"):
        video_cell(outdir=tmp_path, timestring=TS, render_steps=True)
    with pytest.raises(SettingsError, match="path_name_modifier"):
        video_cell(outdir=tmp_path, timestring=TS, render_steps=True, path_name_modifier="x1")


def test_video_cell_manual_settings(tmp_path):
    write_pngs(tmp_path / "old", "%05d.png", [0, 30, 60, 90, 120, 150], (16, 16))
    mp4 = tmp_path / "films" / "mine.mp4"
    result = video_cell(outdir=tmp_path / "unused", timestring=TS, use_manual_settings=True,
                        image_path=str(tmp_path / "old" / "%05d.png"), mp4_path=str(mp4), max_frames="4")
    assert result.mp4_path == mp4 and result.gif_path is None
    assert_levels(mean_levels(read_video_frames(mp4)), [0, 30, 60, 90])
    with pytest.raises(SettingsError, match="mp4_path"):
        video_cell(outdir=tmp_path, timestring=TS, use_manual_settings=True, image_path="a_%05d.png")


def test_extracted_frames_round_trip_to_a_video(video30, tmp_path):
    """Video Input's path end to end: extract every 3rd frame, re-encode at the suggested fps."""
    frames = extract_frames(video30, tmp_path / "inputframes", 3)
    fps = probe_video(video30, count_frames=False).output_fps(3)
    mp4 = make_video(frames, tmp_path / "back.mp4", fps=fps)
    info = probe_video(mp4)
    assert info.frame_count == 10 and info.fps == pytest.approx(10 / 3, rel=1e-2)
    assert_levels(mean_levels(read_video_frames(mp4)), [i * GREY_STEP for i in range(0, 30, 3)])


# --------------------------------------------------------------------------------------------------
# Each allowed imageio-ffmpeg release


def test_listed_versions_start_at_the_pyproject_floor():
    """The oldest imageio-ffmpeg that pyproject.toml allows is the oldest whose ffmpeg these tests run."""
    text = (REPO / "pyproject.toml").read_text()
    floors = re.findall(r'"imageio[-_]ffmpeg\s*>=\s*([0-9][0-9.]*)[^"]*"', text)
    assert len(floors) == 1, f"expected one 'imageio-ffmpeg>=X' requirement in pyproject.toml, found {floors}"
    keys = [_version_key(v) for v in FFMPEG_VERSIONS]
    assert keys, f"{VERSIONS_FILE} lists no versions"
    assert keys == sorted(set(keys)), f"{VERSIONS_FILE}: versions must ascend without repeats: {FFMPEG_VERSIONS}"
    assert keys[0] == _version_key(floors[0]), (
        f"pyproject.toml allows imageio-ffmpeg>={floors[0]}, but the oldest version tested is "
        f"{FFMPEG_VERSIONS[0]} ({VERSIONS_FILE.relative_to(REPO)})")


@pytest.mark.parametrize("version", FFMPEG_VERSIONS)
def test_each_allowed_imageio_ffmpeg_makes_and_counts_videos(version, tmp_path, monkeypatch):
    """make_video and Mp4Writer write, and probe_video reads, the right frames with the ffmpeg of every
    allowed release. ffmpeg 7.0 (imageio-ffmpeg 0.6.0, Colab's) prints no `frame=` progress line for a
    stream copy; a count read from it was 0 and every new video was rejected."""
    exe = released_ffmpeg(version)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(exe))
    assert ffmpeg_exe() == str(exe)
    assert _build_of(exe).startswith("ffmpeg version ")

    levels = [25 * i for i in range(9)]
    write_pngs(tmp_path / "frames", "%05d.png", levels, (40, 24))
    mp4 = make_video(str(tmp_path / "frames" / "%05d.png"), tmp_path / "made.mp4", fps=12, make_gif=True)
    info = probe_video(mp4)
    assert (info.frame_count, info.fps, info.width, info.height) == (9, 12.0, 40, 24)
    assert count_video_frames(mp4) == 9
    assert count_packets(mp4) == 9  # what make_video checks after encoding, without decoding
    assert_levels(mean_levels(read_video_frames(mp4)), levels)
    with Image.open(tmp_path / "made.gif") as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == 9

    writer = Mp4Writer(tmp_path / "written.mp4", 33, 17, 29.97)  # odd size: padded to 34x18
    for level in (0, 60, 120, 180, 240):
        writer.write(grey_frame(level, 33, 17))
    written = writer.close()
    info = probe_video(written)
    assert (info.frame_count, info.width, info.height) == (5, 34, 18)
    assert info.fps == pytest.approx(29.97, rel=1e-3)
    assert count_packets(written) == 5
    assert_levels(mean_levels(f[:17, :33] for f in read_video_frames(written)), [0, 60, 120, 180, 240])



def test_abort_after_ffmpeg_died_closes_its_input(tmp_path):
    """Aborting closes ffmpeg's input, so no 'Broken pipe' surfaces later when the pipe is garbage-collected."""
    writer = Mp4Writer(tmp_path / "a.mp4", 16, 16, 12)
    writer.proc.stdin.write(b"\0" * 100)  # still in the pipe's buffer
    writer.proc.kill()
    writer.proc.wait()
    writer.abort()
    assert writer.proc.stdin.closed
    assert not list(tmp_path.iterdir())
