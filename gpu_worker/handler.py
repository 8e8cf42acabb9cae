"""The RunPod handler: ``handler(job)`` for ``runpod.serverless.start``.

The handler is ``async`` and runs the job's decode, kernels and encode on a worker thread, so the
SDK's event loop stays free and concurrent jobs (``MAX_CONCURRENCY`` > 1) overlap. It never
raises: bad input and failures come back as ``{"success": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gpu_worker.errors import JobError
from gpu_worker.jobs import error_response
from gpu_worker.runtime import get_runtime

log = logging.getLogger(__name__)


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """RunPod handler: ``job = {"id": ..., "input": {...}}`` -> the job's response dict."""
    try:
        runtime = get_runtime()
        job_input = job.get("input") if isinstance(job, dict) else None
        return await asyncio.to_thread(runtime.runner.run, job_input)
    except JobError as exc:  # configuration problems found while starting
        return error_response(str(exc))
    except Exception as exc:  # noqa: BLE001 - the worker must keep serving whatever happens
        log.exception("job %s failed unexpectedly", job.get("id") if isinstance(job, dict) else None)
        return error_response(f"internal error: {type(exc).__name__}: {str(exc)[:200]}")


def run_sync(job: dict[str, Any]) -> dict[str, Any]:
    """The handler for plain synchronous callers (scripts, notebooks, tests)."""
    return asyncio.run(handler(job))
