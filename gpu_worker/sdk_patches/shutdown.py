"""Fix 2 of :mod:`gpu_worker.sdk_patches`, the bounded shutdown: what happens when the grace
period after SIGTERM is over, and the setting that sets it. The unfinished jobs are reported
failed by :mod:`gpu_worker.job_done` (the SDK's job-done call, made without the SDK)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Any, Optional

from gpu_worker.job_done import post_failures

#: Environment variable: seconds that jobs in progress get to finish after SIGTERM (0: no limit).
SHUTDOWN_GRACE_ENV = "SHUTDOWN_GRACE_S"
#: Default of ``SHUTDOWN_GRACE_S``: no limit, the SDK's own behaviour (see the package docstring).
DEFAULT_SHUTDOWN_GRACE_S = 0.0
#: How long reporting the unfinished jobs may take once the grace period is over (seconds).
FAILURE_REPORT_TIMEOUT_S = 5.0


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


def grace_is_over(job_progress, grace: float) -> None:
    """On the deadline timer's thread: report the unfinished jobs as failed, then exit now."""
    from runpod.serverless.modules.rp_logger import RunPodLogger

    log = RunPodLogger()
    try:
        job_ids = jobs_in_progress(job_progress)
        log.error(f"Shutdown grace period of {grace:g} s ({SHUTDOWN_GRACE_ENV}) is over with "
                  f"{len(job_ids)} job(s) unfinished{': ' + ', '.join(job_ids) if job_ids else ''}; "
                  "reporting them as failed and exiting.")
        if job_ids:
            message = (f"the worker was stopped (SIGTERM) and this job did not finish within its "
                       f"shutdown grace period of {grace:g} s ({SHUTDOWN_GRACE_ENV}); submit it again")
            undelivered = post_failures(dict.fromkeys(job_ids, message), timeout=FAILURE_REPORT_TIMEOUT_S)
            if undelivered:
                log.error(f"Could not report {len(undelivered)} job(s) as failed: "
                          + ", ".join(f"{job} ({why})" for job, why in undelivered.items()))
        stop_child_processes()
    except BaseException as exc:  # noqa: BLE001 - exit whatever happens
        log.error(f"Error while reporting unfinished jobs at shutdown: {type(exc).__name__}: {exc}")
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(0)


def jobs_in_progress(job_progress) -> list[str]:
    """Ids of the jobs the SDK holds (queued or running, not yet reported), sorted."""
    for _ in range(5):
        try:
            return sorted(str(job) for job in list(job_progress))
        except RuntimeError:  # the set changed size while it was copied: try again
            continue
    return []


def stop_child_processes() -> None:
    """Stop the SDK's heartbeat process (a multiprocessing child): a hard exit would orphan it,
    and it would go on telling RunPod that this worker is alive."""
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=2)
