"""A loopback HTTP server for download tests: good images, 404s, slow and truncated responses, non-images.

Routes (``NAME`` is any file-like name; images are drawn from it, so the same URL gives the same bytes):

- ``/img/NAME.jpg``        a good JPEG
- ``/missing/NAME``        404
- ``/sleep/NAME.jpg``      sleeps ``server.timeout_sleep`` seconds, then a good JPEG (a test makes this
                           exceed the client timeout)
- ``/slowok/NAME.jpg``     sleeps ``server.slow_delay`` seconds (0 by default), then a good JPEG
- ``/truncated/NAME.jpg``  the first half of a good JPEG
- ``/text/NAME``           an HTML page (200, not an image)
- ``/flaky/NAME.jpg``      404 until ``server.healed`` is True, then a good JPEG
- ``/file/NAME``           the bytes a test put in ``server.files[NAME]`` (404 when absent)
- ``/file/NAME``           the bytes a test put in ``server.files[NAME]`` (404 when absent)
- ``/trickle/NAME``        announces 2 GB, then sends 1 KB every ``server.trickle_interval`` seconds
- ``/endless/NAME``        no Content-Length, 64 KB blocks as fast as the client reads
- ``/loop/NAME``           a redirect to itself (urllib gives up after its redirect limit)
- ``/redirect/NAME``       a redirect to ``/file/NAME``
- ``/lie/NAME``            announces 100000 bytes, sends 10 and closes

The streaming routes stop after ``server.stream_limit_s`` seconds whatever the client does, so a
client that never gives up cannot hang the test session.

Every request path is counted in ``server.requests`` (a Counter), so a test can check what was fetched.
Import it from a test module: ``from httpserver import LoopbackServer``.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from typing import Any

from gill_eval.sample.make import synthetic_image


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        srv = self.server
        with srv.lock:
            srv.requests[self.path] += 1
        _, route, name = (self.path.split("/", 2) + ["", ""])[:3]
        if route == "img":
            self._send(synthetic_image(name))
        elif route == "sleep":
            time.sleep(srv.timeout_sleep)
            self._send(synthetic_image(name))
        elif route == "slowok":
            time.sleep(srv.slow_delay)
            self._send(synthetic_image(name))
        elif route == "truncated":
            data = synthetic_image(name)
            self._send(data[: len(data) // 2])
        elif route == "text":
            self._send(b"<html><body>not an image</body></html>", "text/html")
        elif route == "flaky" and srv.healed:
            self._send(synthetic_image(name))
        elif route == "file" and name in srv.files:
            self._send(srv.files[name], "application/octet-stream")
        elif route == "file" and name in srv.files:
            self._send(srv.files[name], "application/octet-stream")
        elif route in ("trickle", "endless"):
            self._stream(trickle=route == "trickle")
        elif route in ("loop", "redirect"):
            self.send_response(302)
            self.send_header("Location", self.path if route == "loop" else f"/file/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "lie":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
        else:
            self.send_error(404)

    def _send(self, data: bytes, content_type: str = "image/jpeg") -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to do

    def _stream(self, trickle: bool) -> None:
        srv = self.server
        stop = time.monotonic() + srv.stream_limit_s
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if trickle:
                self.send_header("Content-Length", str(2 * 10**9))
            self.end_headers()
            while time.monotonic() < stop:
                self.wfile.write(b"x" * (1024 if trickle else 65536))
                self.wfile.flush()
                if trickle:
                    time.sleep(srv.trickle_interval)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.timeout_sleep = 4.0
        self.slow_delay = 0.0
        self.healed = False
        self.files: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.trickle_interval = 0.5
        self.stream_limit_s = 60.0


class LoopbackServer:
    """Context manager: ``with LoopbackServer() as srv: srv.url("img/a.jpg")``."""

    def __init__(self) -> None:
        self.server = _Server()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def __enter__(self) -> _Server:
        self._thread.start()
        self.server.url = self.url  # type: ignore[attr-defined]
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
