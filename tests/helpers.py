"""Helpers shared by several test modules: a local HTTP server and its quiet handler, a fake Hugging Face
hub with a catalogue entry it serves, a call recorder, the Root of a run on the tiny model, and the textures
and shift measures of the optical-flow and hybrid-video tests."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np


@contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a local threaded HTTP server; yields its base URL, shuts it down afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A test server's request handler: no request log; ``send_body`` answers in one call."""

    def log_message(self, *args):
        pass

    def send_body(self, status: int, content_type: str | None, body: bytes, *, length: bool = True) -> None:
        """Status, Content-Type (none if None), Content-Length (unless ``length`` is False) and the body;
        a client that hung up meanwhile is not an error."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


HUB_PAYLOAD = bytes(range(256)) * 2048  # 512 KiB: the model file of the fake hub
HUB_SHA = hashlib.sha256(HUB_PAYLOAD).hexdigest()


class FakeHub(QuietHandler):
    """Serves every ``/<org>/<repo>/resolve/main/<file>`` as ``content``, with the hub's headers.

    It honours ``Range``; ``cut_gets`` GETs are cut after ``cut_after`` bytes (the connection drops), and
    ``requests`` records (method, path, Range, Authorization) of every request. ``content`` may be replaced.
    """

    content = HUB_PAYLOAD
    cut_gets = 0
    cut_after = 100_000
    requests: list = []

    @classmethod
    def reset(cls) -> None:
        cls.content, cls.cut_gets, cls.cut_after, cls.requests = HUB_PAYLOAD, 0, 100_000, []

    def _headers(self, start: int, status: int):
        body = FakeHub.content
        self.send_response(status)
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802 (http.server's name)
        FakeHub.requests.append(("HEAD", self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        self._headers(0, 200)

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        FakeHub.requests.append(("GET", self.path, rng, self.headers.get("Authorization")))
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = FakeHub.content
        self._headers(start, 206 if rng else 200)
        if FakeHub.cut_gets:
            FakeHub.cut_gets -= 1
            self.wfile.write(body[start: start + FakeHub.cut_after])
            self.wfile.flush()
            time.sleep(0.3)  # let the client store what it got before the connection drops
            self.close_connection = True
            return
        self.wfile.write(body[start:])


def hub_online(monkeypatch) -> None:
    """tests/conftest.py turns huggingface_hub's offline mode on; the download tests talk to a local server."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@contextmanager
def serve_hub(monkeypatch) -> Iterator[str]:
    """The fake hub, reset, on a local server with huggingface_hub online; yields its URL (the endpoint)."""
    hub_online(monkeypatch)
    FakeHub.reset()
    with serve(FakeHub) as url:
        yield url


def fake_catalogue_entry(monkeypatch, filename: str = "fake-model.ckpt"):
    """'fake-model.ckpt' in the catalogue: ``filename`` in the repo someone/fake-model, with HUB_SHA."""
    from deforum.models import catalogue
    from deforum.models.catalogue import CatalogueEntry

    entry = CatalogueEntry("fake-model.ckpt", "someone/fake-model", filename, HUB_SHA, "v1-inference.yaml")
    monkeypatch.setitem(catalogue.CATALOGUE, entry.name, entry)
    return entry


def root_for(tiny: tuple[Path, Path], output: Path) -> dict:
    """Root of a CPU run on the tiny model (the ``tiny`` fixture: checkpoint, yaml), writing under ``output``."""
    ckpt, config = tiny
    return {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(config), "output_path": str(output), "map_location": "cpu",
            "mount_google_drive": False}


@functools.cache
def oracle_alphas_cumprod():
    """v0.6's float32 alphas_cumprod, recorded with the strength -> steps oracle (tests/data/strength_steps.json)."""
    import torch

    table = json.loads((Path(__file__).parent / "data" / "strength_steps.json").read_text())
    return torch.tensor(table["alphas_cumprod_fp32"], dtype=torch.float32)


class CountingDenoiser:
    """D(x, sigma) of unit-variance Gaussian data on v0.6's schedule (or ``alphas_cumprod``'s), recording the
    sigmas it is called at."""

    def __init__(self, alphas_cumprod=None):
        from deforum.sampling import DiscreteSchedule

        self.schedule = DiscreteSchedule(oracle_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod)
        self.sigmas: list[float] = []

    def get_sigmas(self, n, **kwargs):
        return self.schedule.get_sigmas(n, **kwargs)

    def __call__(self, x, sigma):
        self.sigmas.append(float(sigma.reshape(-1)[0]))
        return x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)


# --- moving textures (optical flow, hybrid video) ----------------------------------------------------------------


def texture(size: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """A random smooth RGB texture: blurred noise stretched to 0..255."""
    noise = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), sigma)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved by (dx, dy): out[y + dy, x + dx] = image[y, x], so the flow image -> out is (dx, dy)."""
    h, w = image.shape[:2]
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def measured_shift(before: np.ndarray, after: np.ndarray, crop: int = 8) -> tuple[float, float]:
    """How far ``after`` is moved from ``before`` (cv2.phaseCorrelate on the grey inner part, Hann window)."""

    def grey(a):
        return cv2.cvtColor(a.astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)[crop:-crop, crop:-crop]

    a, b = grey(before), grey(after)
    (sx, sy), _response = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F))
    return sx, sy


def write_video(path: Path, frames: list[np.ndarray], fps: float = 8) -> Path:
    """An H.264 mp4 of uint8 RGB ``frames`` (all one size, a multiple of 16)."""
    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264", quality=10,
                                         macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path
