"""A native crash in the worker under RunPod's real job loop: named, reported, survived.

The worker runs as ``python -m gpu_worker`` does in production, against the fake RunPod queue
(tests/fake_runpod.py), with one fault injected (tests/crash_injection/crashing_worker.py): a PNG
marked ``crash-with=N`` kills the worker process with SIGSEGV in its decode stage once N jobs are
in flight. The supervisor (gpu_worker.supervisor) must log the job and the stage, report every
job the dead worker held as failed, leave none of its processes behind, start a fresh worker that
serves the next jobs, and give up once it has restarted SUPERVISOR_RESTARTS times.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import PngImagePlugin

from fake_runpod import FakeRunPodQueue
from photos import sample
from worker_process import start_polling_worker

from gpu_worker.crash_journal import CrashJournal, read_journal
from gpu_worker.supervisor import describe_crash
from worker_process import free_port, worker_env

pytestmark = pytest.mark.timeout(240)

SCRIPT = Path(__file__).parent / "crash_injection" / "crashing_worker.py"
READY_TIMEOUT = 90.0
ENV = {"GPU_WORKER_DEVICE": "cpu", "CACHE_MAX_BYTES": "0", "MAX_CONCURRENCY": "2", "SUPERVISOR_RESTARTS": "1"}


def _png_job(crash_with: int | None = None, size=(64, 48), blurs: int = 0) -> dict:
    """A PNG resize job; ``crash_with``: the marker that makes the injected decoder crash."""
    info = PngImagePlugin.PngInfo()
    if crash_with is not None:
        info.add_text("crash-with", str(crash_with))
    out = io.BytesIO()
    sample("RGB", size).save(out, "PNG", pnginfo=info)
    ops = [{"type": "resize", "params": {"width": 32}}] + [{"type": "filter", "params": {"name": "blur"}}] * blurs
    return {"image": {"base64": base64.b64encode(out.getvalue()).decode()}, "operations": ops,
            "output": {"format": "PNG"}}


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_a_crashed_worker_is_named_reported_and_replaced(tmp_path, workers):
    with FakeRunPodQueue() as queue:
        proc = start_polling_worker(queue, tmp_path / "worker.log", READY_TIMEOUT, script=SCRIPT, env=ENV)
        workers.append(proc)
        first_worker = _children(proc.pid)
        bystander = queue.add_job(_png_job(size=(400, 300), blurs=4))
        queue.wait_for_handed_out([bystander], timeout=30)
        culprit = queue.add_job(_png_job(crash_with=2))
        records = queue.wait_for_results([bystander, culprit], timeout=60)

        assert records[culprit].failed and records[bystander].failed
        assert "crashed (SIGSEGV) while this job was in its decode stage" in records[culprit].error
        assert "1 other job(s) were in flight" in records[culprit].error
        assert "the worker process crashed (SIGSEGV)" in records[bystander].error
        queue.wait_until(lambda: "worker process died from SIGSEGV holding" in proc.log_text(), 30, "the crash's log")
        crash_line = next(line for line in proc.log_text().splitlines() if "died from SIGSEGV" in line)
        assert f"{culprit} in decode" in crash_line and f"{bystander} in " in crash_line
        assert "Fatal Python error: Segmentation fault" in proc.log_text()  # faulthandler's stacks

        # A fresh worker serves the next job; nothing of the dead one is left running.
        after = queue.add_job(_png_job())
        assert queue.wait_for_results([after], timeout=READY_TIMEOUT)[after].output["success"] is True
        survivors = _children(proc.pid)
        assert len(survivors) == 1 and not set(survivors) & set(first_worker), (first_worker, survivors)
        assert proc.alive()

        # The second crash within the window (SUPERVISOR_RESTARTS=1: one restart) ends the supervisor.
        last = queue.add_job(_png_job(crash_with=1))
        assert "while this job was in its decode stage" in queue.wait_for_results([last], timeout=60)[last].error
        queue.wait_until(lambda: not proc.alive(), 30, "the supervisor's exit")
        assert proc.returncode == 1
        assert "exiting for the platform to replace it" in proc.log_tail(50)


def test_sigterm_reaches_the_supervised_worker_which_drains(tmp_path, workers):
    with FakeRunPodQueue() as queue:
        proc = start_polling_worker(queue, tmp_path / "worker.log", READY_TIMEOUT, script=SCRIPT, env=ENV)
        workers.append(proc)
        job = queue.add_job(_png_job(size=(400, 300), blurs=4))
        queue.wait_for_handed_out([job], timeout=30)
        os.kill(proc.pid, signal.SIGTERM)  # the supervisor alone, as the platform signals PID 1
        assert queue.wait_for_results([job], timeout=60)[job].output["success"] is True
        queue.wait_until(lambda: not proc.alive(), 60, "the supervisor's exit")
        assert proc.returncode == 0


# A worker that records two jobs in its journal and dies (SIGKILL): no torch, no SDK.
DYING_WORKER = """
import os, signal
from gpu_worker.crash_journal import CrashJournal, JOURNAL_ENV
journal = CrashJournal(os.environ[JOURNAL_ENV])
with journal.job("culprit"), journal.stage("culprit", "decode"), journal.job("bystander"):
    os.kill(os.getpid(), signal.SIGKILL)
"""
# The supervisor as gpu_worker.__main__ runs it (SUPERVISOR_RESTARTS=0), its log to stdout.
SUPERVISOR = ("import sys; from gpu_worker.supervisor import main; rc = main(sys.argv[1:], 0, print); "
              "print('runpod imported:', 'runpod' in sys.modules); sys.exit(rc)")


def _supervise_dying_worker(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SUPERVISOR, sys.executable, "-c", DYING_WORKER],
                          env=worker_env(env), capture_output=True, text=True, timeout=60)


def test_the_supervisor_posts_the_failures_as_the_sdk_would(tmp_path):
    """The jobs a dead worker held reach the queue as the SDK's job-done post: ``{"error": ...}``
    to the job-done URL with the API key, ``isStream=false``; reporting them imports no SDK."""
    with FakeRunPodQueue() as queue:
        culprit, bystander = queue.add_job({}, job_id="culprit"), queue.add_job({}, job_id="bystander")
        done = _supervise_dying_worker(queue.env())
        records = queue.wait_for_results([culprit, bystander], timeout=10)
        assert queue.unexpected == []
    assert done.returncode == 1, done.stdout + done.stderr
    assert "worker process died from SIGKILL (out of memory?) holding culprit in decode, bystander in " \
        "its set-up" in done.stdout
    assert "could not report" not in done.stdout and "runpod imported: False" in done.stdout
    for job in (culprit, bystander):
        record = records[job]
        assert set(record.result) == {"error"} and record.result_query["isStream"] == "false"
        assert record.result_headers["authorization"] == queue.api_key
        assert record.result_headers["x-request-id"] == job
    assert "crashed (SIGKILL (out of memory?)) while this job was in its decode stage" in records[culprit].error
    assert "while it was being set up" in records[bystander].error


def test_jobs_the_supervisor_cannot_report_are_named_in_one_line():
    env = {"RUNPOD_WEBHOOK_POST_OUTPUT": f"http://127.0.0.1:{free_port()}/job-done/$RUNPOD_POD_ID/$ID?gpu=fake",
           "RUNPOD_POD_ID": "pod-1", "RUNPOD_AI_API_KEY": "key"}  # nothing listens on that port
    done = _supervise_dying_worker(env)
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if "could not report" in line)
    assert line.startswith("could not report 2 job(s) as failed to RunPod: culprit (")
    assert "bystander (" in line and "Connection refused" in line


def test_the_journal_survives_the_process_that_wrote_it(tmp_path):
    """The journal is read back after its writer is gone: what was in flight, and in which stage."""
    path = tmp_path / "journal"
    journal = CrashJournal(path)
    with journal.job("a"), journal.stage("a", "decode"), journal.job("b"):
        with journal.stage("b", "ops"), journal.stage("b", "encode"):
            assert read_journal(path) == {"a": ["decode"], "b": ["ops", "encode"]}
        assert read_journal(path) == {"a": ["decode"], "b": []}
    assert read_journal(path) == {}
    journal.close()
    assert read_journal(tmp_path / "missing") == {}


def test_describe_crash_names_signal_jobs_and_stages():
    line, errors = describe_crash(-signal.SIGKILL, {"j1": ["decode", "ops"], "j2": []})
    assert line == "worker process died from SIGKILL (out of memory?) holding j1 in decode+ops, j2 in its set-up"
    assert "while this job was in its decode+ops stage; 1 other job(s)" in errors["j1"]
    assert "while it was being set up" in errors["j2"]
    assert describe_crash(-signal.SIGSEGV, {})[0] == "worker process died from SIGSEGV holding no job"


def test_the_supervisor_process_does_not_load_torch():
    """It holds no image work: the package's public names import lazily."""
    code = "import sys, gpu_worker, gpu_worker.supervisor, gpu_worker.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
