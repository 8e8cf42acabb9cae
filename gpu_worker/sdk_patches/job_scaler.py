"""``DrainingJobScaler``: runpod 1.12.0's ``JobScaler`` with fixes 1, 2 and 4 of
:mod:`gpu_worker.sdk_patches` (see there for what each does and when to remove it).

This module imports the SDK at its top: it is imported only when the fixes are installed.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any, Callable, Optional

from runpod.http_client import TooManyRequests
from runpod.serverless.modules import rp_scale
from runpod.serverless.modules.rp_handler import is_generator
from runpod.serverless.modules.rp_logger import RunPodLogger

from gpu_worker.sdk_patches.shutdown import SHUTDOWN_GRACE_ENV, grace_is_over

#: Fix 4: longest a full worker waits for a slot before it reads its concurrency again (the SDK
#: reads it once a second).
JOB_TAKE_RECHECK_S = 1.0
#: Fix 4: job-take requests that bring no job are at least this far apart (start to start).
EMPTY_TAKE_INTERVAL_S = 0.5
#: How long a job-take answered 429 (Too Many Requests) waits before the next (the SDK's 5 s).
TOO_MANY_REQUESTS_WAIT_S = 5.0

log = RunPodLogger()


class DrainingJobScaler(rp_scale.JobScaler):
    """``JobScaler`` that asks for work as soon as a job slot frees (fix 4), runs the jobs a
    held job-take poll returns after SIGTERM (fix 1: ``run_jobs`` keeps starting queued jobs
    until ``get_jobs`` has ended), and gives the jobs in progress at most ``shutdown_grace_s``
    seconds once SIGTERM has come (fix 2)."""

    #: Seconds jobs in progress get after SIGTERM; None waits without limit.
    shutdown_grace_s: Optional[float] = None

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._deadline: Optional[threading.Timer] = None
        self._slot_freed = asyncio.Event()  # a job's handler returned, or a job ended
        self._job_queued = asyncio.Event()  # get_jobs queued jobs, or stopped taking
        self._taking = True  # get_jobs has not ended
        self._posting: set[str] = set()  # jobs whose handler returned; result not posted yet
        handler = config.get("handler")
        if callable(handler) and not is_generator(handler):
            self.config = {**config, "handler": _noting_return(handler, self._handler_returned)}

    # --- prompt job-take -----------------------------------------------------------------

    async def get_jobs(self, session) -> None:
        """Take as many jobs as there are free slots, in one (long-polled) request, as soon
        as a slot is free; while none is, wait for a job to free one (or JOB_TAKE_RECHECK_S,
        after which the concurrency is read again, as the SDK does once a second)."""
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
        self._deadline = threading.Timer(grace, grace_is_over, (self.job_progress, grace))
        self._deadline.daemon = True
        self._deadline.name = "gpu-worker-shutdown-deadline"
        self._deadline.start()


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
