"""Video in and out: probe a video, extract its frames, and turn numbered frames into an mp4 (and gif).

Everything goes through the ffmpeg binary that imageio-ffmpeg ships (no system ffmpeg), called with
argument lists (never a shell). Spec: v06-animation.md sections 1.5, 7, 10.7 and 12.1 #14.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from deforum.errors import MediaError, SettingsError
from deforum.outputs import MARK, check_output_path, mark_gif

log = logging.getLogger(__name__)

MANIFEST_NAME = "extracted_frames.json"
"""Written next to extracted frames; says which video (and which `extract_nth_frame`) they came from."""

_FRAME_NAME = re.compile(r"^(\d{5,})\.jpg$")
_HASH_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------
# ffmpeg plumbing


def ffmpeg_exe() -> str:
    """Path of imageio-ffmpeg's bundled ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args: Sequence[str], *, what: str, path: Path | str,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run ffmpeg with `args`; if `check` and it fails, raise MediaError naming `path` and ffmpeg's reason."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    log.debug("ffmpeg: %s", cmd)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if check and proc.returncode != 0:
        raise MediaError(f"could not {what} {str(path)!r}: {_ffmpeg_reason(proc.stderr)}")
    return proc


def _ffmpeg_reason(stderr: bytes) -> str:
    """The most telling line of ffmpeg's stderr, without ffmpeg's '[component @ 0x...]' prefixes."""
    lines = [re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", ln.strip())
             for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|invalid|no such|not found|denied|unable|failed", ln,
                                              re.IGNORECASE)]
    return (errors[0] if errors else lines[-1] if lines else "ffmpeg failed without a message")[:300]


_FRAMECRC_LINE = re.compile(rb"^\d+,\s*-?\d+,")


def _framecrc_count(listing: bytes) -> int:
    """Packets in the output of ffmpeg's `-f framecrc -` muxer: one line per packet.

    Each packet line is 'stream, dts, pts, duration, size, checksum'; header lines start with '#'. With
    `-c copy` the packets are the stored ones (nothing decoded); otherwise each is one decoded frame.
    Unlike the `frame=` lines of `-progress` (which ffmpeg 7.0 does not print for a stream copy), this
    listing is the same in every ffmpeg version.
    """
    return sum(1 for line in listing.splitlines() if _FRAMECRC_LINE.match(line))


# --------------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int | None
    width: int
    height: int

    def output_fps(self, extract_nth_frame: int = 1) -> float:
        """The video-cell `fps` that keeps the source's timing after taking every n-th frame."""
        return self.fps / extract_nth_frame


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (.*)")
_SIZE = re.compile(r"(?<![\w/])([1-9]\d*)x([1-9]\d*)(?!\w)")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees")


def _require_file(path: Path, field: str, kind: str = "video") -> None:
    """MediaError naming ``field`` unless ``path`` is a readable file (``kind``: 'video' or 'audio')."""
    if not path.exists():
        raise MediaError(f"{field}: {kind} file {str(path)!r} does not exist")
    if not path.is_file():
        raise MediaError(f"{field}: {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{field}: {kind} file {str(path)!r} is not readable")


def _parse_stream_info(path: Path, stderr: str, field: str) -> tuple[float, int, int]:
    """fps, width, height of the first video stream from ffmpeg's `-i` report (display orientation)."""
    if "Invalid data found" in stderr:
        raise MediaError(f"{field}: {str(path)!r} is not a video file ffmpeg can read "
                         "(invalid data: a damaged file or not a video)")
    if "Error opening input" in stderr:
        raise MediaError(f"{field}: cannot open video {str(path)!r}: {_ffmpeg_reason(stderr.encode())}")
    match = _STREAM.search(stderr)
    if not match:
        raise MediaError(f"{field}: {str(path)!r} has no video stream (an empty or audio-only file?)")
    stream = match.group(1)
    size = _SIZE.search(stream)
    if not size:
        raise MediaError(f"{field}: cannot read the frame size of {str(path)!r} from {stream!r}")
    width, height = int(size.group(1)), int(size.group(2))
    rates = {kind: float(value) * (1000 if k else 1) for value, k, kind in _RATE.findall(stream)}
    fps = rates.get("fps") or rates.get("tbr")
    if not fps:
        raise MediaError(f"{field}: cannot read the frame rate of {str(path)!r} from {stream!r}")
    # ffmpeg auto-rotates on decode, so extracted frames come out in display orientation.
    rotation = _ROTATION.search(stderr[match.end():])
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        width, height = height, width
    return fps, width, height


def probe_video(path: str | Path, *, count_frames: bool = True, field: str = "video_init_path") -> VideoInfo:
    """Frame rate, size and (decoded) frame count of a video file.

    The frame count comes from decoding the whole stream (ffmpeg's `-i` report has no reliable count),
    so it is exact but costs a decode; pass `count_frames=False` to skip it (frame_count is then None).
    The decoded frames are counted from ffmpeg's framecrc listing (see `_framecrc_count`), not from its
    progress report, whose `frame=` lines differ between ffmpeg versions.
    Raises MediaError for a missing or unreadable file, a file that is not a video, or zero frames.
    """
    path = Path(path)
    _require_file(path, field)
    if not count_frames:
        proc = _run_ffmpeg(["-i", str(path)], what="read", path=path, check=False)
        fps, width, height = _parse_stream_info(path, proc.stderr.decode("utf-8", "replace"), field)
        return VideoInfo(fps=fps, frame_count=None, width=width, height=height)
    # wrapped_avframe hands each decoded frame to the muxer without copying its pixels (as `-f null` does).
    proc = _run_ffmpeg(["-nostats", "-i", str(path), "-map", "0:v:0?", "-fps_mode", "passthrough",
                        "-c:v", "wrapped_avframe", "-f", "framecrc", "-"], what="read", path=path, check=False)
    stderr = proc.stderr.decode("utf-8", "replace")
    fps, width, height = _parse_stream_info(path, stderr, field)
    if proc.returncode != 0:
        raise MediaError(f"{field}: could not decode video {str(path)!r}: {_ffmpeg_reason(proc.stderr)}")
    frame_count = _framecrc_count(proc.stdout)
    if frame_count == 0:
        raise MediaError(f"{field}: video {str(path)!r} has no frames")
    return VideoInfo(fps=fps, frame_count=frame_count, width=width, height=height)


def read_video_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video as H×W×3 uint8 RGB arrays (for checks and tests; holds all in memory)."""
    path = Path(path)
    info = probe_video(path, count_frames=False, field="video")
    proc = _run_ffmpeg(["-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], what="decode", path=path)
    frame_bytes = info.width * info.height * 3
    data = proc.stdout
    if len(data) % frame_bytes:
        raise MediaError(f"decoding {str(path)!r} gave {len(data)} bytes, not a whole number of "
                         f"{info.width}x{info.height} frames")
    frames = np.frombuffer(data, np.uint8).reshape(-1, info.height, info.width, 3)
    return list(frames)


def count_video_frames(path: str | Path) -> int:
    """Number of decodable frames of a video (0 raises MediaError)."""
    count = probe_video(path, field="video").frame_count
    assert count is not None
    return count


# --------------------------------------------------------------------------------------------------
# Extraction (Video Input mode)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _source_identity(path: Path) -> dict:
    stat = path.stat()
    return {"source": str(path.resolve()), "size": stat.st_size, "sha256": _file_sha256(path)}


def _numbered_frames(out_dir: Path) -> list[Path]:
    return sorted((p for p in out_dir.iterdir() if _FRAME_NAME.match(p.name)),
                  key=lambda p: int(p.stem))


def _reusable_frames(out_dir: Path, identity: dict, extract_nth_frame: int) -> list[Path] | None:
    """The frames of an earlier extraction of the same video with the same n, or None."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    # The content hash decides; the path may differ (a copied or re-mounted video is the same video).
    if (manifest.get("sha256"), manifest.get("size"), manifest.get("extract_nth_frame")) != (
            identity["sha256"], identity["size"], extract_nth_frame):
        return None
    count = manifest.get("count")
    if isinstance(count, bool) or not isinstance(count, int):
        return None
    frames = _numbered_frames(out_dir)
    expected = [f"{i:05d}.jpg" for i in range(1, count + 1)]
    if [p.name for p in frames] != expected or any(p.stat().st_size == 0 for p in frames):
        return None
    return frames


def extract_frames(video_path: str | Path, out_dir: str | Path, extract_nth_frame: int = 1,
                   overwrite: bool = True, *, field: str = "video_init_path") -> list[Path]:
    """Write every `extract_nth_frame`-th frame (0-based index divisible by n) as 00001.jpg, 00002.jpg ...

    `overwrite=False` reuses an earlier extraction only when its manifest shows it came from the same
    video content with the same n; anything else is re-extracted. Returns the frame paths in order.
    """
    if isinstance(extract_nth_frame, bool) or not isinstance(extract_nth_frame, int) or extract_nth_frame < 1:
        raise SettingsError(f"extract_nth_frame must be a whole number >= 1, got {extract_nth_frame!r}")
    video_path, out_dir = Path(video_path), Path(out_dir)
    info = probe_video(video_path, count_frames=False, field=field)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MediaError(f"cannot create frames folder {str(out_dir)!r}: {exc.strerror or exc}") from exc
    identity = _source_identity(video_path)
    if not overwrite:
        frames = _reusable_frames(out_dir, identity, extract_nth_frame)
        if frames is not None:
            log.info("reusing %d frames already extracted from %s in %s", len(frames), video_path, out_dir)
            return frames
        log.info("frames in %s are not from %s with extract_nth_frame=%d; extracting again",
                 out_dir, video_path, extract_nth_frame)

    # Remove the old manifest first, so a killed extraction is never mistaken for a complete one.
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for old in _numbered_frames(out_dir):
        old.unlink()
    select = [] if extract_nth_frame == 1 else ["-vf", f"select=not(mod(n\\,{extract_nth_frame}))"]
    _run_ffmpeg(["-i", str(video_path), "-map", "0:v:0", *select, "-fps_mode", "passthrough",
                 "-q:v", "2", "-start_number", "1", str(out_dir).replace("%", "%%") + "/%05d.jpg"],
                what="extract frames from", path=video_path)
    frames = _numbered_frames(out_dir)
    if not frames:
        raise MediaError(f"{field}: video {str(video_path)!r} has no frames")
    manifest = {**identity, "fps": info.fps, "extract_nth_frame": extract_nth_frame, "count": len(frames)}
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    log.info("extracted %d frames from %s (%.3g fps; suggested output fps %.3g)",
             len(frames), video_path, info.fps, info.output_fps(extract_nth_frame))
    return frames


# --------------------------------------------------------------------------------------------------
# Frames -> mp4 / gif (the video cell)


def _pattern_regex(pattern: str) -> re.Pattern:
    """A regex matching the names of a printf-style file-name pattern with one %d / %0Nd field."""
    specs = re.findall(r"%0?\d*d", pattern)
    if len(specs) != 1 or pattern.count("%") != 1:
        raise SettingsError(f"image_path must contain exactly one frame number field like %05d, "
                            f"got {pattern!r}")
    before, after = pattern.split(specs[0])
    return re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + "$")


def frames_from_pattern(pattern: str | Path) -> list[Path]:
    """The files matching a numbered printf pattern ('folder/name_%05d.png'), in number order.

    The sequence starts at the lowest number present and must have no gaps: missing numbers raise a
    MediaError that names them.
    """
    pattern = str(pattern)
    folder, name = os.path.split(pattern)
    folder_path = Path(folder or ".")
    regex, fmt = _pattern_regex(name), name
    if not folder_path.is_dir():
        raise MediaError(f"image_path: folder {str(folder_path)!r} does not exist")
    numbered = {}
    for entry in folder_path.iterdir():
        match = regex.match(entry.name)
        if match and entry.is_file() and entry.name == fmt % int(match.group(1)):
            numbered[int(match.group(1))] = entry
    if not numbered:
        raise MediaError(f"no frames match {pattern!r}")
    first, last = min(numbered), max(numbered)
    missing = [n for n in range(first, last + 1) if n not in numbered]
    if missing:
        shown = ", ".join(fmt % n for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise MediaError(f"{len(missing)} frame(s) missing from the sequence {pattern!r} "
                         f"({fmt % first} .. {fmt % last}): {shown}")
    return [numbered[n] for n in range(first, last + 1)]


def _frame_list(frames: str | Path | Iterable[str | Path], pattern: str | None) -> list[Path]:
    if isinstance(frames, (str, Path)):
        text = str(frames)
        if "%" in text:
            return frames_from_pattern(text)
        if Path(text).is_dir():
            if pattern is None:
                raise SettingsError(f"frames: {text!r} is a folder; also give a pattern like '%05d.png'")
            return frames_from_pattern(os.path.join(text, pattern))
        raise MediaError(f"frames: {text!r} is neither a numbered pattern (with %05d) nor a folder")
    paths = [Path(p) for p in frames]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise MediaError(f"{len(absent)} frame file(s) missing: {', '.join(absent[:10])}"
                         + (" ..." if len(absent) > 10 else ""))
    return paths


def _check_fps(fps: object) -> float:
    """``fps`` as a float if the fps field of the video cell allows it (its range in ``deforum.settings``)."""
    from deforum.settings import FIELDS

    field = FIELDS["video"]["fps"]
    low, high = field.minimum, field.maximum
    if (isinstance(fps, bool) or not isinstance(fps, (int, float)) or math.isnan(fps)
            or not (low <= fps <= high)):
        raise SettingsError(f"fps must be a number from {low:g} to {high:g}, got {fps!r}")
    return float(fps)


def _check_max_frames(max_frames: object) -> int | None:
    """v0.6's video-cell max_frames is a string ("200"); accept that or an int."""
    if max_frames is None:
        return None
    if isinstance(max_frames, str) and max_frames.strip().isdigit():
        max_frames = int(max_frames.strip())
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise SettingsError(f"max_frames must be a whole number >= 1, got {max_frames!r}")
    return max_frames


def _rgb_frame(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot read frame image {str(path)!r}: {exc}") from exc


def _temp_beside(final: Path, suffix: str) -> Path:
    """A fresh temporary file in the folder of `final` (so os.replace is atomic); MediaError if unwritable.

    Its name, ``.{stem}.{pid}.XXXXXXXX{suffix}``, carries this process's id, so the temp files of a process
    that was killed mid-encode are recognised and removed by the next encode of the same name.
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(final, suffix)
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.{os.getpid()}.", suffix=suffix)
    except OSError as exc:
        raise MediaError(f"cannot write to the output folder {str(final.parent)!r}: "
                         f"{exc.strerror or exc}") from exc
    os.close(fd)
    # mkstemp makes the file private (0600); give the finished video the permissions of a normal file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def _remove_stale_temps(final: Path, suffix: str) -> None:
    """Remove ``_temp_beside`` files of ``final`` left by processes that no longer run (POSIX only)."""
    if os.name != "posix":
        return  # os.kill(pid, 0) is not a liveness test on Windows
    head = f".{final.stem}."
    for path in final.parent.glob(f"{glob.escape(head)}*{glob.escape(suffix)}"):
        pid = path.name[len(head):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted encode", path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def _x264_process(width: int, height: int, fps: float, out: Path) -> subprocess.Popen:
    """ffmpeg reading raw RGB frames on stdin and writing libx264 (crf 17, veryfast, yuv420p) to ``out``.

    One exact rational rate for input and output, so one image is one frame; yuv420p needs even sizes, so
    odd ones get one black row/column at the bottom/right.
    """
    pad = ["-vf", f"pad={width + width % 2}:{height + height % 2}:0:0"] if (width % 2 or height % 2) else []
    rate = str(Fraction(fps).limit_denominator(10_000))
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate,
            "-i", "pipe:0", *pad, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "17",
            "-preset", "veryfast", "-r", rate, "-fps_mode", "cfr", "-metadata", f"comment={MARK}",
            "-f", "mp4", "-y", str(out)]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", *args]
    log.debug("ffmpeg: %s", cmd)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)


class Mp4Writer:
    """Frames in, mp4 out: HxWx3 uint8 frames piped into libx264 as they come (no files in between).

    The mp4 is written under a temporary name beside ``path`` and renamed on ``close``, so an interrupted
    encode never leaves a truncated file under the final name; ``abort`` discards it.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *, field: str = "mp4_path"):
        fps = _check_fps(fps)
        self.path, self.size, self.count = check_output_path(path, "mp4", field), (height, width), 0
        self.tmp = _temp_beside(self.path, ".mp4")
        self.proc = _x264_process(width, height, fps, self.tmp)

    def write(self, frame: np.ndarray, name: str | None = None) -> None:
        if frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            what = name or f"frame {self.count}"
            got = f"{frame.shape[1]}x{frame.shape[0]}" if frame.ndim >= 2 else str(frame.shape)
            raise MediaError(f"{what} is {got} {frame.dtype}, but the video is {self.size[1]}x{self.size[0]} "
                             f"RGB uint8; all frames need one size")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.finish()  # raises with ffmpeg's reason
        self.count += 1

    def finish(self) -> Path:
        """Wait for ffmpeg; the encoded file is still under its temporary name (``self.tmp``)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped early; its stderr below says why
        stderr = self.proc.stderr.read() if self.proc.stderr else b""
        if self.proc.wait() != 0:
            self.abort()
            raise MediaError(f"ffmpeg could not encode {str(self.path)!r}: {_ffmpeg_reason(stderr)}")
        return self.tmp

    def close(self) -> Path:
        """Finish the encode and rename the file into place."""
        self.finish()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):  # ffmpeg is gone: what the pipe still buffers cannot be written
            self.proc.stdin.close()
        self.tmp.unlink(missing_ok=True)


def _encode_mp4(paths: list[Path], writer: Mp4Writer) -> None:
    """Pipe the frame images into ``writer``, one image = one frame (no rate conversion anywhere)."""
    try:
        for path in paths:
            writer.write(_rgb_frame(path), name=f"frame {str(path)!r}")
        writer.finish()
    except BaseException:
        writer.abort()
        raise


def _encode_gif(mp4: Path, tmp_gif: Path) -> None:
    """Palette-based gif of `mp4`, frame for frame (two passes so frames are not held in memory)."""
    palette = _temp_beside(tmp_gif, ".png")
    try:
        _run_ffmpeg(["-i", str(mp4), "-vf", "palettegen", "-frames:v", "1", "-update", "1",
                     "-y", str(palette)], what="make a gif palette for", path=mp4)
        _run_ffmpeg(["-i", str(mp4), "-i", str(palette), "-lavfi", "paletteuse", "-fps_mode", "passthrough",
                     "-f", "gif", "-y", str(tmp_gif)], what="make a gif of", path=mp4)
    finally:
        palette.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Sound: an audio track muxed into a finished mp4 (the video cell's add_soundtrack / soundtrack_path)

_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*?: Audio: ")
_PCM_RATE = 8000  # the sample rate audio is decoded at to measure its length (1/8000 s resolution)


def check_audio(path: str | Path, field: str) -> Path:
    """``path`` if it is a readable file with an audio stream ffmpeg can open; else MediaError naming ``field``."""
    path = Path(path)
    _require_file(path, field, "audio")
    proc = _run_ffmpeg(["-i", str(path)], what="read", path=path, check=False)
    report = proc.stderr.decode("utf-8", "replace")
    if not re.search(r"^Input #0", report, re.MULTILINE):
        raise MediaError(f"{field}: {str(path)!r} is not an audio or video file ffmpeg can read: "
                         f"{_ffmpeg_reason(proc.stderr)}")
    if not _AUDIO_STREAM.search(report):
        raise MediaError(f"{field}: {str(path)!r} has no audio stream")
    return path


def soundtrack_source(add_soundtrack: str = "None", soundtrack_path: str | Path = "",
                      video_init_path: str | Path = "") -> tuple[Path, str] | None:
    """The audio file the video cell muxes and the field it came from, checked; None for 'None'.

    'File' takes ``soundtrack_path``, 'Init Video' the audio of ``video_init_path``. A missing choice's
    path is a SettingsError; a missing/unreadable file or one without sound a MediaError (both name the field).
    """
    from deforum.settings.fields import SOUNDTRACKS

    if add_soundtrack not in SOUNDTRACKS:
        raise SettingsError(f"add_soundtrack must be one of {', '.join(map(repr, SOUNDTRACKS))}, "
                            f"got {add_soundtrack!r}")
    if add_soundtrack == "None":
        return None
    field, path = (("soundtrack_path", soundtrack_path) if add_soundtrack == "File"
                   else ("video_init_path", video_init_path))
    if not str(path or "").strip():
        raise SettingsError(f"add_soundtrack={add_soundtrack!r} needs {field} (an audio file"
                            f"{'' if field == 'soundtrack_path' else ' or video with sound'}), got {str(path)!r}")
    return check_audio(path, field), field


def audio_duration(path: str | Path, *, field: str = "audio") -> float:
    """Seconds of sound in the first audio stream of ``path``, measured by decoding it (edit lists applied)."""
    path = Path(path)
    proc = _run_ffmpeg(["-nostats", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(_PCM_RATE),
                        "-f", "s16le", "-"], what="decode the audio of", path=path, check=False)
    if proc.returncode != 0:
        raise MediaError(f"{field}: could not decode the audio of {str(path)!r}: {_ffmpeg_reason(proc.stderr)}")
    return len(proc.stdout) / 2 / _PCM_RATE


def video_duration(path: str | Path) -> float:
    """Seconds of video in ``path``: its stored frames over its frame rate."""
    return count_packets(Path(path)) / probe_video(path, count_frames=False, field="video").fps


def _mux_audio(video: Path, audio: Path, out: Path, duration: float, field: str) -> None:
    """Write ``out``: the video stream of ``video`` copied, the first audio stream of ``audio`` as AAC, cut
    or padded with silence to ``duration`` seconds; the container keeps deforum's mark."""
    seconds = f"{duration:.6f}"
    proc = _run_ffmpeg(["-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0",
                        "-c:v", "copy", "-af", f"apad,atrim=duration={seconds}", "-c:a", "aac", "-b:a", "192k",
                        "-t", seconds, "-map_metadata", "0", "-metadata", f"comment={MARK}",
                        "-f", "mp4", "-y", str(out)], what="add sound to", path=video, check=False)
    if proc.returncode != 0:
        raise MediaError(f"{field}: could not mux the audio of {str(audio)!r} into {str(video)!r}: "
                         f"{_ffmpeg_reason(proc.stderr)}")


def add_audio(mp4_path: str | Path, audio_path: str | Path, *, field: str = "--audio",
              mp4_field: str = "mp4_path") -> Path:
    """Mux ``audio_path``'s sound (AAC, cut or padded to the video's length) into the finished ``mp4_path``.

    The video stream is copied, not re-encoded; an earlier sound track is replaced. The result is written
    under a temporary name and renamed over ``mp4_path`` (which must be an mp4 deforum wrote). Returns the path.
    """
    mp4_path = check_output_path(mp4_path, "mp4", mp4_field)
    audio = check_audio(audio_path, field)
    if not mp4_path.is_file():
        raise MediaError(f"{mp4_field}: video {str(mp4_path)!r} does not exist")
    tmp = _temp_beside(mp4_path, ".mp4")
    try:
        _mux_audio(mp4_path, audio, tmp, video_duration(mp4_path), field)
        os.replace(tmp, mp4_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("added the sound of %s to %s", audio, mp4_path)
    return mp4_path


def make_video(frames: str | Path | Iterable[str | Path], mp4_path: str | Path, fps: float = 12, *,
               pattern: str | None = None, make_gif: bool = False, gif_path: str | Path | None = None,
               max_frames: int | str | None = None, field: str = "mp4_path",
               gif_field: str = "gif_path", audio: str | Path | None = None,
               audio_field: str = "--audio") -> Path:
    """Encode frames to an mp4 (libx264, crf 17, preset veryfast, yuv420p) with exactly one frame per image.

    `frames` is a printf pattern ('out/20220903000939_%05d.png'), a folder plus `pattern`, or a list of
    image paths. `max_frames` keeps only the first images. With `make_gif`, also writes a palette gif
    (default: the mp4's name with .gif). Both files are written under a temporary name and renamed, so a
    killed encode never leaves a truncated file under the final name. Returns the mp4 path.
    Neither output overwrites a file deforum did not write (``deforum.outputs.check_output_path``, named
    ``field`` / ``gif_field`` in errors); that is checked before any frame is read.
    With ``audio`` (a file with sound; ``audio_field`` names it in errors, which come before any encoding),
    its first audio stream is muxed in as AAC, cut or padded with silence to the video's length.
    """
    fps = _check_fps(fps)
    limit = _check_max_frames(max_frames)
    mp4_path = check_output_path(mp4_path, "mp4", field)
    sound = check_audio(audio, audio_field) if audio is not None else None
    gif_final = None
    if make_gif:
        gif_final = check_output_path(Path(gif_path) if gif_path is not None else mp4_path.with_suffix(".gif"),
                                      "gif", gif_field)
    paths = _frame_list(frames, pattern)
    if not paths:
        raise MediaError("no frames to make a video from")
    if limit is not None:
        paths = paths[:limit]
    height, width = _rgb_frame(paths[0]).shape[:2]
    writer = Mp4Writer(mp4_path, width, height, fps, field=field)
    tmp = writer.tmp
    try:
        _encode_mp4(paths, writer)
        encoded = count_packets(tmp)
        if encoded != len(paths):
            raise MediaError(f"encoded {encoded} frames instead of {len(paths)} into {str(mp4_path)!r}")
        if gif_final is not None:
            tmp_gif = _temp_beside(gif_final, ".gif")
            try:
                _encode_gif(tmp, tmp_gif)
                mark_gif(tmp_gif)
                os.replace(tmp_gif, gif_final)
            finally:
                tmp_gif.unlink(missing_ok=True)
        if sound is not None:
            muxed = _temp_beside(mp4_path, ".mp4")
            try:
                _mux_audio(tmp, sound, muxed, len(paths) / fps, audio_field)
                os.replace(muxed, tmp)
            finally:
                muxed.unlink(missing_ok=True)
        os.replace(tmp, mp4_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%d frames at %g fps%s)", mp4_path, len(paths), fps,
             f", sound from {sound}" if sound is not None else "")
    return mp4_path


def count_packets(path: Path) -> int:
    """Video frames stored in a file, counted without decoding (one packet per frame for h264/mp4)."""
    proc = _run_ffmpeg(["-nostats", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
                       what="check", path=path)
    return _framecrc_count(proc.stdout)


# --------------------------------------------------------------------------------------------------
# Which frames: a run, per-step images, or manual paths


def run_frames_pattern(outdir: str | Path, timestring: str) -> Path:
    """The frame pattern of one animation run: `{outdir}/{timestring}_%05d.png`."""
    return Path(outdir) / f"{timestring}_%05d.png"


def step_frames_folder(outdir: str | Path, timestring: str, path_name_modifier: str) -> Path:
    """The newest per-step folder `{timestring}_{index:02}_{seed}` of this run holding `{modifier}_*.png`.

    v0.6 took the newest sub-folder of any kind (possibly `inputframes` or another run, spec gen. 11 #25);
    this only considers folders of this run that actually hold per-step images.
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise MediaError(f"output folder {str(outdir)!r} does not exist")
    candidates = [d for d in outdir.iterdir()
                  if d.is_dir() and d.name.startswith(f"{timestring}_")
                  and any(d.glob(f"{path_name_modifier}_[0-9][0-9][0-9][0-9][0-9]*.png"))]
    if not candidates:
        raise MediaError(f"render_steps: no per-step folder '{timestring}_NN_seed' with "
                         f"'{path_name_modifier}_00000.png'... in {str(outdir)!r}; was "
                         "save_sample_per_step on for this run?")
    return max(candidates, key=lambda d: d.stat().st_mtime)


@dataclass(frozen=True)
class VideoResult:
    mp4_path: Path
    gif_path: Path | None
    frame_count: int
    fps: float


PATH_NAME_MODIFIERS = ("x0_pred", "x")


def video_cell(*, outdir: str | Path, timestring: str, skip_video_for_run_all: bool = False,
               fps: float = 12, use_manual_settings: bool = False, image_path: str = "",
               mp4_path: str = "", max_frames: int | str = "200", render_steps: bool = False,
               path_name_modifier: str = "x0_pred", make_gif: bool = False, add_soundtrack: str = "None",
               soundtrack_path: str = "", video_init_path: str = "") -> VideoResult | None:
    """The v0.6 video cell (spec 10.7): frames of this run, its per-step images, or manual paths -> mp4.

    Returns None when `skip_video_for_run_all` is set. Every frame on disk is used in the run and
    render_steps modes (v0.6 capped them at max_frames / steps, which they never exceed); the manual
    mode honours `max_frames`. `add_soundtrack` ('None', 'File': `soundtrack_path`, 'Init Video': the
    sound of `video_init_path`) muxes that audio in, trimmed to the video (A1111 Deforum's fields).
    """
    if skip_video_for_run_all:
        log.info("skipping video creation (skip_video_for_run_all is on)")
        return None
    fps = _check_fps(fps)
    sound = soundtrack_source(add_soundtrack, soundtrack_path, video_init_path)  # before any frame is read
    limit = None
    if use_manual_settings:
        if not image_path or not mp4_path:
            raise SettingsError("use_manual_settings needs both image_path (like '.../name_%05d.png') and "
                                f"mp4_path, got image_path={image_path!r}, mp4_path={mp4_path!r}")
        frames, target, limit = Path(image_path), Path(mp4_path), _check_max_frames(max_frames)
    elif render_steps:
        if path_name_modifier not in PATH_NAME_MODIFIERS:
            raise SettingsError(f"path_name_modifier must be one of {PATH_NAME_MODIFIERS}, "
                                f"got {path_name_modifier!r}")
        folder = step_frames_folder(outdir, timestring, path_name_modifier)
        frames = folder / f"{path_name_modifier}_%05d.png"
        target = folder / f"{timestring}_{path_name_modifier}.mp4"
    else:
        frames, target = run_frames_pattern(outdir, timestring), Path(outdir) / f"{timestring}.mp4"
    field = "mp4_path" if use_manual_settings else "video"
    gif = target.with_suffix(".gif") if make_gif else None
    check_output_path(target, "mp4", field)  # before the frames are listed or read
    if gif is not None:
        check_output_path(gif, "gif", "make_gif")
    paths = frames_from_pattern(frames)
    if limit is not None:
        paths = paths[:limit]
    audio, audio_field = sound if sound is not None else (None, "soundtrack_path")
    make_video(paths, target, fps, make_gif=make_gif, gif_path=gif, field=field, gif_field="make_gif",
               audio=audio, audio_field=audio_field)
    return VideoResult(mp4_path=target, gif_path=gif, frame_count=len(paths), fps=fps)


def video_html(mp4_path: str | Path, width: int | None = None) -> str:
    """An HTML <video> tag with the mp4 embedded as a base64 data URL (how v0.6 showed it in Colab)."""
    mp4_path = Path(mp4_path)
    try:
        data = base64.b64encode(mp4_path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise MediaError(f"cannot read video {str(mp4_path)!r}: {exc.strerror or exc}") from exc
    size = f' width="{int(width)}"' if width else ""
    return f'<video{size} controls loop><source src="data:video/mp4;base64,{data}" type="video/mp4"></video>'


# --------------------------------------------------------------------------------------------------
# Flow interpolation of a frame folder (``deforum video FOLDER --interpolate N``)

INTERPOLATE_MAX = 16
"""The most frames ``--interpolate`` makes of each frame (a frame and 15 made between it and the next)."""
INTERPOLATED_PATTERN = "%05d.png"


def check_interpolate(n: object, field: str = "--interpolate") -> int:
    """``n`` if it is a whole number from 2 to ``INTERPOLATE_MAX``; a SettingsError naming ``field`` otherwise."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= INTERPOLATE_MAX:
        raise SettingsError(f"{field} must be a whole number from 2 to {INTERPOLATE_MAX} (the frames made of "
                            f"each frame: N - 1 are put between it and the next), got {n!r}")
    return int(n)


def interpolated_path(out_folder: str | Path, index: int) -> Path:
    """The file of output frame ``index`` (0-based) of ``interpolate_folder``: ``00000.png``, ``00001.png``, ..."""
    return Path(out_folder) / (INTERPOLATED_PATTERN % index)


def interpolate_folder(frames: str | Path | Iterable[str | Path], out_folder: str | Path, n: int,
                       method: str = "DIS Medium", *, pattern: str | None = None, models_path: str | Path = "models",
                       field: str = "--interpolate") -> list[Path]:
    """Write the frames with ``n - 1`` frames made between each two, along their optical flow, into ``out_folder``.

    ``frames`` as ``make_video`` takes them (a numbered pattern, a folder plus ``pattern``, or a list of paths).
    The made frames are ``deforum.motion.flow.flow_tween`` of the two frames around them at t = k / n (the
    optical-flow cadence's warp and blend, flow factor 1). The output is ``(F - 1) * n + 1`` PNGs named
    ``00000.png`` ... in order (``INTERPOLATED_PATTERN``), each written atomically; none overwrites a file
    deforum did not write, and frames a longer earlier interpolation left after the last are removed. ``method``
    is a ``deforum.motion.flow`` method. Returns the paths in order.
    """
    from deforum.image.io import write_atomic
    from deforum.motion.flow import estimate_flow, flow_tween
    from deforum.outputs import is_ours, png_info

    n = check_interpolate(n, field)
    paths = _frame_list(frames, pattern)
    if not paths:
        raise MediaError("no frames to interpolate")
    total = (len(paths) - 1) * n + 1
    out_folder = Path(out_folder)
    if out_folder.exists() and not out_folder.is_dir():
        raise MediaError(f"{field}: {str(out_folder)!r} is a file, not a folder for the interpolated frames")
    for index in range(total):  # every refusal before the first frame is written
        check_output_path(interpolated_path(out_folder, index), "png", field)
    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return estimate_flow(a, b, method, models_path=str(models_path))
    written: list[Path] = []

    def save(image: np.ndarray) -> None:
        path = interpolated_path(out_folder, len(written))
        frame = Image.fromarray(np.asarray(image, np.uint8))
        write_atomic(path, lambda stream: frame.save(stream, format="PNG", pnginfo=png_info()))
        written.append(path)

    before = _rgb_frame(paths[0])
    save(before)
    for path in paths[1:]:
        after = _rgb_frame(path)
        if after.shape != before.shape:
            raise MediaError(f"frame {str(path)!r} is {after.shape[1]}x{after.shape[0]}, the frame before it "
                             f"{before.shape[1]}x{before.shape[0]}; all frames need one size")
        a, b = before.astype(np.float32), after.astype(np.float32)
        for k in range(1, n):
            save(np.clip(np.rint(flow_tween(a, b, k / n, 1.0, flow)), 0, 255))
        save(after)
        before = after
    index = total
    while is_ours(stale := interpolated_path(out_folder, index), "png"):
        stale.unlink()
        index += 1
    return written


def interpolated_video(frames: str | Path | Iterable[str | Path], mp4_path: str | Path, fps: float, n: int, *,
                       out_folder: str | Path | None = None, keep_fps: bool = False, method: str = "DIS Medium",
                       pattern: str | None = None, models_path: str | Path = "models", make_gif: bool = False,
                       max_frames: int | str | None = None, field: str = "mp4_path", gif_field: str = "gif_path",
                       audio: str | Path | None = None, audio_field: str = "--audio") -> VideoResult:
    """``interpolate_folder`` into ``out_folder`` (default: beside the mp4, ``<mp4 name>_x<n>/``), then the mp4.

    The video plays at ``fps * n`` so it lasts as long as the frames at ``fps`` did (slow motion with
    ``keep_fps``: it stays at ``fps``, n times longer). ``max_frames`` keeps only the first source frames.
    Every argument is checked before a frame is made.
    """
    n = check_interpolate(n)
    fps = _check_fps(fps)
    out_fps = fps if keep_fps else fps * n
    if not keep_fps:
        from deforum.settings import FIELDS

        high = FIELDS["video"]["fps"].maximum
        if out_fps > high:
            raise SettingsError(f"--interpolate {n} at --fps {fps:g} makes {out_fps:g} fps, more than the {high:g} "
                                "a video may have; use a smaller --interpolate or --fps, or --keep-fps")
    limit = _check_max_frames(max_frames)
    mp4_path = check_output_path(mp4_path, "mp4", field)
    gif = check_output_path(mp4_path.with_suffix(".gif"), "gif", gif_field) if make_gif else None
    if audio is not None:
        check_audio(audio, audio_field)
    paths = _frame_list(frames, pattern)
    if limit is not None:
        paths = paths[:limit]
    folder = Path(out_folder) if out_folder is not None else mp4_path.with_name(f"{mp4_path.stem}_x{n}")
    made = interpolate_folder(paths, folder, n, method, models_path=models_path)
    make_video(made, mp4_path, out_fps, make_gif=make_gif, gif_path=gif, field=field, gif_field=gif_field,
               audio=audio, audio_field=audio_field)
    return VideoResult(mp4_path=mp4_path, gif_path=gif, frame_count=len(made), fps=out_fps)
