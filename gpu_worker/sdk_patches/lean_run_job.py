"""Fix 5 of :mod:`gpu_worker.sdk_patches`: the handler's output is formatted for the log only
when the log prints it.

runpod 1.12.0's ``rp_job.run_job`` writes ``log.debug(f"Handler output: {job_output}")`` and
``log.debug(f"run_job return: {run_result}")``: the f-strings build the ``repr`` of the whole
result (for this worker, tens of kB to megabytes of base64) before the logger looks at its level,
twice per job, on the event loop that takes and posts every job. :func:`run_job` is the SDK's
function line for line, except that those two messages are formatted only when the module's
logger prints DEBUG lines. Everything else (the error record, ``refresh_worker``,
``check_return_size``) is unchanged.
"""

from __future__ import annotations

import inspect
import json
import os
import traceback
from typing import Any, Callable, Dict

from runpod.serverless.modules import rp_job, rp_logger


def _debug_on() -> bool:
    """Whether ``rp_job``'s logger prints DEBUG lines (RunPodLogger's own rule)."""
    level = rp_job.log.level
    return level != "NOTSET" and rp_logger.LOG_LEVELS.index(level) <= rp_logger.LOG_LEVELS.index("DEBUG")


async def run_job(handler: Callable, job: Dict[str, Any]) -> Dict[str, Any]:
    """``rp_job.run_job`` with its two result-sized debug messages formatted only when printed."""
    log = rp_job.log
    log.info("Started.", job["id"])
    run_result: Dict[str, Any] = {}

    try:
        handler_return = handler(job)
        job_output = await handler_return if inspect.isawaitable(handler_return) else handler_return

        if _debug_on():
            log.debug(f"Handler output: {job_output}", job["id"])

        if isinstance(job_output, dict):
            error_msg = job_output.pop("error", None)
            refresh_worker = job_output.pop("refresh_worker", None)
            run_result["output"] = job_output
            if error_msg:
                run_result["error"] = error_msg
            if refresh_worker:
                run_result["stopPod"] = True
        else:
            run_result = {"output": job_output}

        if run_result.get("output") == {}:
            run_result.pop("output")

        rp_job.check_return_size(run_result)

    except Exception as err:  # noqa: BLE001 - the SDK's own catch-all, reported as the job's error
        error_info = {
            "error_type": str(type(err)),
            "error_message": str(err),
            "error_traceback": traceback.format_exc(),
            "hostname": os.environ.get("RUNPOD_POD_HOSTNAME", "unknown"),
            "worker_id": os.environ.get("RUNPOD_POD_ID", "unknown"),
            "runpod_version": rp_job.runpod_version,
        }
        log.error("Captured Handler Exception", job["id"])
        log.error(json.dumps(error_info, indent=4))
        run_result = {"error": json.dumps(error_info)}

    finally:
        if _debug_on():
            log.debug(f"run_job return: {run_result}", job["id"])

    return run_result


def install_lean_run_job() -> None:
    """Make ``rp_job.handle_job`` call :func:`run_job` (it looks ``run_job`` up in its module)."""
    rp_job.run_job = run_job
