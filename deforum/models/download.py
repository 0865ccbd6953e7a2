"""Checkpoint download (huggingface_hub) and sha256 verification, streamed and cached.

The token comes from ``HF_TOKEN`` or the notebook login (huggingface_hub finds both), and is sent as an
``Authorization`` header by huggingface_hub, never put in a URL. huggingface_hub shows a progress bar and
resumes a download whose connection drops (it retries from the byte where the cut happened).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from deforum.errors import ModelError
from deforum.models.catalogue import CatalogueEntry

log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNK = 8 * 1024 * 1024
SHA_CACHE_FILE = ".deforum-sha256.json"
_sha_cache: dict[tuple[str, int, int], str] = {}


def _cache_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _read_disk_cache(folder: Path) -> dict:
    try:
        return json.loads((folder / SHA_CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in chunks; cached by (path, size, mtime) in memory and next to the file."""
    path = Path(path)
    key = _cache_key(path)
    if key in _sha_cache:
        return _sha_cache[key]
    disk = _read_disk_cache(path.parent)
    entry = disk.get(path.name)
    if entry and [entry.get("size"), entry.get("mtime_ns")] == [key[1], key[2]]:
        _sha_cache[key] = entry["sha256"]
        return entry["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _sha_cache[key] = digest
    disk[path.name] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
    try:
        (path.parent / SHA_CACHE_FILE).write_text(json.dumps(disk, indent=1))
    except OSError:
        pass  # a read-only models folder only loses the cache
    return digest


def verify_sha256(path: Path, expected: str) -> None:
    """ModelError naming the file and both hashes if they differ; the bad file is moved aside, not used."""
    actual = sha256_file(path)
    if actual.lower() == expected.lower():
        return
    aside = path.with_name(path.name + ".sha256-mismatch")
    os.replace(path, aside)
    raise ModelError(f"{path.name}: sha256 mismatch: expected {expected}, got {actual}. The file was moved to "
                     f"{aside} and will not be used; delete it and run again to re-download, or set "
                     "check_sha256=False if you trust this file.")


def _fetch(repo_id: str, filename: str, dest_dir: Path, token: str | None = None,
           endpoint: str | None = None) -> Path:
    """The one network call: download repo_id/filename into dest_dir with huggingface_hub."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, local_dir=dest_dir, token=token, endpoint=endpoint))


def hub_unreachable(endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached (offline mode, no DNS, no route), or None when it answers a TCP connect.

    Checked once before a download, so an offline machine gets the clear "put the file here" message at once
    instead of after huggingface_hub's retries (about 25 s of back-off).
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    return host_unreachable(endpoint or constants.ENDPOINT, timeout)


def host_unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why the host of ``url`` cannot be reached (no DNS, no route, refused), or None when it takes a TCP
    connect."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{parsed.hostname}: {e.strerror or e}"
    return None


def _is_network_error(e: Exception) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    names = {type(c).__name__ for c in (e, e.__cause__, e.__context__) if c is not None}
    return isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) or bool(
        names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ConnectionError"})


def fetch_from_hub(fetch: Callable[[str | None], T], *, what: str, repo_id: str, place: Path, where: str,
                   token: str | None = None, endpoint: str | None = None) -> T:
    """Run one hub download, ``fetch(token)``, turning every way it can fail into a ModelError that names
    ``what`` and says ``where`` to put it by hand. The hub is probed first, so an offline machine is told at
    once instead of after huggingface_hub's retries."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    offline = f"{what} is not in {place} and the Hugging Face hub cannot be reached"
    unreachable = hub_unreachable(endpoint)
    if unreachable:
        raise ModelError(f"{offline} ({unreachable}); {where}")
    log.info("Downloading %s from %s to %s", what, repo_id, place)
    try:
        return fetch(token or os.environ.get("HF_TOKEN"))
    except GatedRepoError as e:
        raise ModelError(f"{what}: {repo_id} asks you to accept its licence: open https://huggingface.co/{repo_id}, "
                         f"accept it, set HF_TOKEN (or log in from the notebook) and run again; or {where}") from e
    except RepositoryNotFoundError as e:
        raise ModelError(f"{what}: the repository {repo_id} was not found (or needs a token); {where}") from e
    except HfHubHTTPError as e:
        raise ModelError(f"{what}: download failed ({e}); {where}") from e
    except Exception as e:
        if _is_network_error(e):
            raise ModelError(f"{offline} ({type(e).__name__}); {where}") from e
        if isinstance(e, OSError) and not isinstance(e, ConnectionError):
            # huggingface_hub deletes its partial file, so nothing half-downloaded is left to be used.
            reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise ModelError(f"{what}: the download into {place} failed: {reason}. Nothing was kept; free some "
                             f"space and run again, or {where}") from e
        raise


def download(entry: CatalogueEntry, models_path: str | Path, token: str | None = None,
             endpoint: str | None = None) -> Path:
    """Fetch a catalogue checkpoint into models_path/<entry.name>; ModelError saying what to do when offline."""
    models_path = Path(models_path)
    models_path.mkdir(parents=True, exist_ok=True)
    dest = models_path / entry.name
    got = fetch_from_hub(lambda tok: _fetch(entry.repo_id, entry.filename, models_path, tok, endpoint),
                         what=entry.name, repo_id=entry.repo_id, place=models_path,
                         where=f"download {entry.url} and put it at {dest}", token=token, endpoint=endpoint)
    if got.resolve() != dest.resolve():
        shutil.move(str(got), dest)  # a file in a repo subfolder lands in models_path/<name>
    return dest
