"""In-memory jobs of the local endpoint: a bounded queue, worker slots, results kept for a while.

Everything lives in this process's memory: a restart loses queued jobs and results.

A job goes ``IN_QUEUE`` -> ``IN_PROGRESS`` -> ``COMPLETED`` or ``FAILED`` (or ``CANCELLED``, or
``TIMED_OUT`` when ``policy.executionTimeout`` or ``policy.ttl`` runs out). ``slots`` worker
tasks (``MAX_CONCURRENCY``) take jobs in order and run them through the worker's handler, so
concurrent jobs share the cross-job batcher as they do under RunPod. The handler's device work
cannot be interrupted: a job cancelled or timed out while running gets its final status at once,
but its slot stays busy until the handler returns, and that result is dropped.

A handler output is judged as RunPod's SDK reports it: a dict with a truthy ``error`` makes the
job ``FAILED`` with that ``error`` (the rest of the dict, e.g. ``{"success": false}``, is its
``output``); anything else is ``COMPLETED`` with the output as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from gpu_worker.server.config import ServerConfig
from gpu_worker.server.joblog import log_job

log = logging.getLogger(__name__)

IN_QUEUE, IN_PROGRESS = "IN_QUEUE", "IN_PROGRESS"
COMPLETED, FAILED, CANCELLED, TIMED_OUT = "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"
FINAL = (COMPLETED, FAILED, CANCELLED, TIMED_OUT)
#: Statuses ``retry`` accepts.
RETRYABLE = (FAILED, TIMED_OUT)
#: Shown as ``workerId``: the one local worker.
WORKER_ID = "local"

#: ``handler(job, progress=callback)``: the worker's handler, with a progress callback.
Handler = Callable[..., Awaitable[Any]]
#: Told about every ended job: (job, outcome).
EndedHook = Callable[["Job", str], None]


class QueueFull(RuntimeError):
    """The queue holds its maximum of waiting jobs."""


@dataclass
class Job:
    """One job and everything the API shows about it. Times are ``time.monotonic()`` seconds."""

    id: str
    input: Any
    webhook: Optional[str]
    execution_timeout_ms: int
    ttl_ms: int
    sync: bool
    status: str = IN_QUEUE
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    output: Any = None
    error: Any = None
    #: The last ``{"processed", "total"}`` of a running batch job, shown as its ``output``.
    progress: Optional[dict] = None
    #: Stream chunks not read yet (``stream/{id}``): the output, once the job has ended.
    unread: list = field(default_factory=list)
    #: Counts runs (``retry`` starts a new one); a run's result counts only while it is current.
    generation: int = 0
    expires_at: Optional[float] = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def delay_ms(self) -> Optional[int]:
        return None if self.started_at is None else round((self.started_at - self.submitted_at) * 1000)

    @property
    def execution_ms(self) -> Optional[int]:
        if self.started_at is None:
            return None
        return round(((self.finished_at or time.monotonic()) - self.started_at) * 1000)

    def view(self) -> dict[str, Any]:
        """The job as RunPod's ``status`` shows it."""
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started_at is not None:
            body["delayTime"] = self.delay_ms
            body["workerId"] = WORKER_ID
        if self.status in FINAL and self.started_at is not None:
            body["executionTime"] = self.execution_ms
        if self.status == IN_PROGRESS and self.progress is not None:
            body["output"] = self.progress
        if self.status in FINAL and self.output is not None:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        return body


def judge(output: Any) -> tuple[str, Any, Any]:
    """(status, output, error) of a handler's return value, as RunPod's SDK reports it."""
    if isinstance(output, dict) and output.get("error"):
        rest = {k: v for k, v in output.items() if k != "error"}
        return FAILED, rest or None, output["error"]
    return COMPLETED, output, None


class JobQueue:
    """The jobs of one endpoint. Start with :meth:`start` inside the event loop, end with :meth:`stop`."""

    def __init__(self, handler: Handler, config: ServerConfig, slots: int, on_ended: EndedHook) -> None:
        self.handler = handler
        self.config = config
        self.slots = max(1, slots)
        self.on_ended = on_ended
        self.jobs: dict[str, Job] = {}
        self.running = 0
        self.counts = {COMPLETED: 0, FAILED: 0, "retried": 0}
        self._pending: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"slot-{i}") for i in range(self.slots)]
        self._tasks.append(asyncio.create_task(self._reaper(), name="reaper"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the API's operations -----------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs waiting for a slot."""
        return sum(1 for job in self.jobs.values() if job.status == IN_QUEUE)

    def submit(self, job_input: Any, webhook: Optional[str], policy: Any, sync: bool) -> Job:
        """Queue a new job; raises QueueFull when ``queue_size`` jobs are waiting already."""
        if self.depth >= self.config.queue_size:
            raise QueueFull(f"the queue is full: {self.config.queue_size} jobs are waiting "
                            f"(SERVE_QUEUE_SIZE); retry later")
        job = Job(
            id=f"{'sync' if sync else 'async'}-{uuid.uuid4()}",
            input=job_input,
            webhook=webhook,
            execution_timeout_ms=(policy and policy.executionTimeout) or self.config.execution_timeout_ms,
            ttl_ms=(policy and policy.ttl) or self.config.job_ttl_ms,
            sync=sync,
        )
        self.jobs[job.id] = job
        self._pending.put_nowait((job.id, job.generation))
        return job

    def get(self, job_id: str) -> Optional[Job]:
        return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        """Cancel a waiting or running job (an ended one stays as it is)."""
        if job.status in (IN_QUEUE, IN_PROGRESS):
            self._end(job, CANCELLED, None, None)

    def retry(self, job: Job) -> None:
        """Queue a FAILED or TIMED_OUT job again, same id and input; its old result is gone."""
        if self.depth >= self.config.queue_size:
            raise QueueFull(f"the queue is full: {self.config.queue_size} jobs are waiting (SERVE_QUEUE_SIZE)")
        job.generation += 1
        self.counts["retried"] += 1
        job.status, job.output, job.error, job.progress, job.unread = IN_QUEUE, None, None, None, []
        job.submitted_at, job.started_at, job.finished_at, job.expires_at = time.monotonic(), None, None, None
        job.ended = asyncio.Event()
        self._pending.put_nowait((job.id, job.generation))

    def purge(self) -> int:
        """Cancel every waiting job (running ones go on); returns how many there were. A purged
        job reads CANCELLED, with an error that says it was purged, until it expires."""
        waiting = [job for job in self.jobs.values() if job.status == IN_QUEUE]
        for job in waiting:
            self._end(job, CANCELLED, None, "removed from the queue by purge-queue")
        return len(waiting)

    def health(self) -> dict[str, Any]:
        """RunPod's ``health``: job counts and this endpoint's one worker's slots."""
        return {
            "jobs": {"completed": self.counts[COMPLETED], "failed": self.counts[FAILED],
                     "inProgress": self.running, "inQueue": self.depth, "retried": self.counts["retried"]},
            "workers": {"idle": self.slots - self.running, "initializing": 0, "ready": self.slots - self.running,
                        "running": self.running, "throttled": 0, "unhealthy": 0},
        }

    async def wait(self, job: Job, timeout_s: float) -> None:
        """Wait until ``job`` ends or ``timeout_s`` passes."""
        try:
            await asyncio.wait_for(job.ended.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    # --- running jobs ---------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job_id, generation = await self._pending.get()
            job = self.jobs.get(job_id)
            if job is None or job.generation != generation or job.status != IN_QUEUE:
                continue  # cancelled, purged, expired or retried since it was queued
            self.running += 1
            try:
                await self._run(job)
            finally:
                self.running -= 1

    async def _run(self, job: Job) -> None:
        """Run one job through the handler, bounded by its execution timeout and ttl."""
        generation = job.generation
        job.status, job.started_at = IN_PROGRESS, time.monotonic()
        ttl_left = job.ttl_ms / 1000 - (job.started_at - job.submitted_at)
        budget = min(job.execution_timeout_ms / 1000, ttl_left)

        def progress(done: int, total: int) -> None:  # called from the handler's worker thread
            job.progress = {"processed": done, "total": total}

        work = asyncio.ensure_future(self.handler({"id": job.id, "input": job.input}, progress=progress))
        try:
            output = await asyncio.wait_for(asyncio.shield(work), max(budget, 0.0))
        except asyncio.TimeoutError:
            if job.generation == generation and job.status == IN_PROGRESS:
                which = "policy.executionTimeout" if budget < ttl_left else "policy.ttl"
                self._end(job, TIMED_OUT, None, f"the job ran past its {which} ({max(budget, 0) * 1000:.0f} ms)")
            await asyncio.gather(work, return_exceptions=True)  # the slot is busy until the handler returns
            return
        except Exception as exc:  # noqa: BLE001 - the handler never raises; if it did, the job fails
            log.exception("handler raised for job %s", job.id)
            output = {"error": f"internal error: {type(exc).__name__}: {str(exc)[:200]}"}
        if job.generation == generation and job.status == IN_PROGRESS:
            self._end(job, *judge(output))

    def _end(self, job: Job, status: str, output: Any, error: Any) -> None:
        """Give ``job`` its final status, keep it for the stated time, tell whoever listens."""
        job.status, job.output, job.error, job.progress = status, output, error, None
        job.finished_at = time.monotonic()
        job.expires_at = job.finished_at + (self.config.runsync_result_ttl_s if job.sync else self.config.result_ttl_s)
        job.unread = [{"output": output}] if output is not None else []
        if status in self.counts:
            self.counts[status] += 1
        job.ended.set()
        log_job(job.id, status, output, error, job.delay_ms, job.execution_ms)
        self.on_ended(job, status)

    # --- expiry -----------------------------------------------------------------------------------

    async def _reaper(self, every_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.expire(time.monotonic())

    def expire(self, now: float) -> None:
        """Time out waiting jobs past their ttl; forget ended jobs past their keep time, and the
        oldest ended ones beyond ``max_finished_jobs``."""
        for job in list(self.jobs.values()):
            if job.status == IN_QUEUE and now - job.submitted_at > job.ttl_ms / 1000:
                self._end(job, TIMED_OUT, None, f"the job waited past its policy.ttl ({job.ttl_ms} ms)")
            elif job.status in FINAL and job.expires_at is not None and now > job.expires_at:
                del self.jobs[job.id]
        ended = sorted((job for job in self.jobs.values() if job.status in FINAL), key=lambda j: j.finished_at)
        for job in ended[: max(0, len(ended) - self.config.max_finished_jobs)]:
            del self.jobs[job.id]
