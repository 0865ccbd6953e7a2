"""Helpers shared by several test modules: a local HTTP server and its quiet handler, a fake Hugging Face
hub, a call recorder."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


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


def fake_hub(body: bytes) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler serving every ``/<org>/<repo>/resolve/main/<file>`` as ``body``, with the hub's headers.

    It honours ``Range``; ``cut_gets`` GETs are cut after ``cut_after`` bytes (the connection drops), and
    ``requests`` records (method, path, Range, Authorization) of every request. ``content`` (the body) may be replaced.
    """

    class FakeHub(QuietHandler):
        content = body
        cut_gets = 0
        cut_after = 100_000
        requests: list = []

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

    return FakeHub


class Recorder:
    """A Generator stand-in that records every call's keywords and forwards them."""

    def __init__(self, generator):
        self.generator = generator
        self.calls = []

    def conditioning(self, *args, **kwargs):
        return self.generator.conditioning(*args, **kwargs)

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.generator(**kwargs)
