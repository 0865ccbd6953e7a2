"""Init/mask image loading (path, URL, folder) and atomic PNG writing (spec 5.1, 5.2, animation 11.2)."""

import io
import os
import time

import numpy as np
import pytest
from helpers import QuietHandler, serve
from PIL import Image

from deforum.errors import MediaError
from deforum.image.io import (
    fetch_url,
    list_init_images,
    load_init_image,
    open_image,
    save_png_atomic,
    write_atomic,
)


def png_bytes(size=(20, 10), color=(10, 200, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class Handler(QuietHandler):
    routes = {
        "/ok.png": (200, "image/png", png_bytes()),
        "/page": (200, "text/html; charset=utf-8", b"<html>not an image</html>"),
        "/big.png": (200, "image/png", b"\x89PNG" + b"0" * 5000),
        "/broken.png": (200, "image/png", b"not really a png"),
    }

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/slow.png":
            time.sleep(1.5)
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"missing"))
        if self.path == "/slow.png":
            status, content_type, body = self.routes["/ok.png"]
        # the big body comes without a length: the reader must stop by itself
        self.send_body(status, content_type, body, length=self.path != "/big.png")


@pytest.fixture(scope="module")
def server():
    with serve(Handler) as url:
        yield url


def test_url_ok(server):
    image = open_image(f"{server}/ok.png")
    assert image.size == (20, 10)
    rgb, alpha = load_init_image(f"{server}/ok.png", 16, 8)
    assert rgb.size == (16, 8) and rgb.mode == "RGB" and alpha is None


@pytest.mark.parametrize("path, kwargs, message", [
    ("/page", {}, "text/html"),
    ("/big.png", {"max_bytes": 1000}, "limit"),
    ("/slow.png", {"timeout": 0.3}, "longer than"),
    ("/missing.png", {}, "404"),
])
def test_url_refused(server, path, kwargs, message):
    with pytest.raises(MediaError, match=message):
        fetch_url(f"{server}{path}", **kwargs)


def test_url_with_a_body_that_is_not_an_image(server):
    with pytest.raises(MediaError, match="not a readable image"):
        open_image(f"{server}/broken.png")


def test_unreachable_host_is_a_media_error():
    with pytest.raises(MediaError, match="mask_file"):
        fetch_url("http://127.0.0.1:9/nothing.png", timeout=1, field="mask_file")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not an image", png_bytes()[:40]])
def test_corrupt_or_empty_file(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(MediaError, match="not a readable image"):
        open_image(path)


def test_missing_file_and_empty_name(tmp_path):
    with pytest.raises(MediaError, match="not a file"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="empty"):
        open_image("")


def test_resize_is_exact_lanczos(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (30, 50, 3), np.uint8)).save(path)
    rgb, _ = load_init_image(path, 64, 32)
    expected = Image.open(path).convert("RGB").resize((64, 32), Image.Resampling.LANCZOS)
    assert rgb.size == (64, 32)
    assert np.array_equal(np.asarray(rgb), np.asarray(expected))


def test_alpha_is_split_off_as_the_mask(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    rgb, alpha = load_init_image(path, 8, 8, use_alpha_as_mask=True)
    assert rgb.mode == "RGB" and alpha.mode == "L"
    assert np.asarray(alpha)[0, 0] == 255 and np.asarray(alpha)[0, 7] == 0
    assert np.asarray(rgb)[0, 0, 0] == 200


def test_folder_lists_images_sorted_any_case(tmp_path):
    for name in ["b.jpg", "a.PNG", "c.jpeg", "notes.txt", "d.gif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.rsplit("/", 1)[-1] for p in list_init_images(str(tmp_path))] == ["a.PNG", "b.jpg", "c.jpeg"]


def test_init_sources(tmp_path):
    single = tmp_path / "one.png"
    single.write_bytes(png_bytes())
    assert list_init_images(str(single)) == [str(single)]
    assert list_init_images("https://example.com/x.png") == ["https://example.com/x.png"]
    with pytest.raises(MediaError, match="empty"):
        list_init_images("")
    with pytest.raises(MediaError, match="neither"):
        list_init_images(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no .png"):
        list_init_images(str(tmp_path / "empty"))


def test_save_png_atomic_round_trip(tmp_path):
    image = np.random.RandomState(1).randint(0, 256, (12, 9, 3), np.uint8)
    path = save_png_atomic(image, tmp_path / "out" / "f_00000.png")
    assert np.array_equal(np.asarray(Image.open(path)), image)
    save_png_atomic(image[::-1].copy(), path)  # overwrite in place
    assert np.array_equal(np.asarray(Image.open(path)), image[::-1])
    assert sorted(p.name for p in path.parent.iterdir()) == ["f_00000.png"]  # no temp files left


def test_write_atomic_takes_bytes_or_a_writer_and_gives_an_ordinary_file(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = write_atomic(tmp_path / "sub" / "state.json", b"{}")
    assert path.read_bytes() == b"{}"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    write_atomic(path, lambda stream: stream.write(b"[1]"))  # replaces the old content
    assert path.read_bytes() == b"[1]"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
    frame = save_png_atomic(np.zeros((2, 2, 3), np.uint8), tmp_path / "f_00000.png")
    assert frame.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_atomic_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, error):
    path = write_atomic(tmp_path / "a.npy", b"old")

    def fail(stream):
        stream.write(b"half")
        raise error

    with pytest.raises(MediaError if isinstance(error, OSError) else KeyboardInterrupt) as caught:
        write_atomic(path, fail)
    if isinstance(error, OSError):
        assert "a.npy" in str(caught.value) and "no space left" in str(caught.value)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_save_png_atomic_refuses_float_images(tmp_path):
    with pytest.raises(MediaError, match="uint8"):
        save_png_atomic(np.zeros((4, 4, 3), np.float32), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []
