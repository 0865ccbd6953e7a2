"""Reading init and mask images (a path, an http(s) URL or a folder) and writing PNG frames atomically.

Spec: generation 5.1 and 5.2, animation 11.2. Every failure is a ``MediaError`` raised before any diffusion
starts; URLs are fetched with a timeout, a size limit, a status check and a content-type check (v0.6 had
none of these).
"""

from __future__ import annotations

import errno
import io
import os
import queue
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from deforum.errors import MediaError, SettingsError

URL_TIMEOUT_S = 30.0
URL_MAX_BYTES = 50 * 1024 * 1024
URL_TOTAL_TIMEOUT_S = 120.0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # v0.6's folder rule (compared case-insensitively here)
TEMP_SUFFIX = ".png.tmp"  # a PNG's temp file (write_atomic): ".{stem}.XXXXXXXX.png.tmp" beside the frame
_ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def fetch_url(
    url: str, *, timeout: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES, field: str = "init_image",
    total_timeout: float = URL_TOTAL_TIMEOUT_S,
) -> bytes:
    """The body of an http(s) GET of an image: refused when not 200, not an image type, too large or slow.

    ``timeout`` bounds each wait for the server; ``total_timeout`` the whole download, so a server that
    trickles a byte at a time cannot hold the run forever.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "deforum"})
    deadline = time.monotonic() + total_timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only)
            status = getattr(response, "status", 200)
            if status != 200:
                raise MediaError(f"{field}: {url!r} answered HTTP {status}; expected 200 with an image")
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type and not content_type.startswith(_ACCEPTED_CONTENT_TYPES):
                raise MediaError(
                    f"{field}: {url!r} is {content_type!r}, not an image (a web page instead of the picture "
                    "itself?); use the direct link to a PNG or JPEG file"
                )
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise MediaError(f"{field}: {url!r} is {int(length)} bytes, over the limit of {max_bytes}")
            body = _read_body(response, max_bytes + 1, deadline)
            if body is None:
                raise MediaError(f"{field}: downloading {url!r} took longer than {total_timeout:g} s in total")
    except urllib.error.HTTPError as error:
        raise MediaError(f"{field}: {url!r} answered HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise MediaError(f"{field}: cannot fetch {url!r}: {error.reason}") from error
    except TimeoutError as error:
        raise MediaError(f"{field}: fetching {url!r} took longer than {timeout:g} s") from error
    except OSError as error:
        raise MediaError(f"{field}: cannot fetch {url!r}: {error}") from error
    if len(body) > max_bytes:
        raise MediaError(f"{field}: {url!r} is larger than the limit of {max_bytes} bytes")
    return body


def _read_body(response: Any, limit: int, deadline: float) -> bytes | None:
    """Up to ``limit`` bytes of the body, or None when the deadline passes first."""
    chunks, size = [], 0
    while size < limit:
        if time.monotonic() > deadline:
            return None
        chunk = response.read1(min(1 << 16, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def open_image(
    source: str | os.PathLike[str],
    *,
    field: str = "init_image",
    timeout: float = URL_TIMEOUT_S,
    max_bytes: int = URL_MAX_BYTES,
) -> Image.Image:
    """A fully decoded PIL image from a path or an http(s) URL (no conversion, no resize)."""
    source = str(source)
    if not source:
        raise MediaError(f"{field}: is empty; give a path, a folder or an http(s) URL of an image")
    if is_url(source):
        data: Any = io.BytesIO(fetch_url(source, timeout=timeout, max_bytes=max_bytes, field=field))
    else:
        if not os.path.isfile(source):
            raise MediaError(f"{field}: {source!r} is not a file")
        data = source
    try:
        image = Image.open(data)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise MediaError(f"{field}: {source!r} is not a readable image ({error})") from error
    return image


def resize(image: Image.Image, W: int, H: int) -> Image.Image:
    """Exactly W x H with Lanczos, aspect ratio not kept (v0.6)."""
    return image if image.size == (W, H) else image.resize((W, H), Image.Resampling.LANCZOS)


def load_init_image(
    source: str | os.PathLike[str],
    W: int,
    H: int,
    *,
    use_alpha_as_mask: bool = False,
    field: str = "init_image",
) -> tuple[Image.Image, Image.Image | None]:
    """(RGB image W x H, alpha 'L' mask or None) as v0.6's ``load_img`` (spec 5.1).

    With ``use_alpha_as_mask`` the image is read as RGBA, resized, and its alpha channel split off as the
    mask. EXIF orientation is ignored, as in v0.6.
    """
    image = open_image(source, field=field)
    if use_alpha_as_mask:
        rgba = resize(image.convert("RGBA"), W, H)
        return rgba.convert("RGB"), rgba.getchannel("A")
    return resize(image.convert("RGB"), W, H), None


def list_init_images(init_image: str, *, field: str = "init_image") -> list[str]:
    """The init images of a None-mode batch (spec animation 11.2): a URL, a file, or a folder's images.

    A folder gives every file whose extension is png, jpg or jpeg, sorted by name. v0.6 compared the
    extension case-sensitively (so ``A.PNG`` was skipped); here ``.PNG``/``.JPG`` count too.
    """
    init_image = str(init_image or "")
    if not init_image:
        raise MediaError(f"{field}: is empty but use_init is on; give a path, a folder or an http(s) URL")
    if is_url(init_image) or os.path.isfile(init_image):
        return [init_image]
    folder = Path(init_image)
    if not folder.is_dir():
        raise MediaError(f"{field}: {init_image!r} is neither a file, a folder nor an http(s) URL")
    images = sorted(
        str(path) for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise MediaError(f"{field}: the folder {init_image!r} has no .png, .jpg or .jpeg images")
    return images


def write_atomic(path: str | os.PathLike[str], data: bytes | Callable[[BinaryIO], Any]) -> Path:
    """Write ``path`` so that it is either absent (or its old content) or complete. The one atomic writer.

    ``data`` is the file's bytes, or a callable that writes them to the binary file object it is given. The
    bytes go to a temp file ``.{stem}.XXXXXXXX{suffix}.tmp`` in the same folder (so a killed run's temps
    are found by name, see ``deforum.render.resume.remove_stale_temps``), are flushed to disk (``fsync``:
    even a power cut leaves no empty file under the final name), get an ordinary file's permissions
    (``0o666`` less the umask, not ``mkstemp``'s private ``0o600``) and are renamed into place with
    ``os.replace``. On any failure the temp file is removed; an ``OSError`` becomes a ``MediaError``
    naming ``path`` (``write_error``). The folder is created when missing.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp")
    except OSError as error:
        raise write_error(path, error) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            if callable(data):
                data(stream)
            else:
                stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException as error:
        if os.path.exists(temp):
            os.unlink(temp)
        if isinstance(error, OSError):
            raise write_error(path, error) from error
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_png_atomic(image: np.ndarray | Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write an 8-bit PNG through ``write_atomic``: ``path`` is absent or a complete PNG, never part of one."""
    path = Path(path)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise MediaError(f"save_png_atomic: expected a uint8 image, got {image.dtype} for {str(path)!r}")
        image = Image.fromarray(image)
    return write_atomic(path, lambda stream: image.save(stream, format="PNG"))


def write_error(path: str | os.PathLike[str], error: OSError) -> MediaError:
    """A MediaError naming the file that could not be written; a full disk says so and how to go on."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        return MediaError(f"cannot write {str(path)!r}: no space left on device. Files written before it are "
                          "complete; free some space (a 2D/3D run continues with resume_from_timestring)")
    return MediaError(f"cannot write {str(path)!r}: {reason}")


class BackgroundWriter:
    """Frame writes on one background thread, so the render loop never waits for PNG compression.

    ``submit(fn, *args, tag=...)`` queues a job (``write(image, path)`` queues ``save_png_atomic``); the queue
    holds at most ``max_pending`` jobs, so a slow disk slows the render instead of filling memory. Jobs run
    in order. The first error stops the writer and is raised by the next ``submit``, ``done``, ``flush`` or
    ``close``. ``done()`` returns the tags (other than None) of jobs finished since the last call, in order,
    so per-frame callbacks can run in the caller's thread once their file exists; ``flush()`` waits for every
    queued job (call it before saving resume state, so the state never names a frame that is not on disk).
    """

    def __init__(self, max_pending: int = 4):
        self._jobs: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None  # set by the worker thread
        self._failed: BaseException | None = None  # the error once it has been raised to the caller
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="deforum-frame-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                fn, args, tag = job
                # After a failure the rest is dropped: written later, it would be out of order.
                if self._error is None and self._failed is None:
                    fn(*args)
                    if tag is not None:
                        self._finished.put(tag)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, not swallowed
                self._error = error
            finally:
                self._jobs.task_done()

    def submit(self, fn: Callable[..., Any], *args: Any, tag: Any = None) -> None:
        """Queue ``fn(*args)`` (blocks while ``max_pending`` jobs wait); raises an earlier job's error."""
        if self._closed:
            raise MediaError("BackgroundWriter: submit after close")
        self._check()
        self._jobs.put((fn, args, tag))

    def write(self, image: np.ndarray | Image.Image, path: str | os.PathLike[str], tag: Any = None) -> None:
        """Queue ``save_png_atomic(image, path)``; ``image`` must not be changed afterwards."""
        self.submit(save_png_atomic, image, path, tag=tag)

    def done(self) -> list[Any]:
        """Tags of the jobs finished since the last call, in submission order."""
        self._check()
        return self._drain()

    def _drain(self) -> list[Any]:
        tags = []
        while True:
            try:
                tags.append(self._finished.get_nowait())
            except queue.Empty:
                return tags

    def _check(self) -> None:
        """Raise a failed job's error: the original once, then a MediaError naming it."""
        if self._failed is not None:
            raise MediaError(f"an earlier frame write failed: {self._failed}") from self._failed
        if self._error is not None:
            self._failed = self._error
            raise self._error

    def flush(self) -> list[Any]:
        """Wait until every queued job has run; returns the tags finished since ``done()`` was last called."""
        self._jobs.join()
        self._check()
        return self._drain()

    def close(self) -> list[Any]:
        """Flush, then stop the thread (idempotent)."""
        if self._closed:
            return self._drain()
        self._jobs.join()
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        self._check()
        return self._drain()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is None:
            self.close()
            return
        try:  # the frames already queued are finished work: write them, but keep the original error
            self.close()
        except Exception:  # noqa: BLE001
            pass


__all__ = [
    "BackgroundWriter",
    "IMAGE_EXTENSIONS",
    "URL_MAX_BYTES",
    "URL_TIMEOUT_S",
    "URL_TOTAL_TIMEOUT_S",
    "fetch_url",
    "is_url",
    "list_init_images",
    "load_init_image",
    "open_image",
    "resize",
    "save_png_atomic",
    "write_atomic",
    "write_error",
]


def ensure_output_folder(outdir: str | os.PathLike[str] | None, field: str = "outdir") -> Path:
    """Create ``outdir`` if needed and prove it is writable (a temp file is made and removed)."""
    if not outdir:
        raise SettingsError(f"{field}: is empty; a run gets its folder from deforum.settings.identify")
    folder = Path(outdir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise MediaError(f"{field}: cannot write to the output folder {str(folder)!r}: "
                         f"{exc.strerror or exc}") from exc
    return folder
