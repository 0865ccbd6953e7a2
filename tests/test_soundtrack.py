"""Sound in the mp4: the video cell's add_soundtrack / soundtrack_path and `deforum video --audio` (issue 20).

The audio is muxed with imageio-ffmpeg's ffmpeg (AAC, video stream copied), cut or padded with silence to
the video's length; its length here is measured by decoding the muxed file's audio stream with that ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path
from types import SimpleNamespace

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from deforum import cli
from deforum import notebook as N
from deforum.errors import MediaError, SettingsError
from deforum.outputs import MARK, is_ours
from deforum.video import (
    add_audio,
    audio_duration,
    count_packets,
    ffmpeg_exe,
    make_video,
    probe_video,
    read_video_frames,
    video_cell,
    video_duration,
)

REPO = Path(__file__).resolve().parents[1]
TS = "20240101120000"
FPS = 12
FRAMES = 10  # 10 frames at 12 fps: 0.833 s of video


def write_wav(path: Path, seconds: float, rate: int = 44100, freq: float = 440.0, channels: int = 1) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    tone = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(tone, channels).tobytes())
    return path


def ffmpeg(*args: str) -> None:
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(str, args)],
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


def write_mp3(path: Path, seconds: float) -> Path:
    wav = write_wav(path.with_suffix(".src.wav"), seconds)
    ffmpeg("-i", wav, "-c:a", "libmp3lame", "-b:a", "64k", path)
    return path


def write_frames(folder: Path, count: int = FRAMES, name: str = TS + "_{:05d}.png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / name.format(i))
        Image.fromarray(np.full((32, 48, 3), (20 * i) % 256, np.uint8)).save(paths[-1])
    return paths


def write_video_with_sound(path: Path, seconds: float, fps: int = 10, sound: bool = True) -> Path:
    """A tiny video (48x32) with a tone, made by imageio-ffmpeg's ffmpeg itself."""
    inputs = ["-f", "lavfi", "-i", f"color=c=gray:s=48x32:r={fps}:d={seconds}"]
    if sound:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=22050:duration={seconds}"]
    ffmpeg(*inputs, "-c:v", "libx264", "-pix_fmt", "yuv420p", *(["-c:a", "aac"] if sound else []), path)
    return path


def has_audio_stream(path: Path) -> bool:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    return b": Audio: " in proc.stderr


def assert_sound_of_video_length(mp4: Path, fps: float = FPS, frames: int = FRAMES) -> None:
    assert count_packets(mp4) == frames
    video = video_duration(mp4)
    assert video == pytest.approx(frames / fps)
    assert has_audio_stream(mp4)
    assert abs(audio_duration(mp4) - video) <= 1 / fps, (audio_duration(mp4), video)
    assert is_ours(mp4, "mp4")


# -------------------------------------------------------------------------------------- make_video


@pytest.mark.parametrize("seconds", [3.0, 0.3], ids=["longer", "shorter"])
@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_audio_is_cut_or_padded_to_the_video(tmp_path, seconds, kind):
    audio = (write_wav(tmp_path / "a.wav", seconds) if kind == "wav" else write_mp3(tmp_path / "a.mp3", seconds))
    frames = write_frames(tmp_path / "frames")
    mp4 = make_video(frames, tmp_path / "out.mp4", FPS, audio=audio)
    assert_sound_of_video_length(mp4)


def test_the_video_stream_is_copied_not_re_encoded(tmp_path):
    frames = write_frames(tmp_path / "frames")
    silent = make_video(frames, tmp_path / "silent.mp4", FPS)
    loud = make_video(frames, tmp_path / "loud.mp4", FPS, audio=write_wav(tmp_path / "a.wav", 2))
    a, b = read_video_frames(silent), read_video_frames(loud)
    assert len(a) == len(b) == FRAMES and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_padding_is_silence_and_the_sound_is_kept(tmp_path):
    frames = write_frames(tmp_path / "frames", count=24)  # 2 s
    mp4 = make_video(frames, tmp_path / "out.mp4", FPS, audio=write_wav(tmp_path / "a.wav", 1.0))
    proc = subprocess.run([ffmpeg_exe(), "-i", str(mp4), "-map", "0:a:0", "-ac", "1", "-ar", "8000",
                           "-f", "s16le", "-"], capture_output=True)
    pcm = np.frombuffer(proc.stdout, "<i2").astype(np.float64) / 32767
    assert abs(len(pcm) / 8000 - 2.0) <= 1 / FPS
    assert np.sqrt(np.mean(pcm[800:7200] ** 2)) > 0.15  # the tone (0.3 amplitude) during its second
    assert np.abs(pcm[8800:15000]).max() < 0.01  # silence after it


def test_add_audio_to_a_finished_mp4_keeps_the_mark_and_replaces_old_sound(tmp_path):
    mp4 = make_video(write_frames(tmp_path / "frames"), tmp_path / "out.mp4", FPS)
    assert not has_audio_stream(mp4)
    add_audio(mp4, write_wav(tmp_path / "a.wav", 5))
    assert_sound_of_video_length(mp4)
    add_audio(mp4, write_mp3(tmp_path / "b.mp3", 0.2))  # again: one audio stream, still the video's length
    assert_sound_of_video_length(mp4)
    report = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(mp4)], capture_output=True).stderr.decode()
    assert report.count(": Audio: ") == 1 and MARK in report
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_add_audio_will_not_touch_an_mp4_deforum_did_not_write(tmp_path):
    foreign = write_video_with_sound(tmp_path / "theirs.mp4", 1, sound=False)
    before = foreign.read_bytes()
    with pytest.raises(MediaError, match="mp4_path"):
        add_audio(foreign, write_wav(tmp_path / "a.wav", 1))
    assert foreign.read_bytes() == before


# -------------------------------------------------------------------------------------- bad audio


def _bad_audio(tmp_path: Path, what: str) -> Path:
    if what == "missing":
        return tmp_path / "nope.wav"
    if what == "folder":
        (tmp_path / "dir.wav").mkdir()
        return tmp_path / "dir.wav"
    if what == "text":
        (tmp_path / "notes.wav").write_text("not audio at all\n" * 20)
        return tmp_path / "notes.wav"
    if what == "silent video":
        return write_video_with_sound(tmp_path / "silent.mp4", 1, sound=False)
    if what == "unreadable":
        path = write_wav(tmp_path / "locked.wav", 1)
        path.chmod(0)
        return path
    raise AssertionError(what)


BAD_AUDIO = ["missing", "folder", "text", "silent video",
             pytest.param("unreadable", marks=pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                                                                 reason="root reads everything"))]
REASONS = {"missing": "does not exist", "folder": "not a file", "text": "not an audio or video file",
           "silent video": "no audio stream", "unreadable": "not readable"}


@pytest.mark.parametrize("what", BAD_AUDIO)
def test_bad_audio_is_named_before_any_encoding(tmp_path, what):
    audio = _bad_audio(tmp_path, what)
    frames = write_frames(tmp_path / "frames")
    with pytest.raises(MediaError, match=f"^--audio: .*{REASONS[what]}"):
        make_video(frames, tmp_path / "out.mp4", FPS, audio=audio)
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("what", BAD_AUDIO)
def test_video_cell_names_soundtrack_path(tmp_path, what):
    audio = _bad_audio(tmp_path, what)
    write_frames(tmp_path)
    with pytest.raises(MediaError, match=f"^soundtrack_path: .*{REASONS[what]}"):
        video_cell(outdir=tmp_path, timestring=TS, fps=FPS, add_soundtrack="File", soundtrack_path=str(audio))
    assert not (tmp_path / f"{TS}.mp4").exists()


def test_video_cell_init_video_without_sound_names_video_init_path(tmp_path):
    write_frames(tmp_path)
    silent = write_video_with_sound(tmp_path / "init.mp4", 1, sound=False)
    with pytest.raises(MediaError, match="^video_init_path: .*no audio stream"):
        video_cell(outdir=tmp_path, timestring=TS, fps=FPS, add_soundtrack="Init Video",
                   video_init_path=str(silent))
    assert not (tmp_path / f"{TS}.mp4").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"add_soundtrack": "Yes"}, r"add_soundtrack must be one of 'None', 'File', 'Init Video', got 'Yes'"),
    ({"add_soundtrack": "File"}, r"add_soundtrack='File' needs soundtrack_path"),
    ({"add_soundtrack": "Init Video"}, r"add_soundtrack='Init Video' needs video_init_path"),
])
def test_video_cell_soundtrack_settings(tmp_path, kwargs, match):
    write_frames(tmp_path)
    with pytest.raises(SettingsError, match=match):
        video_cell(outdir=tmp_path, timestring=TS, fps=FPS, **kwargs)
    assert not (tmp_path / f"{TS}.mp4").exists()


# -------------------------------------------------------------------------------------- video cell


def test_video_cell_file_soundtrack(tmp_path):
    write_frames(tmp_path)
    made = video_cell(outdir=tmp_path, timestring=TS, fps=FPS, add_soundtrack="File",
                      soundtrack_path=str(write_mp3(tmp_path / "song.mp3", 4)))
    assert made.mp4_path == tmp_path / f"{TS}.mp4"
    assert_sound_of_video_length(made.mp4_path)


def test_video_cell_takes_the_sound_of_the_init_video(tmp_path):
    write_frames(tmp_path)
    init = write_video_with_sound(tmp_path / "init.mp4", 2)
    made = video_cell(outdir=tmp_path, timestring=TS, fps=FPS, add_soundtrack="Init Video",
                      video_init_path=str(init), soundtrack_path=str(tmp_path / "ignored.wav"))
    assert_sound_of_video_length(made.mp4_path)
    assert probe_video(made.mp4_path).frame_count == FRAMES  # the init video's frames are not taken


def test_video_cell_without_soundtrack_has_no_sound(tmp_path):
    write_frames(tmp_path)
    made = video_cell(outdir=tmp_path, timestring=TS, fps=FPS, add_soundtrack="None",
                      soundtrack_path=str(tmp_path / "not-used.wav"))
    assert not has_audio_stream(made.mp4_path)


def test_create_video_muxes_the_soundtrack(tmp_path):
    frames = write_frames(tmp_path)
    settings = SimpleNamespace(video_input=SimpleNamespace(video_init_path=""))
    result = SimpleNamespace(outdir=tmp_path, timestring=TS, frames=frames, fps_hint=None, settings=settings)
    video = N.create_video(result, skip_video_for_run_all=False, fps=FPS, add_soundtrack="File",
                           soundtrack_path=str(write_wav(tmp_path / "a.wav", 3)), show=False)
    assert_sound_of_video_length(video.mp4_path)


def test_create_video_init_video_sound_of_the_run(tmp_path):
    frames = write_frames(tmp_path)
    init = write_video_with_sound(tmp_path / "init.mp4", 0.5)
    settings = SimpleNamespace(video_input=SimpleNamespace(video_init_path=str(init)))
    result = SimpleNamespace(outdir=tmp_path, timestring=TS, frames=frames, fps_hint=None, settings=settings)
    video = N.create_video(result, skip_video_for_run_all=False, fps=FPS, add_soundtrack="Init Video",
                           show=False)
    assert_sound_of_video_length(video.mp4_path)


def test_create_video_of_still_images_with_sound(tmp_path):
    stills = write_frames(tmp_path, count=3, name=TS + "_{:05d}_a_lake.png")
    result = SimpleNamespace(outdir=tmp_path, timestring=TS, frames=stills,
                             settings=SimpleNamespace(video_input=SimpleNamespace(video_init_path="")))
    video = N.create_video(result, skip_video_for_run_all=False, fps=FPS, add_soundtrack="File",
                           soundtrack_path=str(write_wav(tmp_path / "a.wav", 3)), show=False)
    assert_sound_of_video_length(video.mp4_path, frames=3)


def test_create_video_bad_soundtrack_stops_the_cell(tmp_path):
    frames = write_frames(tmp_path)
    result = SimpleNamespace(outdir=tmp_path, timestring=TS, frames=frames, fps_hint=None)
    with pytest.raises(N.NotebookStop, match="soundtrack_path"):
        N.create_video(result, skip_video_for_run_all=False, add_soundtrack="File",
                       soundtrack_path=str(tmp_path / "nope.mp3"), show=False)
    assert not (tmp_path / f"{TS}.mp4").exists()


# -------------------------------------------------------------------------------------- the command


def run_cli(*argv, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deforum", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_deforum_video_audio_end_to_end(tmp_path):
    write_frames(tmp_path / "frames")
    song = write_mp3(tmp_path / "song.mp3", 7)
    proc = run_cli("video", tmp_path / "frames", "--fps", FPS, "--gif", "--audio", song, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mp4 = tmp_path / "frames" / f"{TS}.mp4"
    assert f"video: {mp4}" in proc.stdout
    assert_sound_of_video_length(mp4)
    assert mp4.with_suffix(".gif").is_file()


def test_deforum_video_bad_audio_names_the_option(tmp_path, capsys):
    write_frames(tmp_path / "frames")
    code = cli.main(["video", str(tmp_path / "frames"), "--audio", str(tmp_path / "nope.wav")])
    err = capsys.readouterr().err
    assert code != 0 and "--audio" in err and "nope.wav" in err and "does not exist" in err
    assert not (tmp_path / "frames" / f"{TS}.mp4").exists()


def test_deforum_video_help_lists_audio():
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["video"].format_help()
    assert "--audio FILE" in help_text


# -------------------------------------------------------------------------------------- deforum render


@pytest.fixture
def fake_render(monkeypatch, tmp_path):
    """runner.render replaced by one that writes the run's numbered frames (no model): render_one's video."""
    import deforum.runner as runner
    from deforum import settings as A

    def render(args, anim_args, prompts, animation_prompts, root, **kwargs):
        settings = A.resolve(args, anim_args, vars(root), prompts=prompts, animation_prompts=animation_prompts)
        out = tmp_path / "run"
        frames = write_frames(out, count=int(anim_args["max_frames"]))
        return runner.RunResult(out, TS, frames, settings=settings)

    monkeypatch.setattr(runner, "render", render)
    return tmp_path / "run"


def test_render_muxes_the_soundtrack_of_the_video_fields(tmp_path, fake_render, capsys):
    settings = tmp_path / "s.txt"
    settings.write_text('{"animation_mode": "2D", "max_frames": 6, "fps": 12}', encoding="utf-8")
    song = write_wav(tmp_path / "song.wav", 9)
    assert cli.main(["render", str(settings), "--checkpoint", "sd-v1-4.ckpt", "-q", "--set",
                     "video.add_soundtrack=File", "--set", f"video.soundtrack_path={song}"]) == 0
    mp4 = fake_render / f"{TS}.mp4"
    assert str(mp4) in capsys.readouterr().out
    assert_sound_of_video_length(mp4, frames=6)


def test_render_init_video_sound(tmp_path, fake_render):
    init = write_video_with_sound(tmp_path / "init.mp4", 1)
    settings = tmp_path / "s.txt"
    settings.write_text(f'{{"animation_mode": "2D", "max_frames": 4, "fps": 12, "video_init_path": "{init}"}}',
                        encoding="utf-8")
    assert cli.main(["render", str(settings), "--checkpoint", "sd-v1-4.ckpt", "-q", "--set",
                     "video.add_soundtrack=Init Video"]) == 0
    assert_sound_of_video_length(fake_render / f"{TS}.mp4", frames=4)


def test_render_without_soundtrack_is_silent(tmp_path, fake_render):
    settings = tmp_path / "s.txt"
    settings.write_text('{"animation_mode": "2D", "max_frames": 3, "fps": 12}', encoding="utf-8")
    assert cli.main(["render", str(settings), "--checkpoint", "sd-v1-4.ckpt", "-q"]) == 0
    assert not has_audio_stream(fake_render / f"{TS}.mp4")
