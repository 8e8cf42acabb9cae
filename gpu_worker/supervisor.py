"""Run the worker in a child process and outlive its crashes.

In RunPod's job loop, ``python -m gpu_worker`` runs as two processes: this supervisor, which does
no image work and holds no jobs, and the worker it starts (the same command line, with
``$GPU_WORKER_CRASH_JOURNAL`` set, so the worker records its jobs' stages in a
:mod:`~gpu_worker.crash_journal`). The worker is the process that can crash: it feeds strangers'
bytes to native decoders and drives the GPU. When it dies from a signal (a native crash such as
SIGSEGV or SIGABRT, or SIGKILL from the out-of-memory killer), the supervisor:

1. stops what the worker left behind (the SDK's heartbeat process, which would go on telling
   RunPod that the dead worker holds its jobs);
2. logs one ERROR line naming the signal, each job the worker held and the stage it was in;
3. reports each of those jobs FAILED to RunPod's job-done URL with a message saying so, so
   clients learn at once instead of waiting for the job's timeout (:mod:`gpu_worker.job_done`,
   the SDK's job-done call made without the SDK; a job it could not report is named in one log
   line, with why);
4. starts a fresh worker, unless it has already done so ``SUPERVISOR_RESTARTS`` times within
   :data:`RESTART_WINDOW_S`: then it exits with status 1 and the platform replaces the worker
   (a worker that keeps crashing has a broken device or driver, not just a bad input).

A worker that exits by itself (drained after SIGTERM, a failed fitness check, bad settings) ends
the supervisor with its status. SIGTERM and SIGINT are passed on to the worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import tempfile
import time
from collections import deque
from typing import Callable, Optional, Sequence

from gpu_worker import job_done
from gpu_worker.crash_journal import JOURNAL_ENV, read_journal

#: Crashes counted against SUPERVISOR_RESTARTS are those within this many seconds.
RESTART_WINDOW_S = 600.0
#: Linux prctl option: orphaned descendants are re-parented to this process, not to init.
_PR_SET_CHILD_SUBREAPER = 36

Log = Callable[[str], None]
#: Posts each job's error (job id -> message); returns job id -> why it was not delivered.
Report = Callable[[dict[str, str]], dict[str, str]]


def supervised() -> bool:
    """True in the worker process a supervisor started."""
    return bool(os.environ.get(JOURNAL_ENV))


def describe_crash(returncode: int, jobs: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """The log line for a worker that ended with ``returncode`` (negative: killed by that signal)
    holding ``jobs`` (job id -> stages, from the journal), and the error reported for each job."""
    name = _signal_name(-returncode)
    cause = " (out of memory?)" if returncode == -signal.SIGKILL else ""
    held = ", ".join(f"{job} in {'+'.join(stages) or 'its set-up'}" for job, stages in jobs.items()) or "no job"
    line = f"worker process died from {name}{cause} holding {held}"
    errors = {}
    for job, stages in jobs.items():
        where = f"in its {'+'.join(stages)} stage" if stages else "while it was being set up"
        others = f"; {len(jobs) - 1} other job(s) were in flight" if len(jobs) > 1 else ""
        errors[job] = (f"the worker process crashed ({name}{cause}) while this job was {where}{others}. "
                       f"A fresh worker was started; if this input fails again, it is the cause.")
    return line, errors


def supervise(command: Sequence[str], *, restarts: int, log: Log, report: Optional[Report]) -> int:
    """Run ``command`` (the worker) until it exits by itself; returns its exit status.

    Args:
        command: the worker's command line.
        restarts: fresh workers started after crashes within RESTART_WINDOW_S; one more crash
            in that window ends the supervisor (status 1).
        log: writes one ERROR line to the worker's log.
        report: posts each job's error to RunPod (:func:`gpu_worker.job_done.post_failures`);
            None when there is nowhere to post it (no job-done URL).
    """
    _become_subreaper()
    journal = tempfile.NamedTemporaryFile(prefix="gpu-worker-journal-", delete=False)
    journal.close()
    crashes: deque[float] = deque()
    child: Optional[subprocess.Popen] = None
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    try:
        while True:
            child = subprocess.Popen(list(command), env={**os.environ, JOURNAL_ENV: journal.name})
            returncode = child.wait()
            _stop_orphans()
            if returncode >= 0 or stopping:
                return returncode if returncode >= 0 else 128 - returncode
            line, errors = describe_crash(returncode, read_journal(journal.name))
            log(line)
            if errors:
                undelivered = report(errors) if report is not None else dict.fromkeys(errors, "no job-done URL")
                if undelivered:
                    log(f"could not report {len(undelivered)} job(s) as failed to RunPod: "
                        + ", ".join(f"{job} ({why})" for job, why in undelivered.items()))
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > RESTART_WINDOW_S:
                crashes.popleft()
            if len(crashes) > restarts:
                log(f"worker crashed {len(crashes)} times within {RESTART_WINDOW_S:g} s "
                    f"(SUPERVISOR_RESTARTS={restarts}): exiting for the platform to replace it")
                return 1
            log(f"starting a fresh worker (restart {len(crashes)} of {restarts} allowed "
                f"within {RESTART_WINDOW_S:g} s)")
    finally:
        os.unlink(journal.name)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _become_subreaper() -> None:
    """Have the worker's orphans (the SDK's heartbeat process, once the worker has died) become
    this process's children, so :func:`_stop_orphans` can find and stop them. Linux only."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to init as usual
        pass


def _stop_orphans() -> None:
    """SIGKILL and reap every remaining child of this process (the dead worker's descendants)."""
    me = os.getpid()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
                os.waitpid(int(entry), 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def main(argv: Sequence[str], restarts: int, log: Log) -> int:
    """Supervise ``argv`` (the worker's command line); crashed jobs are reported to RunPod's
    job-done URL (``RUNPOD_WEBHOOK_POST_OUTPUT``) when it is set."""
    report = job_done.post_failures if job_done.configured() else None
    return supervise(argv, restarts=restarts, log=log, report=report)
