"""The ``serve`` command: read the settings, refuse unsafe ones, prepare the worker, run uvicorn.

Exit status 2 for bad or unsafe server settings (e.g. a non-loopback address without API_KEY),
1 when the worker cannot start (bad worker settings, unusable device, failed warm-up), with one
line that says why.
"""

from __future__ import annotations

import logging
import os
import sys

from gpu_worker.server.config import ServerConfig, load_config, refusal

log = logging.getLogger("gpu_worker.server")

#: Exit status for bad or unsafe server settings.
BAD_SETTINGS = 2
#: Exit status when the worker cannot start (bad worker settings, unusable device, failed
#: warm-up), for ``serve`` and for the job loop (gpu_worker.__main__).
STARTUP_FAILED = 1


def serve(argv: list[str]) -> int:
    """``python -m gpu_worker serve [--host H] [--port P] [...]``; returns when the server stops."""
    try:
        config = load_config(argv)
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return BAD_SETTINGS
    reason = refusal(config)
    if reason:
        print(f"serve: {reason}", file=sys.stderr)
        return BAD_SETTINGS

    from gpu_worker.server.joblog import configure_logging

    configure_logging(config.log_format)
    try:
        settings, device = _prepare_worker()
    except Exception as exc:  # noqa: BLE001 - any start-up failure: one line, then exit
        log.error("worker failed to start: %s: %s", type(exc).__name__, exc)
        return STARTUP_FAILED
    return _run(config, settings, device)


def _prepare_worker():
    """The worker's settings and runtime, warmed up on its device (as under RunPod), with
    MAX_CONCURRENCY=0 resolved for the device (gpu_worker.config.max_concurrency_for)."""
    import dataclasses

    from gpu_worker.config import load_settings, max_concurrency_for
    from gpu_worker.cpu_pool import available_cores
    from gpu_worker.device import select_device

    settings = load_settings()
    device_type = select_device(settings.gpu_worker_device).type
    concurrency = max_concurrency_for(settings, device_type, settings.cpu_threads or available_cores())
    settings = dataclasses.replace(settings, max_concurrency=concurrency)
    # The SDK reads its log level at import; unset, it is DEBUG and would log whole outputs.
    os.environ.setdefault("RUNPOD_LOG_LEVEL", settings.runpod_log_level)
    from gpu_worker.startup import prepare_worker

    runtime = prepare_worker(settings)
    return settings, runtime.device


def _run(config: ServerConfig, settings, device) -> int:
    import prometheus_client
    import uvicorn

    from gpu_worker.handler import handler
    from gpu_worker.server.app import create_app

    app = create_app(config, settings, handler, device)
    base = f"http://{config.host if ':' not in config.host else f'[{config.host}]'}:{config.port}"
    log.info("serving RunPod's API at %s/v2/<any endpoint id>/ (run, runsync, status, stream, cancel, "
             "retry, health, purge-queue); page at %s/ ; metrics at %s/metrics ; device %s, "
             "MAX_CONCURRENCY %d; jobs live in memory", base, base, base, device, settings.max_concurrency)
    logging.getLogger("uvicorn").setLevel(logging.INFO)  # runpod's import sets it to WARNING
    # No *_created series beside each counter and histogram: they only repeat the start time.
    prometheus_client.disable_created_metrics()
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_config=None,
                                           access_log=False, timeout_graceful_shutdown=5))
    server.run()
    return 0 if server.started else STARTUP_FAILED
