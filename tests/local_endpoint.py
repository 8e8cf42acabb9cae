"""The local endpoint (``python -m gpu_worker serve``) in a subprocess for tests, and a webhook
receiver.

* :func:`start_endpoint` -- the real server on 127.0.0.1 and a free port, started through
  tests/worker_process.py (own process group, output in a file, always stopped), returned once
  ``/v2/<id>/health`` answers.
* :class:`WebhookReceiver` -- an HTTP server on 127.0.0.1 that records the JSON bodies POSTed to
  it and answers each with the next status of a list (200 once the list is used up).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Mapping, Sequence

import requests

from worker_process import WorkerProcess, free_port, start_worker

#: Any endpoint id works; the tests use this one.
ENDPOINT_ID = "local-test"


def start_endpoint(log_path, env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                   timeout: float = 90.0, api_key: str | None = None) -> tuple[WorkerProcess, str]:
    """Start the server; returns ``(process, base_url)`` once its health route answers."""
    port = free_port()
    proc = start_worker(module="gpu_worker", args=["serve", "--host", "127.0.0.1", "--port", str(port), *args],
                        env={**(env or {}), **({"API_KEY": api_key} if api_key else {})}, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def answers() -> bool:
        try:
            return requests.get(f"{base}/v2/{ENDPOINT_ID}/health", headers=headers, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        proc.wait_ready(answers, timeout, "its health route answering")
    except BaseException:
        proc.stop()
        raise
    return proc, base


class WebhookReceiver:
    """Records POSTed JSON bodies in ``bodies``; answers with ``statuses`` in turn, then 200."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.bodies: list[dict] = []
        self.statuses = list(statuses)
        self.received = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                owner.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                owner.received.set()

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
