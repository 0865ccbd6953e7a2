"""Audio-reactive schedules (deforum.sources.audio, `deforum audio`): a synthetic beep track, decoded from wav, mp3
and flac, gives one value a frame peaking on the beeps."""

import json
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from deforum import cli
from deforum import settings as A
from deforum.errors import DeforumError, MediaError, ScheduleError, SettingsError
from deforum.keyframes import parse_schedule

pytest.importorskip("librosa")
from deforum.sources import audio  # noqa: E402

BEEPS_S = (0.5, 1.5, 2.5, 3.5)
FPS = 12
PEAKS = (6, 18, 30, 42)  # the frames whose windows [i/12, (i+1)/12) start at each beep
QUIET = (12, 24, 36)
SCHEDULE = re.compile(r"^\d+:\([^()]+\)(, \d+:\([^()]+\))*$")


def write_beeps(path: Path, rate: int = 44_100, seconds: float = 4.0, beep_s: float = 0.1) -> Path:
    """A 16-bit mono wav: silence with a 440 Hz beep of ``beep_s`` seconds at each of BEEPS_S."""
    t = np.arange(int(rate * seconds)) / rate
    y = np.zeros_like(t)
    for start in BEEPS_S:
        on = (t >= start) & (t < start + beep_s)
        y[on] = 0.8 * np.sin(2 * np.pi * 440 * t[on])
    return write_wav(path, y, rate)


def write_wav(path: Path, y: np.ndarray, rate: int) -> Path:
    """A 16-bit mono wav of the samples ``y`` (in -1..1)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((y * 32767).astype("<i2").tobytes())
    return path


def encode(wav: Path, suffix: str) -> Path:
    import imageio_ffmpeg

    out = wav.with_suffix(suffix)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(wav), str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def beeps(tmp_path_factory) -> Path:
    return write_beeps(tmp_path_factory.mktemp("audio") / "beeps.wav")


def values_of(schedule: str) -> np.ndarray:
    assert SCHEDULE.match(schedule), schedule[:200]
    return np.array([float(v) for v in re.findall(r"\d+:\(([^()]+)\)", schedule)])


def test_the_beeps_peak_on_their_frames_and_the_gaps_are_quiet(beeps):
    values = values_of(audio.audio_schedule(beeps, FPS, "x"))
    assert len(values) == 48  # 4 s at 12 fps: the audio's length gives the frame count
    assert values.min() >= 0 and values.max() <= 1
    for frame in PEAKS:
        assert values[frame] > 0.95, (frame, values[frame - 1:frame + 2])
        assert values[frame] == values[frame - 3:frame + 4].max()
    for frame in QUIET:
        assert values[frame] < 0.05, (frame, values[frame])


@pytest.mark.parametrize("feature", ["rms", "onset"])
@pytest.mark.parametrize("suffix", [".mp3", ".flac"])
def test_mp3_and_flac_give_the_same_schedule_as_the_wav(beeps, suffix, feature):
    wav = audio.audio_values(beeps, FPS, "x", feature=feature)
    other = audio.audio_values(encode(beeps, suffix), FPS, "x", feature=feature)
    assert other.shape == wav.shape
    assert np.abs(other - wav).max() < 0.05


def test_the_schedule_string_is_a_valid_schedule_with_4_significant_digits(beeps):
    text = audio.audio_schedule(beeps, FPS, "0.65 - 0.3*x")
    values = values_of(text)
    assert all(len(v.replace("0.", "").lstrip("0").replace(".", "")) <= 4
               for v in re.findall(r"\(([^()]+)\)", text))
    parsed = parse_schedule(text, len(values), field="strength_schedule")
    np.testing.assert_allclose(parsed, values)
    x = audio.audio_envelope(beeps, FPS)
    np.testing.assert_allclose(values, 0.65 - 0.3 * x, atol=5e-4)
    assert values[6] == pytest.approx(0.35, abs=0.02) and values[12] == pytest.approx(0.65, abs=0.02)


def test_the_expression_sees_t_and_max_f(beeps):
    values = audio.audio_values(beeps, FPS, "t + 0*x", frames=10)
    np.testing.assert_array_equal(values, np.arange(10))
    np.testing.assert_array_equal(audio.audio_values(beeps, FPS, "max_f + 0*x", frames=5), [5] * 5)


def test_frames_cuts_or_pads_with_silence(beeps):
    short = audio.audio_values(beeps, FPS, "x", frames=20)
    assert len(short) == 20 and short[6] > 0.95 and short[18] > 0.95
    long = audio.audio_values(beeps, FPS, "x", frames=60)
    assert len(long) == 60 and np.all(long[48:] == 0)
    np.testing.assert_allclose(long[:48], audio.audio_values(beeps, FPS, "x"), atol=1e-9)


def test_the_frame_windows_follow_fps(beeps):
    values = audio.audio_values(beeps, 24, "x")
    assert len(values) == 96
    for start in BEEPS_S:
        first = round(start * 24)  # a 0.1 s beep covers the windows of frames first .. first + 2
        assert values[first] > 0.9 and values[first:first + 3].max() > 0.98
        assert values[first - 3] < 0.05 and values[first + 5] < 0.05


def test_smooth_is_a_moving_average_that_widens_the_peaks(beeps):
    plain = audio.audio_values(beeps, FPS, "x")
    smooth = audio.audio_values(beeps, FPS, "x", smooth=5)
    assert smooth.max() == pytest.approx(1.0)
    assert (smooth > 0.2).sum() > (plain > 0.2).sum()
    assert smooth[6] > 0.95 and smooth[6] == smooth[:12].max()  # the peak stays on the beep's frame
    assert np.all(smooth[[0, 1, 11, 12]] == 0)  # no rounding noise where it is silent


def test_band_pass_keeps_what_is_in_the_band(tmp_path):
    """A low thump at 0.5 s and a high beep at 2.5 s: the band picks one of them."""
    rate = 22_050
    t = np.arange(rate * 3) / rate
    y = np.where((t >= 0.5) & (t < 0.6), np.sin(2 * np.pi * 60 * t), 0.0)
    y += np.where((t >= 2.5) & (t < 2.6), np.sin(2 * np.pi * 5000 * t), 0.0)
    path = write_wav(tmp_path / "two.wav", 0.5 * y, rate)
    low = audio.audio_values(path, FPS, "x", band="20-150")
    high = audio.audio_values(path, FPS, "x", band="3000-8000")
    assert low[6] > 0.95 and low[30] < 0.05
    assert high[30] > 0.95 and high[6] < 0.05


def test_beat_feature_gives_pulses_on_the_beat_grid(tmp_path):
    """Clicks at 120 bpm: the beat tracker's pulses (1 on a beat, decaying) land on the clicks' frames."""
    rate = 22_050
    t = np.arange(rate * 8) / rate
    y = np.zeros_like(t)
    for start in np.arange(0, 8, 0.5):
        on = (t >= start) & (t < start + 0.03)
        y[on] = np.sin(2 * np.pi * 1000 * t[on])
    path = write_wav(tmp_path / "clicks.wav", 0.5 * y, rate)
    values = audio.audio_values(path, FPS, "x", feature="beat")
    peaks = [i for i in range(1, len(values) - 1) if values[i] > 0.9]
    assert len(peaks) >= 8
    assert all(i % 6 in (0, 1, 5) for i in peaks)  # a click every 6 frames at 12 fps
    assert values.max() == pytest.approx(1.0)


def test_beat_pulses():
    times = np.array([0.0, 0.1, 0.5, 0.6, 1.0])
    expected = [0, 0, 1, np.exp(-0.1 / 0.15), np.exp(-0.5 / 0.15)]
    np.testing.assert_allclose(audio.beat_pulses(times, np.array([0.5])), expected, atol=1e-9)


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("expr", "words"), [
    ("y + 1", "unknown name 'y'"),
    ("x +", "ends too early"),
    ("__import__('os')", "not allowed"),
    ("", "empty"),
    ("1/(x-x)", "not a finite number"),
])
def test_a_bad_expression_is_a_schedule_error_naming_expr(beeps, expr, words):
    with pytest.raises(ScheduleError) as info:
        audio.audio_values(beeps, FPS, expr)
    assert words in str(info.value) and "--expr" in str(info.value)


@pytest.mark.parametrize("band", ["150-20", "abc", "0-100", "100-20000", "20-"])
def test_a_bad_band_is_a_settings_error(beeps, band):
    with pytest.raises(SettingsError, match="--band"):
        audio.audio_values(beeps, FPS, "x", band=band)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"feature": "loud"}, "--feature 'loud' is not one of rms, onset, beat"),
    ({"smooth": 0}, "--smooth 0"),
    ({"frames": 0}, "--frames 0"),
])
def test_bad_arguments(beeps, kwargs, words):
    with pytest.raises(SettingsError, match=re.escape(words)):
        audio.audio_values(beeps, FPS, "x", **kwargs)


def test_a_missing_or_undecodable_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        audio.audio_values(tmp_path / "nope.wav", FPS)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(MediaError, match="cannot be decoded"):
        audio.audio_values(junk, FPS)


def test_without_librosa_the_error_names_the_extra(beeps, monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)  # import librosa raises ImportError
    with pytest.raises(DeforumError, match=re.escape("pip install 'deforum-stable-diffusion[audio]'")):
        audio.audio_values(beeps, FPS)


def test_the_extra_is_named_as_the_distribution():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the test extra installs tomli
        import tomli as tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert audio.INSTALL_HINT == f"pip install '{project['name']}[audio]'"
    assert any(r.startswith("librosa") for r in project["optional-dependencies"]["audio"])


# ---------------------------------------------------------------------------------------- the command


def test_cli_prints_the_schedule(beeps, capsys):
    assert cli.main(["audio", str(beeps), "--fps", "12", "--expr", "x"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == audio.audio_schedule(beeps, FPS, "x")
    values = values_of(out)
    assert all(values[f] > 0.95 for f in PEAKS) and all(values[f] < 0.05 for f in QUIET)


def test_cli_writes_the_schedule_into_a_settings_file_that_then_loads(beeps, tmp_path, capsys):
    path = tmp_path / "music.json"
    path.write_text(json.dumps({"animation_mode": "2D", "max_frames": 48, "strength_schedule": "0:(0.65)",
                                "animation_prompts": {"0": "a lighthouse"}}, indent=4), encoding="utf-8")
    assert cli.main(["audio", str(beeps), "--fps", "12", "--expr", "1 + 0.05*x", "--field", "zoom",
                     "--into", str(path)]) == 0
    assert "zoom" in capsys.readouterr().out
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["zoom"] == audio.audio_schedule(beeps, FPS, "1 + 0.05*x")
    assert data["strength_schedule"] == "0:(0.65)" and data["animation_prompts"] == {"0": "a lighthouse"}
    assert [p.name for p in tmp_path.iterdir()] == ["music.json"]  # no temp file left
    loaded = A.load_settings(path)
    assert vars(loaded.anim_args)["zoom"] == data["zoom"]
    job, prepared = cli._prepared(str(path), {})  # what `deforum plan` and `deforum render` do with it
    zoom = prepared.plan.schedules["zoom"]
    assert len(zoom) == 48
    assert zoom[6] == pytest.approx(1.05, abs=1e-3) and zoom[12] == pytest.approx(1.0, abs=1e-3)


def test_cli_notes_a_max_frames_that_differs(beeps, tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"max_frames": 10}), encoding="utf-8")
    assert cli.main(["audio", str(beeps), "--fps", "12", "--field", "strength_schedule", "--into", str(path)]) == 0
    assert "max_frames is 10" in capsys.readouterr().out


def test_cli_errors(beeps, tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text("{}", encoding="utf-8")
    assert cli.main(["audio", str(beeps), "--fps", "12", "--field", "zom", "--into", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--field 'zom' is not a schedule field" in err and "zoom, " in err and "strength_schedule" in err
    assert path.read_text(encoding="utf-8") == "{}"
    assert cli.main(["audio", str(beeps), "--fps", "12", "--field", "seed", "--into", str(path)]) == 2
    assert "not a schedule field" in capsys.readouterr().err
    assert cli.main(["audio", str(beeps), "--fps", "12", "--band", "500-100"]) == 2
    assert "--band 500-100" in capsys.readouterr().err
    assert cli.main(["audio", str(beeps), "--fps", "12", "--expr", "x +* 2"]) == 1
    err = capsys.readouterr().err
    assert "--expr" in err and "Traceback" not in err
    assert cli.main(["audio", str(beeps), "--fps", "12", "--field", "zoom"]) == 2
    assert "--field and --into go together" in capsys.readouterr().err
    assert cli.main(["audio", str(beeps)]) == 2  # --fps is required (argparse)
    capsys.readouterr()


def test_cli_refuses_a_schedule_that_makes_the_file_invalid(beeps, tmp_path, capsys):
    path = tmp_path / "s.json"
    original = json.dumps({"max_frames": 48, "W": "wide"})
    path.write_text(original, encoding="utf-8")
    code = cli.main(["audio", str(beeps), "--fps", "12", "--field", "zoom", "--into", str(path)])
    assert code == 2 and "W" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == original  # nothing written


# ---------------------------------------------------------------------------------------- the notebook cell


def anim_args_cell():
    return {"animation_mode": "2D", "max_frames": 1000, "zoom": "0:(1.04)", "strength_schedule": "0:(0.65)"}


def test_the_notebook_cell_sets_the_field_and_max_frames_and_plots(beeps):
    from deforum import notebook_build as B

    source = dict((cell_id, text) for cell_id, _, text in B.notebook_cells())["audio"]
    source = re.sub(r"^skip_audio_keyframes = True", "skip_audio_keyframes = False", source, flags=re.M)
    source = re.sub(r"^audio_path = ''", f"audio_path = {str(beeps)!r}", source, flags=re.M)
    source = re.sub(r"^audio_field = 'zoom'", "audio_field = 'strength_schedule'", source, flags=re.M)
    source = re.sub(r"^audio_expr = '[^']*'", "audio_expr = '0.65 - 0.3*x'", source, flags=re.M)
    namespace = {"DeforumAnimArgs": anim_args_cell}
    exec(compile(source, "audio cell", "exec"), namespace)
    values = namespace["DeforumAnimArgs"]()
    assert values["strength_schedule"] == audio.audio_schedule(beeps, FPS, "0.65 - 0.3*x")
    assert values["max_frames"] == 48 and values["zoom"] == "0:(1.04)"
    resolved = A.resolve(args=A.defaults("args"), anim_args={**A.defaults("anim_args"), **values},
                         animation_prompts={0: "a lighthouse"})
    assert resolved.animation.max_frames == 48


def test_the_notebook_helper_skips_by_default_and_reports_errors_in_one_message(beeps, capsys):
    from deforum import notebook as N

    assert N.audio_keyframes(anim_args_cell) is anim_args_cell
    assert "skip_audio_keyframes" in capsys.readouterr().out
    with pytest.raises(N.NotebookStop, match="not a schedule field"):
        N.audio_keyframes(anim_args_cell, skip_audio_keyframes=False, audio_path=str(beeps), audio_field="seed")
    with pytest.raises(N.NotebookStop, match="audio_path is empty"):
        N.audio_keyframes(anim_args_cell, skip_audio_keyframes=False)
    kept = N.audio_keyframes(anim_args_cell, skip_audio_keyframes=False, audio_path=str(beeps), audio_expr="x",
                             audio_sets_max_frames=False, show=False)
    assert kept()["max_frames"] == 1000 and values_of(kept()["zoom"])[6] > 0.95


def test_the_plot_shows_the_envelope_and_the_schedule():
    from deforum import notebook as N

    x = np.array([0, 0.5, 1, 0.2])
    fig = N.plot_audio_keyframes(x, 1 + 0.05 * x, field="zoom", feature="rms", fps=12)
    top, bottom = fig.axes
    np.testing.assert_allclose(top.lines[0].get_ydata(), x)
    np.testing.assert_allclose(bottom.lines[0].get_ydata(), 1 + 0.05 * x)
    assert bottom.get_ylabel() == "zoom" and "12 fps" in bottom.get_xlabel()


def test_cli_refuses_a_missing_settings_file_before_decoding(tmp_path, capsys, monkeypatch):
    def decoded(*args, **kwargs):
        raise AssertionError("the audio was decoded")

    monkeypatch.setattr(audio, "load_audio", decoded)
    assert cli.main(["audio", "song.mp3", "--fps", "12", "--field", "zoom", "--into", str(tmp_path / "no.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
