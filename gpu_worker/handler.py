"""The RunPod handler: ``handler(job)`` for ``runpod.serverless.start``.

The handler is ``async`` and runs the job's decode, kernels and encode on a worker thread, so the
SDK's event loop stays free and concurrent jobs (``MAX_CONCURRENCY`` > 1) overlap. It never
raises: bad input and failures come back as ``{"success": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Optional

from gpu_worker.errors import JobError
from gpu_worker.jobs import error_response
from gpu_worker.runtime import get_runtime

log = logging.getLogger(__name__)


async def handler(job: dict[str, Any], progress: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """RunPod handler: ``job = {"id": ..., "input": {...}}`` -> the job's response dict.

    ``progress(done, total)`` hears a batch job's progress (the local endpoint passes one, which
    is called from the job's worker thread); by default it goes to RunPod when running there."""
    try:
        runtime = get_runtime()
        if not isinstance(job, dict):
            raise JobError(f"a job must be an object with 'id' and 'input', got {type(job).__name__}")
        job_id = str(job.get("id") or "local")
        report = progress or progress_reporter(job)
        return await asyncio.to_thread(runtime.runner.run, job.get("input"), job_id, report)
    except JobError as exc:  # configuration problems found while starting
        return error_response(str(exc))
    except Exception as exc:  # noqa: BLE001 - the worker must keep serving whatever happens
        log.exception("job %s failed unexpectedly", job.get("id") if isinstance(job, dict) else None)
        return error_response(f"internal error: {type(exc).__name__}: {str(exc)[:200]}")


def progress_reporter(job: dict[str, Any]) -> Optional[Callable[[int, int], None]]:
    """Progress updates through the SDK, when running in RunPod's job loop (nowhere to send them
    otherwise). The SDK sends them from a thread of their own; they may arrive after the result."""
    if not os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT") or "id" not in job:
        return None
    import runpod

    def report(done: int, total: int) -> None:
        # The last chunk is not reported: the result follows at once, and an update sent from the
        # SDK's own thread could arrive after it and mark the finished job IN_PROGRESS again.
        if done < total:
            runpod.serverless.progress_update(job, {"processed": done, "total": total})

    return report


def run_sync(job: dict[str, Any]) -> dict[str, Any]:
    """The handler for plain synchronous callers (scripts, notebooks, tests)."""
    return asyncio.run(handler(job))
