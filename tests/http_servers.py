"""Loopback HTTP servers for tests: fixed bytes, redirects, tricklers, oversized bodies.

Every server binds 127.0.0.1 on a free port, runs in threads, and is bounded: handler threads
give up on idle clients after ``IDLE_TIMEOUT_S``, tricklers stop after ``max_s`` or as soon as the
server is stopping, and :meth:`LoopbackServer.stop` joins them all. Use it as a context manager
(or from a fixture that stops it in teardown)::

    with LoopbackServer() as server:
        server.add_bytes("/a.png", png_bytes, content_type="image/png")
        server.add_redirect("/old", "/a.png")
        fetch_url(server.url("/old"), ...)

Routes (path → behaviour; the query string is ignored when matching):

- ``add_bytes(path, body, status=200, content_type=..., send_length=True)``: the body at once;
  with ``send_length=False`` no Content-Length, the body is followed by closing the connection.
- ``add_redirect(path, location, status=302)``: a redirect to ``location`` (relative or absolute).
- ``add_trickle(path, interval_s=0.2, max_s=30, headers_too=False)``: 200 and then one byte per
  ``interval_s`` (with ``headers_too`` the header block itself is trickled).
- ``add_declared_length(path, declared, body=b"")``: a Content-Length of ``declared`` bytes whatever
  is actually sent (a huge one, or a lie).
- ``add_stream(path, total_bytes, chunk_bytes=65536)``: ``total_bytes`` of zeros with no
  Content-Length (a body over a cap that only streaming can catch).

What the server saw, per path: ``server.hits`` counts requests; ``server.most_at_once`` is the
most requests in progress at once; ``server.hung_up`` counts responses the client hung up on
before the route had sent everything; ``server.sent`` lists, for each finished response of a
trickle or stream route, the bytes it wrote. ``server.wait_for_ended(path, count, timeout)``
waits until that many responses to ``path`` have ended (a client's hang-up is noticed at the
server's next write).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import urlsplit

#: Seconds a handler thread waits on a silent client before giving up.
IDLE_TIMEOUT_S = 5.0


class _Server(ThreadingHTTPServer):
    # Non-daemon handler threads, joined by server_close(): nothing outlives stop().
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # A client under test hanging up mid-exchange (cut off at a cap or a deadline) is
        # expected; anything else is printed as usual.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class LoopbackServer:
    """An HTTP/1.1 server on 127.0.0.1 with programmable routes. Start, use, stop."""

    def __init__(self) -> None:
        self._routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self._stopping = threading.Event()
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.hits: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.hung_up: Counter[str] = Counter()
        self.sent: dict[str, list[int]] = defaultdict(list)
        self._in_flight: Counter[str] = Counter()
        self._ended: Counter[str] = Counter()
        self._seen = threading.Condition()  # guards the counters above; notified as requests end

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "LoopbackServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = IDLE_TIMEOUT_S

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = urlsplit(self.path).path
                with owner._seen:
                    owner.hits[path] += 1
                    owner._in_flight[path] += 1
                    owner.most_at_once[path] = max(owner.most_at_once[path], owner._in_flight[path])
                try:
                    route = owner._routes.get(path)
                    if route is None:
                        _send_simple(self, 404, b"not found")
                        return
                    try:
                        route(self)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True  # the client went away (as clients under test do)
                        with owner._seen:
                            owner.hung_up[path] += 1
                    except TimeoutError:
                        self.close_connection = True  # a silent client, given up after IDLE_TIMEOUT_S
                finally:
                    with owner._seen:
                        owner._in_flight[path] -= 1
                        owner._ended[path] += 1
                        owner._seen.notify_all()

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - keep test output quiet
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end tricklers, close the socket and join every thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins handler threads (block_on_close)
        if self._thread is not None:
            self._thread.join(timeout=IDLE_TIMEOUT_S)
        self._httpd = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server; ``host`` may be any spelling of the loopback address."""
        return f"http://{host}:{self.port}{path}"

    def wait_for_ended(self, path: str, count: int = 1, timeout: float = IDLE_TIMEOUT_S) -> None:
        """Block until ``count`` responses to ``path`` have ended; AssertionError after ``timeout`` s."""
        with self._seen:
            if not self._seen.wait_for(lambda: self._ended[path] >= count, timeout):
                raise AssertionError(f"{self._ended[path]} of {count} responses to {path} ended in {timeout} s")

    # -- routes ------------------------------------------------------------------------------

    def add_bytes(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "application/octet-stream",
        send_length: bool = True,
    ) -> str:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            if send_length:
                h.send_header("Content-Length", str(len(body)))
            else:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()

        self._routes[path] = route
        return path

    def add_redirect(self, path: str, location: str, *, status: int = 302) -> str:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        self._routes[path] = route
        return path

    def add_trickle(self, path: str, *, interval_s: float = 0.2, max_s: float = 30.0, headers_too: bool = False) -> str:
        stopping = self._stopping

        def trickle(h: BaseHTTPRequestHandler, data: bytes) -> None:
            end = time.monotonic() + max_s
            written = 0
            try:
                for i in range(len(data)):
                    if stopping.is_set() or time.monotonic() > end:
                        return
                    h.wfile.write(data[i : i + 1])
                    h.wfile.flush()
                    written += 1
                    stopping.wait(interval_s)
            finally:
                self._note_sent(path, written)

        def route(h: BaseHTTPRequestHandler) -> None:
            h.close_connection = True
            if headers_too:
                trickle(h, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 100_000 + b"\r\n\r\n")
                return
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.flush()
            trickle(h, b"x" * 1_000_000)

        self._routes[path] = route
        return path

    def _note_sent(self, path: str, written: int) -> None:
        with self._seen:
            self.sent[path].append(written)

    def add_declared_length(self, path: str, declared: int, *, body: bytes = b"") -> str:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.close_connection = True
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(declared))
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()

        self._routes[path] = route
        return path

    def add_stream(self, path: str, total_bytes: int, *, chunk_bytes: int = 65536) -> str:
        stopping = self._stopping

        def route(h: BaseHTTPRequestHandler) -> None:
            h.close_connection = True
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Connection", "close")
            h.end_headers()
            sent = 0
            try:
                while sent < total_bytes and not stopping.is_set():
                    n = min(chunk_bytes, total_bytes - sent)
                    h.wfile.write(b"\0" * n)
                    sent += n
                h.wfile.flush()
            finally:
                self._note_sent(path, sent)

        self._routes[path] = route
        return path


def _send_simple(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "text/plain")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)
