"""Four fixes to the RunPod SDK (runpod 1.12.0), installed by ``python -m gpu_worker`` with
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

4. **Prompt job-take** (same class, ``prompt_job_take``). runpod 1.12.0's ``get_jobs`` sleeps a
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
   so that such requests are at least :data:`EMPTY_TAKE_INTERVAL_S` apart, where the SDK asks
   again at once. At SIGTERM ``run_jobs`` keeps starting queued jobs until ``get_jobs`` has
   ended, which covers fix 1 on this path. Installed only on runpod :data:`SDK_VERSION` (on
   another version one log line says it is not, and the SDK's own loop runs). **Remove it** when
   runpod's ``JobScaler`` takes work as soon as a slot frees (no fixed sleep while full, no
   polling of its local queue) and frees a slot before posting the result; then fix 1 and the
   bounded shutdown stand alone again. Written against the SDK's public ``JobScaler`` methods
   only, so the same methods could replace ``get_jobs``/``run_jobs``/``handle_job`` upstream.

Installing warns (once, in the SDK's log) when the SDK is not the version the patches were
written for; installing twice changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import multiprocessing
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Optional

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
#: The runpod version these patches were written against and tested with. The prompt job-take
#: (fix 4) is installed only there.
SDK_VERSION = "1.12.0"
#: Fix 4: longest a full worker waits for a slot before it reads its concurrency again (the SDK
#: reads it once a second).
JOB_TAKE_RECHECK_S = 1.0
#: Fix 4: job-take requests that bring no job are at least this far apart (start to start).
EMPTY_TAKE_INTERVAL_S = 0.5
#: How long a job-take answered 429 (Too Many Requests) waits before the next (the SDK's 5 s).
TOO_MANY_REQUESTS_WAIT_S = 5.0

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
    """Warn (once, one line in the SDK's log) when the SDK is not the version the patches were
    made for; the prompt job-take is then not installed (:func:`install_drain_fix`)."""
    from runpod.serverless.modules.rp_logger import RunPodLogger
    from runpod.version import __version__

    if __version__ != SDK_VERSION and not getattr(_check_sdk_version, "warned", False):
        _check_sdk_version.warned = True  # type: ignore[attr-defined]
        RunPodLogger().warn(f"gpu_worker.sdk_patches was written for runpod {SDK_VERSION}, this is {__version__}: "
                            "its prompt job-take is not installed (the SDK's own job-take loop runs); "
                            "check that the other patches are still needed and still fit")


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
# the job loop: prompt job-take; SIGTERM: run every job taken, within a bounded time
# ---------------------------------------------------------------------------------------------

def install_drain_fix(shutdown_grace: Optional[float] = None, prompt_job_take: bool = True) -> None:
    """Make the SDK's job loop use ``DrainingJobScaler``, with ``shutdown_grace`` seconds
    (None or 0: no limit) for the jobs in progress after SIGTERM, and the prompt job-take
    (fix 4) when ``prompt_job_take`` is true and the SDK is runpod :data:`SDK_VERSION`.

    ``worker.run_worker`` looks ``rp_scale.JobScaler`` up when it is called, so replacing it
    before ``runpod.serverless.start`` is enough.
    """
    from runpod.serverless.modules import rp_scale
    from runpod.version import __version__

    _check_sdk_version()
    scaler = draining_job_scaler()
    if not issubclass(rp_scale.JobScaler, scaler):
        rp_scale.JobScaler = scaler
    rp_scale.JobScaler.shutdown_grace_s = shutdown_grace or None
    rp_scale.JobScaler.prompt_job_take = bool(prompt_job_take) and __version__ == SDK_VERSION


@functools.cache
def draining_job_scaler() -> type:
    """The class ``DrainingJobScaler``: the SDK's ``JobScaler`` with the fixes 1, 2 and 4
    described in the module docstring (made on first call, so that importing this module imports
    no SDK)."""
    from runpod.http_client import TooManyRequests
    from runpod.serverless.modules import rp_scale
    from runpod.serverless.modules.rp_handler import is_generator
    from runpod.serverless.modules.rp_logger import RunPodLogger

    log = RunPodLogger()

    class DrainingJobScaler(rp_scale.JobScaler):
        """``JobScaler`` that asks for work as soon as a job slot frees (``prompt_job_take``),
        runs the jobs a held job-take poll returns after SIGTERM, and gives the jobs in progress
        at most ``shutdown_grace_s`` seconds once SIGTERM has come."""

        #: Seconds jobs in progress get after SIGTERM; None waits without limit.
        shutdown_grace_s: Optional[float] = None
        #: Fix 4: ``get_jobs`` and ``run_jobs`` below instead of the SDK's (install_drain_fix sets
        #: it where the SDK is the version it was written for).
        prompt_job_take: bool = False

        def __init__(self, config: dict[str, Any]):
            super().__init__(config)
            self._loop: Optional[asyncio.AbstractEventLoop] = None
            self._deadline: Optional[threading.Timer] = None
            self._slot_freed = asyncio.Event()  # a job's handler returned, or a job ended
            self._job_queued = asyncio.Event()  # get_jobs queued jobs, or stopped taking
            self._taking = True  # get_jobs has not ended
            self._posting: set[str] = set()  # jobs whose handler returned; result not posted yet
            handler = config.get("handler")
            if self.prompt_job_take and callable(handler) and not is_generator(handler):
                self.config = {**config, "handler": _noting_return(handler, self._handler_returned)}

        # --- prompt job-take -----------------------------------------------------------------

        async def get_jobs(self, session) -> None:
            """Take as many jobs as there are free slots, in one (long-polled) request, as soon
            as a slot is free; while none is, wait for a job to free one (or JOB_TAKE_RECHECK_S,
            after which the concurrency is read again, as the SDK does once a second)."""
            if not self.prompt_job_take:
                await super().get_jobs(session)
                await self._run_leftovers(session)
                return
            try:
                while self.is_alive():
                    await self.set_scale()
                    free = self._free_slots()
                    if free > 0:
                        await self._take_jobs(session, free)
                    else:
                        await _wait_for(self._slot_freed)
            finally:
                self._taking = False
                self._job_queued.set()
                if not self.jobs_queue.empty():
                    log.info(f"Shutting down: running {self.jobs_queue.qsize()} job(s) taken by the last "
                             "job-take request.")

        def _free_slots(self) -> int:
            """Slots free: the concurrency less the jobs taken and not finished, where a job whose
            result is being posted does not count (up to the concurrency's worth of them)."""
            posting = min(len(self._posting), self.current_concurrency)
            return self.current_concurrency - (self.job_progress.get_job_count() - posting)

        async def _take_jobs(self, session, wanted: int) -> None:
            """One job-take request for ``wanted`` jobs, handled as the SDK's ``get_jobs`` does; a
            request that brings no job is followed by a wait, so that such requests are at least
            EMPTY_TAKE_INTERVAL_S apart (the real job-take is held open while the queue is empty)."""
            started, jobs = time.monotonic(), None
            try:
                jobs = await asyncio.wait_for(self.jobs_fetcher(session, wanted), timeout=self.jobs_fetcher_timeout)
            except TooManyRequests:
                log.debug(f"JobScaler.get_jobs | Too many requests. Debounce for {TOO_MANY_REQUESTS_WAIT_S:g} seconds.")
                await asyncio.sleep(TOO_MANY_REQUESTS_WAIT_S)
                return
            except asyncio.TimeoutError:
                log.debug("JobScaler.get_jobs | Job acquisition timed out. Retrying.")
            except TypeError as error:
                log.debug(f"JobScaler.get_jobs | Unexpected error: {error}.")
            except Exception as error:  # noqa: BLE001 - as the SDK: log, and ask again
                log.error(f"Failed to get job. | Error Type: {type(error).__name__} | Error Message: {error}")
            if not jobs:
                await asyncio.sleep(max(0.0, EMPTY_TAKE_INTERVAL_S - (time.monotonic() - started)))
                return
            for job in jobs:
                self.job_progress.add(job)
                self._job_queued.set()  # before put: run_jobs empties a full queue
                await self.jobs_queue.put(job)
                log.debug("Job Queued", job["id"])
            log.info(f"Jobs in queue: {self.jobs_queue.qsize()}")

        async def run_jobs(self, session) -> None:
            """Start each queued job at once (``get_jobs`` takes no more than there are free
            slots); when ``get_jobs`` has ended and the queue is empty, wait for the jobs still
            running, as the SDK does."""
            if not self.prompt_job_take:
                await super().run_jobs(session)
                return
            tasks: set[asyncio.Task] = set()
            while self._taking or not self.jobs_queue.empty():
                while not self.jobs_queue.empty():
                    job = self.jobs_queue.get_nowait()
                    task = asyncio.create_task(self.handle_job(session, job))
                    self.jobs_tasks[job["id"]] = task
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if self._taking:
                    await _wait_for(self._job_queued)
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):
                    log.error(f"JobScaler.run_jobs | Task failed during shutdown drain: {result}")

        async def handle_job(self, session, job: dict) -> None:
            try:
                await super().handle_job(session, job)
            finally:
                self._posting.discard(job["id"])
                self._slot_freed.set()

        def _handler_returned(self, job: dict) -> None:
            """The handler of ``job`` has returned (or raised): its slot is free while the
            result is posted."""
            if isinstance(job, dict) and job.get("id") in self.jobs_tasks:
                self._posting.add(job["id"])
                self._slot_freed.set()

        def _wake(self) -> None:
            self._slot_freed.set()
            self._job_queued.set()

        # --- no job lost (the SDK's own job-take loop) -----------------------------------------

        async def _run_leftovers(self, session) -> None:
            """Run the jobs still in the local queue once the SDK's ``get_jobs`` has ended:
            ``run_jobs`` only empties the queue while it loops, so jobs a held poll returns after
            it stopped would be reported to no one. Each is run as ``run_jobs`` would run it."""
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
            """SIGTERM / SIGINT: stop taking jobs (the SDK), wake the job loops, and start the
            grace period.

            A signal handler must not print (a reentrant write to stdout raises) nor start a
            thread (it could deadlock on a lock the interrupted code holds): the deadline is armed
            from the event loop, which ``call_soon_threadsafe`` wakes.
            """
            super().handle_shutdown(signum, frame)
            if self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                    self._loop.call_soon_threadsafe(self._arm_deadline)
                except RuntimeError:  # the loop has closed: the worker is exiting anyway
                    pass

        def _arm_deadline(self) -> None:
            grace = self.shutdown_grace_s
            if not grace or self._deadline is not None:
                return
            log.info(f"Shutting down: {self.job_progress.get_job_count()} job(s) in progress get up to "
                     f"{grace:g} s to finish ({SHUTDOWN_GRACE_ENV}).")
            self._deadline = threading.Timer(grace, _grace_is_over, (self.job_progress, grace))
            self._deadline.daemon = True
            self._deadline.name = "gpu-worker-shutdown-deadline"
            self._deadline.start()

    return DrainingJobScaler


async def _wait_for(event: asyncio.Event, timeout: Optional[float] = None) -> None:
    """Clear ``event`` and wait until it is set again, at most ``timeout`` seconds (default
    :data:`JOB_TAKE_RECHECK_S`). Callers check their condition before: nothing awaits between."""
    event.clear()
    try:
        await asyncio.wait_for(event.wait(), JOB_TAKE_RECHECK_S if timeout is None else timeout)
    except asyncio.TimeoutError:
        pass


def _noting_return(handler: Callable, on_return: Callable[[dict], None]) -> Callable:
    """``handler``, calling ``on_return(job)`` as soon as it has returned or raised (awaited, when
    it returns an awaitable): before the SDK posts the result."""
    async def awaited(result, job):
        try:
            return await result
        finally:
            on_return(job)

    def noting_return(job):
        try:
            result = handler(job)
        except BaseException:
            on_return(job)
            raise
        if inspect.isawaitable(result):
            return awaited(result, job)
        on_return(job)
        return result

    noting_return.__name__ = getattr(handler, "__name__", "handler")
    noting_return.__doc__ = handler.__doc__
    return noting_return


def _grace_is_over(job_progress, grace: float) -> None:
    """On the deadline timer's thread: report the unfinished jobs as failed, then exit now."""
    from runpod.serverless.modules.rp_logger import RunPodLogger

    log = RunPodLogger()
    try:
        job_ids = _jobs_in_progress(job_progress)
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
