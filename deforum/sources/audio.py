"""Audio-reactive schedules: a sound file -> one value per frame -> a ``0:(v0), 1:(v1), ...`` schedule string.

The steps (docs/audio.md):

1. ``load_audio``: librosa decodes the file (wav, flac, ogg, mp3) to mono at ``SAMPLE_RATE``.
2. ``--band LOW-HIGH``: an optional band-pass (a Butterworth filter, run forwards and backwards: no delay).
3. The feature on a fine grid (``HOP`` samples): ``rms`` (the RMS envelope), ``onset`` (onset strength) or
   ``beat`` (librosa's beat tracker: 1 on each beat, decaying over ``BEAT_DECAY_S``).
4. One value per frame: the mean of the feature over the frame's window ``[i/fps, (i+1)/fps)`` (the value at
   the window's middle when the window is shorter than the grid step); 0 after the audio ends.
5. ``--smooth N``: a centred moving average over N frames; then the values are scaled to 0..1.
6. ``--expr``: a numexpr expression of ``x`` (that value) and ``t`` (the frame), checked against
   ``deforum.keyframes``' allow-list and evaluated by its evaluator, as schedules are.

librosa is the optional extra ``audio`` (``pip install 'deforum-stable-diffusion[audio]'``); it is imported only
here, when a file is read.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deforum import keyframes
from deforum.errors import DeforumError, MediaError, ScheduleError, SettingsError

FEATURES = ("rms", "onset", "beat")
SAMPLE_RATE = 22_050  # every file is resampled to this rate, so that wav, flac and mp3 give the same values
HOP = 256  # samples between two feature values (11.6 ms)
BEAT_DECAY_S = 0.15  # a beat's impulse decays as exp(-seconds since the beat / BEAT_DECAY_S)
MAX_SMOOTH = 1_000
EXPRESSION_VARIABLES = ("x", "t", "max_f")
DEFAULT_EXPR = "x"
INSTALL_HINT = "pip install 'deforum-stable-diffusion[audio]'"
EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def _librosa():
    try:
        import librosa
    except ImportError as exc:
        raise DeforumError(f"audio keyframes need librosa, which is not installed ({exc}); install the "
                           f"audio extra: {INSTALL_HINT}") from None
    return librosa


# ------------------------------------------------------------------------------------------ arguments


def parse_band(text: str | Sequence[float] | None, sample_rate: int = SAMPLE_RATE) -> tuple[float, float] | None:
    """``"LOW-HIGH"`` in Hz (e.g. ``"20-150"``) or a pair -> (low, high); None or "" -> None (no filter)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    nyquist = sample_rate / 2
    if isinstance(text, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*", text)
        if match is None:
            raise SettingsError(f"--band {text!r} is not LOW-HIGH in Hz, e.g. 20-150 (bass) or 2000-8000 (hats)")
        low, high = float(match.group(1)), float(match.group(2))
    else:
        try:
            low, high = (float(v) for v in text)
        except (TypeError, ValueError):
            raise SettingsError(f"band {text!r} is not a pair (LOW, HIGH) in Hz") from None
    if not 0 < low < high < nyquist:
        raise SettingsError(f"--band {low:g}-{high:g}: allowed is 0 < LOW < HIGH < {nyquist:g} Hz (half the "
                            f"sample rate {sample_rate} Hz the audio is read at)")
    return low, high


def check_feature(feature: str) -> str:
    if feature not in FEATURES:
        raise SettingsError(f"--feature {feature!r} is not one of {', '.join(FEATURES)}")
    return feature


def _check_fps(fps: float) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise SettingsError(f"--fps {fps!r} is not a number") from None
    if not (math.isfinite(fps) and 0 < fps <= 1000):
        raise SettingsError(f"--fps {fps!r}: allowed is a number above 0 and at most 1000")
    return fps


def _check_int(value: object, name: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise SettingsError(f"{name} {value!r}: allowed is a whole number from {minimum} to {maximum}")
    return int(value)


def check_expression(expr: str) -> str:
    """The expression checked against the schedules' allow-list, with ``x``, ``t`` and ``max_f``."""
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError("the expression is empty; give one of x and t, e.g. 0.65 - 0.3*x", field="--expr")
    try:
        keyframes.check_expression(expr, EXPRESSION_VARIABLES, field="--expr")
    except ScheduleError as exc:
        raise ScheduleError(f"{_message(exc)} (in --expr the names are x, the audio feature 0..1, t, the frame, "
                            "and max_f, the frame count)", field="--expr", text=expr, position=exc.position) from None
    return expr


def _message(exc: ScheduleError) -> str:
    """The message of a ScheduleError without its ``in 'field' at character N:`` prefix and text lines."""
    text = str(exc).split("\n")[0]
    return re.sub(r"^in '[^']*'(?: at character \d+)?: |^at character \d+: ", "", text)


# ------------------------------------------------------------------------------------------ audio


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """The file decoded to mono float32 at ``SAMPLE_RATE``; a missing or undecodable file is a MediaError."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file {str(path)!r} does not exist")
    librosa = _librosa()
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "PySoundFile failed. Trying audioread instead." and the like
            y, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
    except Exception as exc:  # soundfile and audioread raise many kinds
        raise MediaError(f"audio file {str(path)!r} cannot be decoded ({type(exc).__name__}: {exc}); "
                         f"allowed: {', '.join(EXTENSIONS)}") from None
    if y.size == 0:
        raise MediaError(f"audio file {str(path)!r} holds no samples")
    if not np.all(np.isfinite(y)):
        raise MediaError(f"audio file {str(path)!r} holds samples that are not finite numbers")
    return y


def band_pass(y: np.ndarray, band: tuple[float, float], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 4th-order Butterworth band-pass run forwards and backwards (no phase delay)."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, band, btype="bandpass", fs=sample_rate, output="sos")
    if y.size <= 3 * (2 * sos.shape[0] + 1):  # too short for filtfilt's padding
        return sosfilt_short(sos, y)
    return sosfiltfilt(sos, y).astype(np.float32)


def sosfilt_short(sos: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.signal import sosfilt

    return sosfilt(sos, y).astype(np.float32)


def feature_curve(y: np.ndarray, feature: str, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds, values) of the feature on the fine grid (one value every ``HOP`` samples)."""
    librosa = _librosa()
    check_feature(feature)
    if feature == "rms":
        values = librosa.feature.rms(y=y, frame_length=4 * HOP, hop_length=HOP)[0]
    else:
        onset = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=HOP)
        if feature == "onset":
            values = onset
        else:
            times = librosa.times_like(onset, sr=sample_rate, hop_length=HOP)
            _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sample_rate, hop_length=HOP, units="time")
            values = beat_pulses(times, np.asarray(beats, dtype=np.float64))
            return times, values
    times = librosa.times_like(values, sr=sample_rate, hop_length=HOP)
    return times, np.asarray(values, dtype=np.float64)


def beat_pulses(times: np.ndarray, beats: np.ndarray, decay_s: float = BEAT_DECAY_S) -> np.ndarray:
    """1 at each beat, decaying as exp(-(seconds since the last beat) / decay_s); 0 before the first beat."""
    values = np.zeros(times.shape, dtype=np.float64)
    if beats.size == 0:
        return values
    beats = np.sort(beats)
    last = np.searchsorted(beats, times, side="right") - 1
    after = last >= 0
    values[after] = np.exp(-(times[after] - beats[last[after]]) / decay_s)
    return values


def per_frame(times: np.ndarray, values: np.ndarray, fps: float, frames: int, duration: float) -> np.ndarray:
    """The mean of ``values`` over each frame's window [i/fps, (i+1)/fps); the value at the window's middle
    when no grid point falls in it; 0 for windows that start after the audio ends."""
    starts = np.arange(frames, dtype=np.float64) / fps
    edges = np.searchsorted(times, np.append(starts, frames / fps), side="left")
    sums = np.concatenate([[0.0], np.cumsum(values)])
    counts = edges[1:] - edges[:-1]
    out = np.interp(starts + 0.5 / fps, times, values)
    has = counts > 0
    out[has] = (sums[edges[1:]] - sums[edges[:-1]])[has] / counts[has]
    out[starts >= duration] = 0.0
    return out


def moving_average(values: np.ndarray, n: int) -> np.ndarray:
    """A centred moving average over ``n`` frames (the edges repeat the first and last value)."""
    if n <= 1 or values.size == 0:
        return values
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(values, size=n, mode="nearest")


def scaled(values: np.ndarray) -> np.ndarray:
    """Scaled to 0..1 (min -> 0, max -> 1); all zeros when the values do not change."""
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if values.size == 0 or high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(values)
    out = (values - low) / (high - low)
    out[np.abs(out) < 1e-9] = 0.0  # rounding noise of the moving average where it is silent
    return np.clip(out, 0.0, 1.0)


def frame_count(duration: float, fps: float) -> int:
    """The frames the audio covers: ceil(duration * fps) (a last, partial window counts)."""
    return max(1, math.ceil(duration * fps - 1e-9))


def audio_envelope(path: str | os.PathLike[str], fps: float, *, feature: str = "rms",
                   band: str | Sequence[float] | None = None, smooth: int = 1,
                   frames: int | None = None) -> np.ndarray:
    """``x``: the feature's value for every frame, scaled to 0..1 (float64, one per frame)."""
    fps = _check_fps(fps)
    check_feature(feature)
    bounds = parse_band(band)
    smooth = _check_int(smooth, "--smooth", 1, MAX_SMOOTH)
    if frames is not None:
        frames = _check_int(frames, "--frames", 1, keyframes.MAX_FRAMES)
    y = load_audio(path)
    duration = y.size / SAMPLE_RATE
    if frames is None:
        frames = frame_count(duration, fps)
        if frames > keyframes.MAX_FRAMES:
            raise SettingsError(f"the audio ({duration:.1f} s) gives {frames} frames at {fps:g} fps, more than "
                                f"{keyframes.MAX_FRAMES}; give --frames")
    if bounds is not None:
        y = band_pass(y, bounds)
    times, values = feature_curve(y, feature)
    return scaled(moving_average(per_frame(times, values, fps, frames, duration), smooth))


def apply_expression(expr: str, x: np.ndarray) -> np.ndarray:
    """``expr`` of ``x`` (the envelope), ``t`` (frame indices) and ``max_f`` (the frame count), evaluated by
    deforum.keyframes' evaluator after its allow-list check; one finite float per frame."""
    check_expression(expr)
    x = np.asarray(x, dtype=np.float64)
    return keyframes.evaluate_expression(expr, np.arange(x.size), max_frames=x.size, field="--expr",
                                         variables={"x": x})


def format_value(value: float) -> str:
    """4 significant digits, plain decimals (no exponent); below 1e-9 in size: 0."""
    if abs(value) < 1e-9:
        return "0"
    text = np.format_float_positional(float(value), precision=4, unique=True, fractional=False, trim="-")
    return "0" if text in ("-0", "0", "-0.") else text


def format_schedule(values: Sequence[float] | np.ndarray) -> str:
    """``0:(v0), 1:(v1), ...``: one key a frame."""
    return ", ".join(f"{i}:({format_value(v)})" for i, v in enumerate(values))


def audio_values(path: str | os.PathLike[str], fps: float, expr: str = DEFAULT_EXPR, **envelope_args) -> np.ndarray:
    """The expression's value for every frame (``audio_envelope``'s arguments: feature, band, smooth, frames)."""
    check_expression(expr)  # before the file is decoded
    return apply_expression(expr, audio_envelope(path, fps, **envelope_args))


def audio_schedule(path: str | os.PathLike[str], fps: float, expr: str = DEFAULT_EXPR, **envelope_args) -> str:
    """The schedule string ``0:(v0), 1:(v1), ...`` of ``audio_values``."""
    return format_schedule(audio_values(path, fps, expr, **envelope_args))


# ------------------------------------------------------------------------------------------ settings files


def schedule_field(name: str) -> str:
    """``name`` if it is a schedule field of the table; otherwise a SettingsError naming the allowed ones."""
    from deforum import settings as A

    allowed = A.schedule_fields()
    if name not in allowed:
        raise SettingsError(f"--field {name!r} is not a schedule field; allowed: {', '.join(allowed)}")
    return name


def write_into_settings(path: str | os.PathLike[str], field: str, schedule: str) -> tuple[Path, list[str]]:
    """Set ``field`` of the settings file at ``path`` to ``schedule``; (the path, notes).

    The file's other keys stay as they are. The result is checked as ``load_settings`` checks a file (every
    problem at once, nothing written then) and written atomically, in the format of ``save_settings``
    (UTF-8 JSON, indent 4) through ``deforum.image.io.write_atomic``, the writer ``save_settings`` uses.
    """
    import json

    from deforum import settings as A
    from deforum.image.io import write_atomic

    schedule_field(field)
    path = Path(path)
    data = dict(A.read_settings_file(path))
    data[field] = schedule
    loaded = A.apply_settings(A.defaults("args"), A.defaults("anim_args"), data, A.DEFAULT_PROMPTS,
                              A.DEFAULT_ANIMATION_PROMPTS, where=str(path))
    notes = []
    keys = schedule.count(":(")
    max_frames = vars(loaded.anim_args).get("max_frames")
    if isinstance(max_frames, int) and max_frames != keys:
        notes.append(f"the schedule has {keys} frames and the file's max_frames is {max_frames}")
    text = json.dumps(data, indent=4, ensure_ascii=False) + "\n"
    return write_atomic(path, text.encode("utf-8")), notes
