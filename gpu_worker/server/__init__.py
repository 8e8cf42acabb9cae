"""``python -m gpu_worker serve``: a local endpoint that speaks RunPod's public serverless API.

Modules, one job each:

- :mod:`~gpu_worker.server.cli` -- the command: settings, start-up checks, uvicorn.
- :mod:`~gpu_worker.server.config` -- the server's settings (flags, environment, defaults).
- :mod:`~gpu_worker.server.app` -- the FastAPI app: ``/v2/{endpoint_id}/...``, ``/``, ``/ops``, ``/metrics``.
- :mod:`~gpu_worker.server.models` -- RunPod's request and response bodies (pydantic).
- :mod:`~gpu_worker.server.guards` -- the API key and the body size limits.
- :mod:`~gpu_worker.server.jobqueue` -- in-memory jobs: queue, worker slots, timeouts, expiry.
- :mod:`~gpu_worker.server.webhook` -- SSRF-safe webhook delivery with retries.
- :mod:`~gpu_worker.server.metrics` -- Prometheus metrics.
- :mod:`~gpu_worker.server.joblog` -- log format and the one line per job.
- ``static/`` -- the web page (plain HTML, CSS and JavaScript; nothing from the network).
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """Run the server with ``argv`` (the arguments after ``serve``); returns the exit status."""
    from gpu_worker.server.cli import serve

    return serve(argv)
