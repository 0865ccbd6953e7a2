"""Reading init and mask images (a path, an http(s) URL or a folder) and writing PNG frames atomically.

Spec: generation 5.1 and 5.2, animation 11.2. Every failure is a ``MediaError`` raised before any diffusion
starts; URLs are fetched with a timeout, a size limit, a status check and a content-type check (v0.6 had
none of these).
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from deforum.errors import MediaError, SettingsError

URL_TIMEOUT_S = 30.0
URL_MAX_BYTES = 50 * 1024 * 1024
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # v0.6's folder rule (compared case-insensitively here)
_ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def fetch_url(
    url: str, *, timeout: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES, field: str = "init_image"
) -> bytes:
    """The body of an http(s) GET of an image: refused when not 200, not an image type, too large or slow."""
    request = urllib.request.Request(url, headers={"User-Agent": "deforum"})
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
            body = response.read(max_bytes + 1)
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


def save_png_atomic(image: np.ndarray | Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write an 8-bit PNG so that ``path`` is either absent or complete: a temp file in the same folder,
    then ``os.replace``. The one place frames are written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise MediaError(f"save_png_atomic: expected a uint8 image, got {image.dtype} for {str(path)!r}")
        image = Image.fromarray(image)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, format="PNG")
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


__all__ = [
    "IMAGE_EXTENSIONS",
    "URL_MAX_BYTES",
    "URL_TIMEOUT_S",
    "fetch_url",
    "is_url",
    "list_init_images",
    "load_init_image",
    "open_image",
    "resize",
    "save_png_atomic",
]


def ensure_output_folder(outdir: str | os.PathLike[str] | None, field: str = "outdir") -> Path:
    """Create ``outdir`` if needed and prove it is writable (a temp file is made and removed)."""
    if not outdir:
        raise SettingsError(f"{field}: is empty; finalize the settings (deforum.args.finalize) to set it")
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
