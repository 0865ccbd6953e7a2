"""Bad images, videos and URLs (issue 10, part 4): a MediaError naming the field, with a timeout and a size
limit, before any diffusion. Adds to tests/test_image_io.py, test_video.py and test_render_video_input.py.
"""

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import QuietHandler, serve
from PIL import Image

from deforum.errors import DeforumError, MediaError
from deforum.image.io import fetch_url, open_image
from deforum.models.ldm import LatentDiffusionModel
from deforum.runner import render
from deforum.testing import tiny_checkpoint
from deforum.video import make_video, probe_video


def png_bytes(size=(32, 32), color=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(width=200_000, height=200_000) -> bytes:
    """A valid PNG header declaring 40 gigapixels (a few hundred bytes on disk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) \
        + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    frames = []
    for i in range(6):
        path = folder / f"f_{i:05}.png"
        Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(path)
        frames.append(path)
    return make_video(frames, folder / "clip.mp4", fps=6)


def bad_files(small_video: Path) -> dict[str, bytes]:
    video = small_video.read_bytes()
    return {
        "empty": b"",
        "truncated png": png_bytes()[:60],
        "truncated jpeg": jpeg_bytes()[:200],
        "text named .png": b"just some notes\n" * 10,
        "html named .png": b"<!DOCTYPE html><html><body>the page, not the image</body></html>",
        "mp4 named .png": video,
        "decompression bomb": png_bomb(),
    }


BAD_NAMES = [
    "empty", "truncated png", "truncated jpeg", "text named .png", "html named .png", "mp4 named .png",
    "decompression bomb"]


@pytest.mark.parametrize("case", BAD_NAMES)
@pytest.mark.parametrize("field", ["init_image", "mask_file", "colormatch_image", "init_mse_image"])
def test_bad_image_files_are_media_errors_naming_the_field(tmp_path, small_video, case, field):
    path = tmp_path / "bad.png"
    path.write_bytes(bad_files(small_video)[case])
    with pytest.raises(MediaError, match=field):
        open_image(path, field=field)


@pytest.mark.parametrize("case", ["empty", "truncated", "random bytes", "png named .mp4 (one frame)", "text"])
def test_bad_video_files(tmp_path, small_video, case):
    raw = small_video.read_bytes()
    content = {"empty": b"", "truncated": raw[: len(raw) // 3], "random bytes": np.random.default_rng(1).bytes(4096),
               "png named .mp4 (one frame)": png_bytes(), "text": b"not a video\n" * 50}[case]
    path = tmp_path / "input.mp4"
    path.write_bytes(content)
    if case == "png named .mp4 (one frame)":  # ffmpeg reads a still image as a one-frame video: allowed
        assert probe_video(path).frame_count == 1
        return
    with pytest.raises(MediaError, match="video_init_path"):
        probe_video(path)


# -------------------------------------------------------------------------------------------------- URLs


class Hostile(QuietHandler):
    """A web server that misbehaves in every way a URL in a settings file can."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/ok.png":
            return self.send_body(200, "image/png", png_bytes())
        if self.path == "/page":
            return self.send_body(200, "text/html; charset=utf-8", b"<html>a gallery page</html>")
        if self.path == "/no-type":
            return self.send_body(200, None, b"<html>a page without a content type</html>")
        if self.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            return None
        if self.path == "/huge-undeclared":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(1000):  # 64 MB without a length, unless the reader hangs up
                    self.wfile.write(b"\0" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if self.path == "/silent":
            time.sleep(3)
            return self.send_body(200, "image/png", png_bytes())
        if self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(100):  # a byte every 0.1 s, for 10 s: never silent long enough to time out
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if self.path == "/redirect-to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return None
        if self.path == "/error":
            return self.send_body(500, "text/plain", b"oops")
        if self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(png_bytes()[:50])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self.send_body(404, "text/plain", b"missing")



@pytest.fixture(scope="module")
def server():
    with serve(Hostile) as url:
        yield url


@pytest.mark.parametrize("path, message", [
    ("/page", "text/html"),
    ("/no-type", "not a readable image"),
    ("/huge-declared", "over the limit"),
    ("/huge-undeclared", "larger than the limit"),
    ("/silent", "longer than 0.5 s"),
    ("/trickle", "longer than 1 s in total"),
    ("/redirect-to-file", "cannot fetch|HTTP 302"),
    ("/error", "HTTP 500"),
    ("/cut", "not a readable image|cannot fetch|IncompleteRead"),
])
def test_hostile_urls_are_media_errors_within_the_limits(server, path, message):
    with pytest.raises(MediaError, match=message) as caught:
        open_image(f"{server}{path}", field="init_image", timeout=0.5, max_bytes=1 << 20) \
            if path != "/trickle" else fetch_url(f"{server}{path}", timeout=0.5, total_timeout=1)
    assert "init_image" in str(caught.value)


def test_non_http_schemes_are_not_fetched(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    for source in (f"file://{secret}", "ftp://127.0.0.1/x.png", "data:image/png;base64,AAAA"):
        with pytest.raises(MediaError, match="not a file"):
            open_image(source, field="init_image")


# ------------------------------------------------------------------------------- before any diffusion


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"), fmt="safetensors")


@pytest.fixture
def unet_calls(monkeypatch):
    calls = []
    real = LatentDiffusionModel.apply_model

    def apply_model(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LatentDiffusionModel, "apply_model", apply_model)
    return calls


def run_settings(field: str, source: str, good: Path) -> tuple[dict, dict]:
    args = dict(W=64, H=64, steps=2, sampler="euler", seed=1)
    anim = dict(animation_mode="2D", max_frames=2)
    if field == "init_image":
        args.update(use_init=True, init_image=source)
    elif field == "mask_file":
        args.update(use_init=True, init_image=str(good), use_mask=True, mask_file=source)
    elif field == "colormatch_image":
        args.update(colormatch_scale=100, colormatch_image=source)
    elif field == "init_mse_image":
        args.update(init_mse_scale=100, init_mse_image=source)
    elif field == "video_init_path":
        anim.update(animation_mode="Video Input", video_init_path=source)
    return args, anim


IMAGE_FIELDS = ["init_image", "mask_file", "colormatch_image", "init_mse_image"]
FILE_CASES = ["html named .png", "truncated png", "decompression bomb"]
URL_CASES = ["url: html page", "url: huge body"]  # video_init_path is a local file only: no URL cases


@pytest.mark.parametrize("field, case", [(f, c) for f in IMAGE_FIELDS for c in FILE_CASES + URL_CASES]
                         + [("video_init_path", c) for c in FILE_CASES])
def test_bad_media_stop_the_run_before_any_diffusion(tmp_path, tiny, server, small_video, unet_calls, field, case):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (90, 90, 90)).save(good)
    if case in URL_CASES:
        source = f"{server}/page" if case == "url: html page" else f"{server}/huge-declared"
    else:
        source = str(tmp_path / "bad.png")
        (tmp_path / "bad.png").write_bytes(bad_files(small_video)[case])
    ckpt, yaml = tiny
    root = {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(yaml), "output_path": str(tmp_path / "out"), "map_location": "cpu"}
    args, anim = run_settings(field, source, good)
    with pytest.raises(DeforumError, match=field):
        render(args, anim, None, {0: "a red apple"}, root, progress=False)
    assert unet_calls == []
    assert not list((tmp_path / "out").rglob("*.png"))
