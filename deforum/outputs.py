"""The one rule for output paths: a command writes only files of the right kind and never overwrites a file
it did not write (a frame, a settings file, a resume state, anything else of the user's).

Every file this project writes as an output carries a mark, and an existing file is replaced only when it
carries that mark:

- mp4: the container's ``comment`` tag is ``MARK`` (ffmpeg ``-metadata comment=...``; read back from
  ffmpeg's ``-i`` report);
- gif: a GIF comment extension holding ``MARK`` just before the trailer (``mark_gif``);
- plan CSV: our header line (``frame,role,prompt,seed`` then only plan column names);
- PNG (plot, preview frames): a ``Software`` text chunk equal to ``MARK``; SVG and PDF plots: ``MARK`` as the
  document's creator.

``check_output_path`` is called by every writer (``deforum.video``, ``deforum.render.preview``) and by the
CLI before any work is done, so a wrong path is refused before frames are encoded or a model loads.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from deforum.errors import MediaError

MARK = "written by deforum"
"""The mark every output file of this project carries (see the module doc for where)."""

SUFFIXES: dict[str, tuple[str, ...]] = {
    "mp4": (".mp4",),
    "gif": (".gif",),
    "csv": (".csv",),
    "plot": (".png", ".svg", ".pdf"),
    "png": (".png",),
}
WHAT = {"mp4": "video", "gif": "gif", "csv": "plan CSV", "plot": "plot", "png": "PNG frame"}
_MAX_SCAN_BYTES = 64 * 1024 * 1024  # an svg/pdf plot is far smaller; a larger file is not ours
_CSV_FIXED = ("frame", "role", "prompt", "seed")
_CSV_EXTRA = ("next_key", "prev_key", "tween", "prompt_a", "prompt_b", "t", "init_image")
_GIF_COMMENT = b"\x21\xfe" + bytes([len(MARK)]) + MARK.encode("ascii") + b"\x00"


def check_output_path(path: str | os.PathLike[str], kind: str, field: str) -> Path:
    """``path`` as a Path if a ``kind`` output may be written there; MediaError naming ``field`` otherwise.

    Allowed: a path ending in one of ``SUFFIXES[kind]`` (any case) that does not exist yet, or an existing
    regular file this project wrote as a ``kind`` output (it carries ``MARK``). Refused: another suffix, a
    folder, a link, and any existing file without the mark.
    """
    if kind not in SUFFIXES:
        raise ValueError(f"unknown output kind {kind!r}; one of {sorted(SUFFIXES)}")
    path = Path(path)
    allowed = SUFFIXES[kind]
    allowed_text = " or ".join(allowed)
    what = WHAT[kind]
    if path.suffix.lower() not in allowed:
        raise MediaError(f"{field}: {str(path)!r} does not end in {allowed_text}; the {what} needs a file "
                         f"name ending in {allowed_text}")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise MediaError(f"{field}: cannot check {str(path)!r}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise MediaError(f"{field}: {str(path)!r} is a link; the {what} is not written through links "
                         f"(allowed: a new file ending in {allowed_text}, or a {what} deforum wrote before)")
    if stat.S_ISDIR(info.st_mode):
        raise MediaError(f"{field}: {str(path)!r} is a folder; give a file name ending in {allowed_text}")
    if not stat.S_ISREG(info.st_mode) or not is_ours(path, kind):
        raise MediaError(f"{field}: {str(path)!r} already exists and was not written by deforum as a {what}; "
                         f"it is not overwritten (allowed: a new file ending in {allowed_text}, or a {what} "
                         "deforum wrote before); choose another path or remove that file yourself")
    return path


def is_ours(path: str | os.PathLike[str], kind: str) -> bool:
    """Whether the regular file ``path`` carries this project's mark for a ``kind`` output."""
    path = Path(path)
    try:
        suffix = path.suffix.lower()
        if kind == "mp4":
            return _mp4_comment(path) == MARK
        if kind == "gif":
            return _gif_marked(path)
        if kind == "csv":
            return _csv_header_ours(path)
        if kind in ("plot", "png") and suffix == ".png":
            return _png_marked(path)
        if kind == "plot" and suffix in (".svg", ".pdf"):
            if path.stat().st_size > _MAX_SCAN_BYTES:
                return False
            return MARK.encode("ascii") in path.read_bytes()
    except (OSError, ValueError):
        return False
    return False


# ------------------------------------------------------------------------------------------ the marks


def _mp4_comment(path: Path) -> str | None:
    """The container-level ``comment`` tag of a media file, from ffmpeg's ``-i`` report (None if absent).

    The ffmpeg is imageio-ffmpeg's, asked for directly (as ``deforum.video.ffmpeg_exe`` does): deforum.video
    imports this module, so this module does not import it."""
    import subprocess

    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    report = proc.stderr.decode("utf-8", "replace")
    if not re.search(r"^Input #0, mov,mp4", report, re.MULTILINE):
        return None
    header = report.split("Stream #", 1)[0]  # the input's own metadata comes before its streams
    match = re.search(r"^\s+comment\s*:\s?(.*)$", header, re.MULTILINE)
    return match.group(1).rstrip() if match else None


def mark_gif(path: str | os.PathLike[str]) -> None:
    """Put ``MARK`` in a comment extension just before the trailer of the GIF at ``path``."""
    with open(path, "r+b") as fh:
        head = fh.read(6)
        fh.seek(-1, os.SEEK_END)
        if head[:4] != b"GIF8" or fh.read(1) != b";":
            raise MediaError(f"{str(path)!r} is not a complete GIF file; cannot mark it")
        fh.seek(-1, os.SEEK_END)
        fh.write(_GIF_COMMENT + b";")


def _gif_marked(path: Path) -> bool:
    tail = _GIF_COMMENT + b";"
    if path.stat().st_size < 6 + len(tail):
        return False
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(-len(tail), os.SEEK_END)
        return head == b"GIF8" and fh.read() == tail


def _csv_header_ours(path: Path) -> bool:
    from deforum.settings import schedule_fields

    with open(path, "rb") as fh:
        first = fh.readline(4096)
    names = first.decode("utf-8").rstrip("\r\n").split(",")
    known = set(_CSV_EXTRA) | set(schedule_fields())
    return (tuple(names[:4]) == _CSV_FIXED and all(n in known for n in names[4:])
            and len(set(names)) == len(names))


def png_info() -> object:
    """A PIL ``PngInfo`` carrying the mark (pass as ``pnginfo=`` when saving a PNG output)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", MARK)
    return info


def _png_marked(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return im.format == "PNG" and im.info.get("Software") == MARK


def plot_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The matplotlib ``savefig(metadata=...)`` that marks a plot written to ``path`` (png, svg or pdf)."""
    return {"Software": MARK} if Path(path).suffix.lower() == ".png" else {"Creator": MARK}


def save_plot(fig, path: str | os.PathLike[str], field: str = "--plot", dpi: int = 100) -> Path:
    """Save a matplotlib figure to ``path`` with the mark, atomically (``deforum.image.io.write_atomic``)."""
    from deforum.image.io import write_atomic

    path = check_output_path(path, "plot", field)
    try:
        return write_atomic(path, lambda stream: fig.savefig(stream, dpi=dpi, format=path.suffix.lower()[1:],
                                                             metadata=plot_metadata(path)))
    except MediaError as exc:
        raise MediaError(f"{field}: {exc}") from exc
