"""Five fixes to the RunPod SDK, written for runpod 1.12.0 and installed only on that version.

``python -m gpu_worker`` calls :func:`install` before ``runpod.serverless.start``. On any other
runpod version none is installed and one line in the SDK's log says so: each fix must then be
checked against the new SDK, which may have fixed the problem or changed the code the fix
replaces. Installing twice changes nothing.

1. **No job lost on SIGTERM** (:class:`~gpu_worker.sdk_patches.job_scaler.DrainingJobScaler`).
   On SIGTERM the SDK's ``run_jobs`` loop stops as soon as its local queue is empty and then only
   awaits the jobs already running, while ``get_jobs`` may still be inside a held job-take poll:
   a job that poll returns is taken from RunPod, queued, and never run nor reported. The scaler's
   ``run_jobs`` (fix 4's) keeps starting queued jobs until ``get_jobs`` has ended. *Remove when*
   runpod's ``run_jobs`` keeps running queued jobs until ``get_jobs`` has ended.
2. **Bounded shutdown** (same class; :mod:`~gpu_worker.sdk_patches.shutdown`). With
   ``SHUTDOWN_GRACE_S`` > 0, the jobs in progress after SIGTERM get that many seconds to finish;
   past it, every job still in progress is reported FAILED with a message naming the limit, the
   heartbeat process is stopped and the worker exits (status 0), so a client learns at once why
   its job ended instead of waiting for its timeout after the platform's SIGKILL. The worker's
   threads cannot be interrupted mid-kernel, so this is a hard exit (``os._exit``), as the SDK's
   own fitness-check failure is. **Off by default** (0: wait without limit, the SDK's behaviour):
   ``tests/test_worker_sdk.py`` shows what it protects (a job running past the grace is reported
   at once), but whether it helps depends on the platform's own grace between SIGTERM and
   SIGKILL, which a test here cannot know; set it a few seconds below that grace. *Remove when*
   runpod reports the jobs in progress when it is stopped.
3. **No base64 in the SDK's log** (:mod:`~gpu_worker.sdk_patches.redaction`). The SDK logs whole
   results: ``--test_input`` prints ``Job result: {...}`` at INFO, and DEBUG prints every handler
   output. Our results hold images as base64 data URIs. ``RunPodLogger.log``, through which every
   SDK log line goes, is wrapped so data URIs and long base64 runs are replaced by
   ``<base64: 43,210 chars>``. *Remove when* runpod stops logging handler outputs.
4. **Prompt job-take** (the scaler's ``get_jobs`` and ``run_jobs``). runpod 1.12.0's ``get_jobs`` sleeps a
   fixed second whenever every slot is busy ("Queue is full. Retrying soon."), and its
   ``run_jobs`` looks at the local queue every 0.1 s, so each slot takes about one job per second
   however short the job. Here ``get_jobs`` asks for work as soon as a slot frees: a job's end
   (or its handler's return, below) sets an event that wakes it, and it asks for as many jobs as
   there are free slots in one request (the SDK's batch job-take). ``run_jobs`` starts each
   queued job at once, woken by ``get_jobs``. A job's slot is free once its handler has returned:
   its result is posted (the SDK's job-done post, unchanged) while the next job runs; results
   being posted count against no slot up to the concurrency's worth of them, so results held in
   memory stay bounded. Everything else is the SDK's: the long-polled job-take and its
   ``job_in_progress`` flag, the 5 s wait after ``TooManyRequests``, the heartbeat, progress
   updates, job-done posts, ``refresh_worker``, the stop channel, ``concurrency_modifier`` (read
   on every request, and at least once a second while full). One bound the SDK lacks: a
   job-take that brings no job (an empty queue answered at once, an error) is followed by a wait
   so that such requests are at least ``EMPTY_TAKE_INTERVAL_S`` apart, where the SDK asks again
   at once. At SIGTERM ``run_jobs`` keeps starting queued jobs until ``get_jobs`` has ended
   (fix 1). Written against the SDK's public ``JobScaler`` methods only,
   so the same methods could replace ``get_jobs``/``run_jobs``/``handle_job`` upstream. *Remove
   when* runpod's ``JobScaler`` takes work as soon as a slot frees (no fixed sleep while full, no
   polling of its local queue) and frees a slot before posting the result.
5. **The result is formatted for the log only when printed**
   (:mod:`~gpu_worker.sdk_patches.lean_run_job`). The SDK's ``run_job`` builds two DEBUG messages
   holding the whole result (``f"Handler output: {job_output}"``) before its logger checks the
   level, on the event loop, for every job; here they are built only at DEBUG. *Remove when*
   runpod's ``run_job`` no longer formats the output unconditionally.
"""

from __future__ import annotations

from typing import Optional

from gpu_worker.sdk_patches.redaction import MIN_BASE64_RUN, install_log_redaction, redact
from gpu_worker.sdk_patches.shutdown import (
    DEFAULT_SHUTDOWN_GRACE_S, SHUTDOWN_GRACE_ENV, shutdown_grace_s,
)

__all__ = [
    "DEFAULT_SHUTDOWN_GRACE_S", "MIN_BASE64_RUN", "SDK_VERSION", "SHUTDOWN_GRACE_ENV", "draining_job_scaler",
    "install", "install_drain_fix", "install_log_redaction", "redact", "shutdown_grace_s",
]

#: The runpod version these fixes were written against and tested with; installed only there.
SDK_VERSION = "1.12.0"


def install(shutdown_grace: Optional[float] = None) -> bool:
    """Install every fix when the SDK is runpod :data:`SDK_VERSION`; ``shutdown_grace`` as in
    :func:`install_drain_fix`. Returns whether they were installed (on another version one log
    line says they were not)."""
    from runpod.serverless.modules.rp_logger import RunPodLogger
    from runpod.version import __version__

    if __version__ != SDK_VERSION:
        RunPodLogger().warn(f"gpu_worker.sdk_patches was written for runpod {SDK_VERSION}, this is {__version__}: "
                            "none of its fixes is installed (the SDK runs as it is); check whether each is still "
                            "needed and still fits (gpu_worker/sdk_patches/__init__.py)")
        return False
    from gpu_worker.sdk_patches.lean_run_job import install_lean_run_job

    install_log_redaction()
    install_drain_fix(shutdown_grace)
    install_lean_run_job()
    return True


def install_drain_fix(shutdown_grace: Optional[float] = None) -> None:
    """Make the SDK's job loop use ``DrainingJobScaler`` (fixes 1, 2 and 4), with
    ``shutdown_grace`` seconds (None or 0: no limit) for the jobs in progress after SIGTERM.
    :func:`install` checks the version first.

    ``worker.run_worker`` looks ``rp_scale.JobScaler`` up when it is called, so replacing it
    before ``runpod.serverless.start`` is enough.
    """
    from runpod.serverless.modules import rp_scale

    scaler = draining_job_scaler()
    if not issubclass(rp_scale.JobScaler, scaler):
        rp_scale.JobScaler = scaler
    rp_scale.JobScaler.shutdown_grace_s = shutdown_grace or None


def draining_job_scaler() -> type:
    """The ``DrainingJobScaler`` class (imported here, so that importing this package imports no
    SDK)."""
    from gpu_worker.sdk_patches.job_scaler import DrainingJobScaler

    return DrainingJobScaler
