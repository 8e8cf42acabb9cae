"""``python -m gpu_worker``: start the RunPod worker.

The SDK's own modes work unchanged: with no ``RUNPOD_WEBHOOK_GET_JOB`` it runs ``test_input.json``
(or ``--test_input '{...}'``) once; ``--rp_serve_api`` serves the local API; otherwise it polls
RunPod's job queue. ``python -m gpu_worker serve ...`` runs the local endpoint instead, which speaks
RunPod's public API (:mod:`gpu_worker.server`).

Before the SDK starts: settings are loaded (MAX_CONCURRENCY=0 resolved for the device), the SDK
is patched (gpu_worker.sdk_patches: no job lost on SIGTERM, bounded shutdown, no base64 in its
log, jobs taken as soon as a slot frees) and the runtime is built and warmed up.
A failure there ends the process with status 1 and one log line that names the problem, before
any job is taken.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import traceback
from typing import Any, Callable

# Exit status when the worker cannot start (bad settings, unusable device, failed warm-up): the
# same for the job loop and for ``serve`` (the server's cli module is light to import).
from gpu_worker.server.cli import STARTUP_FAILED
#: The levels runpod's logger accepts (runpod.serverless.modules.rp_logger.LOG_LEVELS).
SDK_LOG_LEVELS = ("NOTSET", "TRACE", "DEBUG", "INFO", "WARN", "ERROR")


def main() -> None:
    if sys.argv[1:2] == ["serve"]:  # the local endpoint (gpu_worker.server), not the RunPod SDK
        from gpu_worker.server import main as serve

        sys.exit(serve(sys.argv[2:]))
    # A native crash (SIGSEGV, SIGABRT, ...) prints every thread's Python stack to the log.
    faulthandler.enable(all_threads=True)
    restarts = _supervisor_restarts()
    if restarts:
        from gpu_worker import supervisor

        sys.exit(supervisor.main([sys.executable, *sys.orig_argv[1:]], restarts, _log_error))
    try:
        settings, handler = _prepare()
    except Exception as exc:  # noqa: BLE001 - any start-up failure: one clear line, then exit
        _log_error(f"Worker failed to start: {_describe(exc)}")
        sys.exit(STARTUP_FAILED)

    import runpod

    runpod.serverless.start({
        "handler": handler,
        "concurrency_modifier": lambda current: settings.max_concurrency,
    })


def _supervisor_restarts() -> int:
    """SUPERVISOR_RESTARTS when this process should supervise the worker rather than be it: in
    RunPod's job loop (not the SDK's local modes), not already under a supervisor; else 0. Bad
    settings give 0 here: the worker itself then fails to start with a line that names them."""
    from gpu_worker.config import load_settings
    from gpu_worker.supervisor import supervised

    local_mode = any(arg.startswith(("--test_input", "--rp_serve_api")) for arg in sys.argv[1:])
    if supervised() or local_mode or not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return 0
    try:
        return load_settings().supervisor_restarts
    except ValueError:
        return 0


def _prepare() -> tuple[Any, Callable]:
    """Settings, SDK patches, runtime and warm-up; returns ``(settings, handler)``."""
    from gpu_worker.config import load_settings

    settings = load_settings()
    # The SDK reads its log level at import; unset, it is DEBUG and logs whole outputs (base64).
    level = os.environ.setdefault("RUNPOD_LOG_LEVEL", settings.runpod_log_level)
    if level.strip().upper() not in SDK_LOG_LEVELS:  # the SDK's import would fail, less clearly
        raise ValueError(f"RUNPOD_LOG_LEVEL (setting runpod_log_level) must be one of "
                         f"{', '.join(SDK_LOG_LEVELS)}, got {level!r}")

    settings = _with_max_concurrency(settings)

    from gpu_worker import sdk_patches

    sdk_patches.install(sdk_patches.shutdown_grace_s(settings))

    from gpu_worker.handler import handler
    from gpu_worker.startup import prepare_worker

    prepare_worker(settings)
    return settings, handler


def _with_max_concurrency(settings: Any) -> Any:
    """``settings`` with MAX_CONCURRENCY=0 (the default) resolved for the device the worker will
    run on (gpu_worker.config.max_concurrency_for). A device that cannot be selected is left to
    the runtime to report."""
    import dataclasses

    from gpu_worker.config import max_concurrency_for

    if settings.max_concurrency > 0:
        return settings
    from gpu_worker.cpu_pool import available_cores
    from gpu_worker.device import select_device

    try:
        device_type = select_device(settings.gpu_worker_device).type
    except ValueError:
        return settings
    cores = settings.cpu_threads or available_cores()
    concurrency = max_concurrency_for(settings, device_type, cores)
    logging.getLogger(__name__).info("MAX_CONCURRENCY=0: taking %d job(s) at once on %s%s", concurrency, device_type,
                                     f" ({cores} cores)" if device_type == "cpu" else "")
    return dataclasses.replace(settings, max_concurrency=concurrency)


def _describe(exc: BaseException) -> str:
    """A one-line description: the message of an expected failure (settings, device, warm-up);
    type, message and the line that raised for anything else."""
    expected: tuple[type, ...] = (ValueError,)
    try:
        from gpu_worker.startup import StartupError

        expected += (StartupError,)
    except Exception:  # noqa: BLE001 - the failure may be that the package does not import
        pass
    if isinstance(exc, expected):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _log_error(message: str) -> None:
    """One ERROR line in the SDK's log format (its logger, when it can be imported)."""
    try:
        from runpod.serverless.modules.rp_logger import RunPodLogger

        RunPodLogger().error(message)
    except Exception:  # noqa: BLE001 - e.g. an invalid RUNPOD_LOG_LEVEL makes the SDK's import fail
        print(f"{'ERROR'.ljust(7)}| {message}", flush=True)


if __name__ == "__main__":
    main()
