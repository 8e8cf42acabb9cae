"""Three fixes to the RunPod SDK (runpod 1.12.0), installed by ``python -m gpu_worker`` with
:func:`install` before ``runpod.serverless.start``.

1. **No job lost on SIGTERM** (:func:`install_drain_fix`). On SIGTERM the SDK's ``run_jobs`` loop
   stops as soon as its local queue is empty and then only awaits the jobs already running, while
   ``get_jobs`` may still be inside a held job-take poll: a job that poll returns is taken from
   RunPod, queued, and never run nor reported. ``DrainingJobScaler`` (made by
   :func:`draining_job_scaler`) runs those jobs.
2. **Bounded shutdown** (same class). After SIGTERM the jobs in progress get
   ``shutdown_grace_s`` seconds to finish. Past it, every job still in progress is reported
   FAILED with a message naming the limit, the heartbeat process is stopped and the worker exits
   (status 0): a client learns at once why its job ended, instead of waiting for the platform's
   timeout after its SIGKILL. The worker's threads cannot be interrupted mid-kernel, so this is a
   hard exit (``os._exit``), as the SDK's own fitness-check failure is. ``0`` or ``None`` waits
   without limit (the SDK's behaviour). Set it a few seconds *below* the platform's own grace
   between SIGTERM and SIGKILL, or it never comes into play.
3. **No base64 in the SDK's log** (:func:`install_log_redaction`). The SDK logs whole results:
   ``--test_input`` prints ``Job result: {...}`` at INFO, and DEBUG prints every handler output.
   Our results hold images as base64 data URIs. :class:`RunPodLogger`'s ``log`` method, through
   which every SDK log line goes, is wrapped so data URIs and long base64 runs are replaced by
   ``<base64: 43,210 chars>`` before the line is printed (see :func:`redact`).

Installing warns (once, in the SDK's log) when the SDK is not the version the patches were
written for; installing twice changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import re
import sys
import threading
from typing import Any, Optional

__all__ = [
    "SHUTDOWN_GRACE_ENV", "DEFAULT_SHUTDOWN_GRACE_S", "draining_job_scaler", "install",
    "install_drain_fix", "install_log_redaction", "redact", "shutdown_grace_s",
]

#: Environment variable: seconds that jobs in progress get to finish after SIGTERM (0: no limit).
SHUTDOWN_GRACE_ENV = "SHUTDOWN_GRACE_S"
#: Default of ``SHUTDOWN_GRACE_S``.
DEFAULT_SHUTDOWN_GRACE_S = 30.0
#: How long reporting the unfinished jobs may take once the grace period is over (seconds).
FAILURE_REPORT_TIMEOUT_S = 5.0
#: The runpod version these patches were written against and tested with.
SDK_VERSION = "1.12.0"

#: A base64 data URI: ``data:<mime>[;param]*;base64,`` and its payload (any length).
_DATA_URI = re.compile(r"(data:[^\s,;'\"]*(?:;[^\s,;'\"]*)*;base64,)([A-Za-z0-9+/_-]*={0,2})", re.IGNORECASE)
#: A bare run of base64 (standard or URL-safe alphabet) at least this long is redacted too.
MIN_BASE64_RUN = 100
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{%d,}={0,2}" % MIN_BASE64_RUN)


# ---------------------------------------------------------------------------------------------
# installing
# ---------------------------------------------------------------------------------------------

def install(shutdown_grace: Optional[float] = None) -> None:
    """Install every patch; ``shutdown_grace`` as in :func:`install_drain_fix`."""
    install_log_redaction()
    install_drain_fix(shutdown_grace)


def shutdown_grace_s(settings: Any = None, environ: Optional[dict] = None) -> float:
    """The shutdown grace period in seconds: ``settings.shutdown_grace_s`` when the settings have
    it, else ``$SHUTDOWN_GRACE_S``, else :data:`DEFAULT_SHUTDOWN_GRACE_S`. 0 means no limit.

    Raises ValueError naming the variable when the value is not a number >= 0.
    """
    value = getattr(settings, "shutdown_grace_s", None)
    if value is None:
        environ = os.environ if environ is None else environ
        value = environ.get(SHUTDOWN_GRACE_ENV, DEFAULT_SHUTDOWN_GRACE_S)
    try:
        grace = float(value)
    except (TypeError, ValueError):
        grace = float("nan")
    if not (0 <= grace < float("inf")):
        raise ValueError(f"setting shutdown_grace_s ({SHUTDOWN_GRACE_ENV}) must be a number of seconds >= 0, "
                         f"got {value!r}")
    return grace


def _check_sdk_version() -> None:
    """Warn (once, in the SDK's log) when the SDK is not the version the patches were made for."""
    from runpod.serverless.modules.rp_logger import RunPodLogger
    from runpod.version import __version__

    if __version__ != SDK_VERSION and not getattr(_check_sdk_version, "warned", False):
        _check_sdk_version.warned = True  # type: ignore[attr-defined]
        RunPodLogger().warn(f"gpu_worker.sdk_patches was written for runpod {SDK_VERSION}, this is {__version__}: "
                            "check that the patches are still needed and still fit")


# ---------------------------------------------------------------------------------------------
# base64 redaction in the SDK's log
# ---------------------------------------------------------------------------------------------

def _placeholder(length: int) -> str:
    return f"<base64: {length:,} chars>"


def redact(text: str) -> str:
    """``text`` with every base64 data URI's payload, and every bare base64 run of at least
    :data:`MIN_BASE64_RUN` characters, replaced by ``<base64: N chars>``.

    >>> redact("{'image': 'data:image/jpeg;base64,/9j/4AAQSkZJRg=='}")
    "{'image': 'data:image/jpeg;base64,<base64: 16 chars>'}"
    """
    text = _DATA_URI.sub(lambda m: m.group(1) + _placeholder(len(m.group(2))), text)
    return _BASE64_RUN.sub(lambda m: _placeholder(len(m.group())), text)


def install_log_redaction() -> None:
    """Wrap ``RunPodLogger.log`` (every SDK log line goes through it) with :func:`redact`.

    Redaction runs only for lines the logger's level lets through, before the SDK's own
    truncation of long lines (which would otherwise still print 4 kB of the payload).
    """
    from runpod.serverless.modules import rp_logger

    logger_class = rp_logger.RunPodLogger
    original = logger_class.log
    if getattr(original, "_redacts_base64", False):
        return
    _check_sdk_version()
    levels = rp_logger.LOG_LEVELS

    @functools.wraps(original)
    def log(self, message, message_level="INFO", job_id=None):
        if _would_print(self.level, message_level, levels):
            message = redact(str(message))
        return original(self, message, message_level, job_id)

    log._redacts_base64 = True  # type: ignore[attr-defined]
    logger_class.log = log


def _would_print(level: str, message_level: str, levels: list[str]) -> bool:
    """Whether RunPodLogger at ``level`` prints a ``message_level`` line (its own rule)."""
    if level == "NOTSET":
        return False
    try:
        return levels.index(level) <= levels.index(message_level)
    except ValueError:  # "TIP" and other levels outside the list: assume printed
        return True


# ---------------------------------------------------------------------------------------------
# SIGTERM: run every job taken, within a bounded time
# ---------------------------------------------------------------------------------------------

def install_drain_fix(shutdown_grace: Optional[float] = None) -> None:
    """Make the SDK's job loop use ``DrainingJobScaler``, with ``shutdown_grace`` seconds
    (None or 0: no limit) for the jobs in progress after SIGTERM.

    ``worker.run_worker`` looks ``rp_scale.JobScaler`` up when it is called, so replacing it
    before ``runpod.serverless.start`` is enough.
    """
    from runpod.serverless.modules import rp_scale

    _check_sdk_version()
    scaler = draining_job_scaler()
    if not issubclass(rp_scale.JobScaler, scaler):
        rp_scale.JobScaler = scaler
    rp_scale.JobScaler.shutdown_grace_s = shutdown_grace or None


@functools.cache
def draining_job_scaler() -> type:
    """The class ``DrainingJobScaler``: the SDK's ``JobScaler`` with the SIGTERM fixes described
    in the module docstring (made on first call, so that importing this module imports no SDK)."""
    from runpod.serverless.modules import rp_scale
    from runpod.serverless.modules.rp_logger import RunPodLogger

    log = RunPodLogger()

    class DrainingJobScaler(rp_scale.JobScaler):
        """``JobScaler`` that runs the jobs a held job-take poll returns after SIGTERM, and gives
        the jobs in progress at most ``shutdown_grace_s`` seconds once SIGTERM has come."""

        #: Seconds jobs in progress get after SIGTERM; None waits without limit.
        shutdown_grace_s: Optional[float] = None

        def __init__(self, config: dict[str, Any]):
            super().__init__(config)
            self._loop: Optional[asyncio.AbstractEventLoop] = None
            self._deadline: Optional[threading.Timer] = None

        # --- no job lost -----------------------------------------------------------------------

        async def get_jobs(self, session) -> None:
            """The SDK's loop; once it ends (shutdown), run the jobs still in the local queue.

            ``run_jobs`` only empties the queue while it loops; jobs a held poll returns after
            it stopped would be reported to no one. Each is run as ``run_jobs`` would run it.
            """
            await super().get_jobs(session)
            leftovers = []
            while not self.jobs_queue.empty():
                leftovers.append(self.jobs_queue.get_nowait())
            if not leftovers:
                return
            log.info(f"Shutting down: running {len(leftovers)} job(s) taken by the last job-take request.")
            tasks = []
            for job in leftovers:
                task = asyncio.create_task(self.handle_job(session, job))
                self.jobs_tasks[job["id"]] = task
                tasks.append(task)
            for job, result in zip(leftovers, await asyncio.gather(*tasks, return_exceptions=True)):
                if isinstance(result, Exception):
                    log.error(f"Job taken during shutdown failed: {result}", job["id"])

        # --- bounded shutdown ----------------------------------------------------------------

        async def run(self) -> None:
            self._loop = asyncio.get_running_loop()
            if not self.is_alive():  # SIGTERM came before the loop started
                self._arm_deadline()
            await super().run()

        def start(self) -> None:
            try:
                super().start()
            finally:
                if self._deadline is not None:
                    self._deadline.cancel()  # everything finished in time: exit normally

        def handle_shutdown(self, signum, frame) -> None:
            """SIGTERM / SIGINT: stop taking jobs (the SDK), and start the grace period.

            A signal handler must not print (a reentrant write to stdout raises) nor start a
            thread (it could deadlock on a lock the interrupted code holds): the deadline is armed
            from the event loop, which ``call_soon_threadsafe`` wakes.
            """
            super().handle_shutdown(signum, frame)
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._arm_deadline)
                except RuntimeError:  # the loop has closed: the worker is exiting anyway
                    pass

        def _arm_deadline(self) -> None:
            grace = self.shutdown_grace_s
            if not grace or self._deadline is not None:
                return
            log.info(f"Shutting down: {self.job_progress.get_job_count()} job(s) in progress get up to "
                     f"{grace:g} s to finish ({SHUTDOWN_GRACE_ENV}).")
            self._deadline = threading.Timer(grace, self._deadline_passed)
            self._deadline.daemon = True
            self._deadline.name = "gpu-worker-shutdown-deadline"
            self._deadline.start()

        def _deadline_passed(self) -> None:
            """On the timer's thread: report the unfinished jobs as failed, then exit now."""
            grace = self.shutdown_grace_s
            try:
                job_ids = _jobs_in_progress(self.job_progress)
                log.error(f"Shutdown grace period of {grace:g} s ({SHUTDOWN_GRACE_ENV}) is over with "
                          f"{len(job_ids)} job(s) unfinished{': ' + ', '.join(job_ids) if job_ids else ''}; "
                          "reporting them as failed and exiting.")
                if job_ids:
                    message = (f"the worker was stopped (SIGTERM) and this job did not finish within its "
                               f"shutdown grace period of {grace:g} s ({SHUTDOWN_GRACE_ENV}); submit it again")
                    _report_failed(job_ids, message)
                _stop_child_processes()
            except BaseException as exc:  # noqa: BLE001 - exit whatever happens
                log.error(f"Error while reporting unfinished jobs at shutdown: {type(exc).__name__}: {exc}")
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except Exception:  # noqa: BLE001
                        pass
                os._exit(0)

    return DrainingJobScaler


def _jobs_in_progress(job_progress) -> list[str]:
    """Ids of the jobs the SDK holds (queued or running, not yet reported), sorted."""
    for _ in range(5):
        try:
            return sorted(str(job) for job in list(job_progress))
        except RuntimeError:  # the set changed size while it was copied: try again
            continue
    return []


def _report_failed(job_ids: list[str], message: str) -> None:
    """POST ``{"error": message}`` for each job to the job-done URL, the SDK's way, bounded in time."""
    from runpod.http_client import AsyncClientSession
    from runpod.serverless.modules.rp_http import send_result

    async def report_all() -> None:
        async with AsyncClientSession() as session:
            await asyncio.gather(*(send_result(session, {"error": message}, {"id": job_id}) for job_id in job_ids),
                                 return_exceptions=True)

    async def bounded() -> None:
        await asyncio.wait_for(report_all(), FAILURE_REPORT_TIMEOUT_S)

    asyncio.run(bounded())


def _stop_child_processes() -> None:
    """Stop the SDK's heartbeat process (a multiprocessing child): a hard exit would orphan it,
    and it would go on telling RunPod that this worker is alive."""
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=2)
