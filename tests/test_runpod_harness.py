"""Proves the RunPod test harness (fake queue + worker subprocess helpers) with stand-in workers.

The stand-ins in ``tests/standin_workers`` are tiny runpod workers; the real worker
(``python -m gpu_worker``) is driven the same way. Facts measured here hold for runpod 1.12.0;
a test that pins an SDK behaviour says so, so that an SDK upgrade that changes it is noticed.
Everything runs on 127.0.0.1; every process is stopped (process group killed) in teardown.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from fake_runpod import FakeRunPodQueue, JobRecord
from worker_process import (
    STANDIN_DIR, WorkerProcess, api_run, api_runsync, api_status, parse_test_input_result,
    run_test_input, start_api_worker, start_polling_worker,
)

pytestmark = pytest.mark.timeout(120)

ECHO_ASYNC = STANDIN_DIR / "echo_async.py"
ECHO_SYNC = STANDIN_DIR / "echo_sync.py"
READY_TIMEOUT = 30.0


# ---------------------------------------------------------------------------- helpers
def launch(queue: FakeRunPodQueue, log_path, script=ECHO_ASYNC, **env: str) -> WorkerProcess:
    """Start a stand-in against ``queue`` and wait until its job loop polls."""
    return start_polling_worker(queue, log_path, READY_TIMEOUT, script=script, env=env)


def makespan(records: dict[str, JobRecord]) -> float:
    """From the first job handed out to the last result received (seconds)."""
    return (max(r.result_at for r in records.values())
            - min(r.handed_out_at for r in records.values()))


def max_overlap(records: dict[str, JobRecord]) -> int:
    """Most jobs running at once, from the ``started``/``finished`` the handler reported."""
    events = []
    for record in records.values():
        events += [(record.output["started"], 1), (record.output["finished"], -1)]
    running = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # a finish before a start at ties
        running += step
        best = max(best, running)
    return best


def longest_chain(records: dict[str, JobRecord]) -> int:
    """Most jobs that ran one after another: the longest sequence in which each job started
    (handler's ``started``) after the one before it finished. 8 jobs on one slot: 8."""
    jobs = sorted((r.output["started"], r.output["finished"]) for r in records.values())
    chain: list[int] = []  # chain[i]: the longest sequence ending with jobs[i]
    for started, _ in jobs:
        chain.append(1 + max((n for (_, finished), n in zip(jobs, chain) if finished <= started), default=0))
    return max(chain)




@pytest.fixture
def queue():
    with FakeRunPodQueue() as fake:
        yield fake


@pytest.fixture(scope="module")
def async4(tmp_path_factory):
    """One async stand-in with MAX_CONCURRENCY=4 on its own queue, shared by several tests."""
    with FakeRunPodQueue() as fake:
        proc = launch(fake, tmp_path_factory.mktemp("async4") / "worker.log", MAX_CONCURRENCY="4")
        try:
            yield fake, proc
        finally:
            proc.stop()
            print(f"--- async4 log tail:\n{proc.log_tail(40)}")


# ---------------------------------------------------------------------------- the fake alone
def test_fake_queue_speaks_the_job_take_protocol():
    """The fake's wire format, checked without a worker: what the SDK's get_job expects."""
    with FakeRunPodQueue(poll_hold_s=0.05) as fake:
        env = fake.env()
        take = env["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", fake.pod_id)
        done = (env["RUNPOD_WEBHOOK_POST_OUTPUT"]
                .replace("$RUNPOD_POD_ID", fake.pod_id).replace("$ID", "{}"))
        auth = {"Authorization": fake.api_key}

        with requests.get(take + "&job_in_progress=0", headers=auth, timeout=5) as r:
            assert r.status_code == 204 and r.content == b""
        one = fake.add_job({"n": 1}, job_id="given-id")
        with requests.get(take + "&job_in_progress=0", headers=auth, timeout=5) as r:
            assert r.status_code == 200 and r.json() == {"id": one, "input": {"n": 1}}
        ids = fake.add_jobs([{"n": 2}, {"n": 3}, {"n": 4}])
        batch = take.replace("/job-take/", "/job-take-batch/") + "&batch_size=2&job_in_progress=1"
        with requests.get(batch, headers=auth, timeout=5) as r:
            assert r.status_code == 200 and [j["id"] for j in r.json()] == ids[:2]
        with requests.get(take + "&job_in_progress=0", headers={"Authorization": "wrong"},
                          timeout=5) as r:
            assert r.status_code == 401
        assert fake.pending == ids[2:]
        assert [p.job_in_progress for p in fake.polls] == ["0", "0", "1"]

        form = {"Content-Type": "application/x-www-form-urlencoded"}  # what the SDK sends
        for body in ({"status": "IN_PROGRESS", "output": {"pct": 50}}, {"output": {"ok": 1}}):
            with requests.post(done.format(one) + "&isStream=false", data=json.dumps(body),
                               headers=form, timeout=5) as r:
                assert r.status_code == 200
        with requests.post(done.format("nope") + "&isStream=false", data="{}", headers=form,
                           timeout=5) as r:
            assert r.status_code == 404
        record = fake.wait_for_results([one], timeout=1)[one]
        assert [p for _, p in record.progress] == [{"pct": 50}]
        assert record.result == {"output": {"ok": 1}} and record.output == {"ok": 1}
        assert not record.failed and record.result_query["isStream"] == "false"
        assert len(fake.unexpected) == 2  # the bad auth and the unknown job
        with pytest.raises(TimeoutError, match="never handed out"):
            fake.wait_for_results(ids, timeout=0.2)


# ---------------------------------------------------------------------------- the real loop
def test_many_jobs_all_completed(async4):
    fake, proc = async4
    inputs = [{"i": i, "sleep": 0.02 * (i % 3)} for i in range(16)]
    ids = fake.add_jobs(inputs)
    records = fake.wait_for_results(ids, timeout=30)

    for job_input, (job_id, record) in zip(inputs, records.items()):
        assert not record.failed, record.result
        assert record.output["echo"] == job_input
        assert len(record.results) == 1, f"{job_id} reported {len(record.results)} times"
        assert record.result_query["isStream"] == "false"
        assert record.handed_out_at <= record.result_at
    assert fake.unexpected == []
    assert all(p.authorization == fake.api_key and p.worker_id == fake.pod_id for p in fake.polls)
    # With spare capacity N > 1 the SDK takes jobs through job-take-batch?batch_size=N.
    assert any(p.kind == "job-take-batch" and p.batch_size == 4 for p in fake.polls)
    assert max(len(p.handed_out) for p in fake.polls) <= 4
    # The heartbeat child pings the fake (first ping at start-up), with the API key.
    assert fake.pings and all(auth == fake.api_key for _, _, auth in fake.pings)
    assert fake.pings[0][1]["runpod_version"]
    assert proc.alive()


def test_failing_jobs_reported_as_failed(async4):
    fake, proc = async4
    raised = fake.add_job({"fail": True})
    returned = fake.add_job({"fail": "return"})
    with_output = fake.add_job({"fail": "return_with_output"})
    after = fake.add_job({"after": "failures"})
    records = fake.wait_for_results([raised, returned, with_output, after], timeout=20)

    # A raised exception: the SDK posts {"error": <JSON *string*>} and no output.
    result = records[raised].result
    assert records[raised].failed and set(result) == {"error"}
    info = json.loads(result["error"])
    assert info["error_type"] == "<class 'RuntimeError'>"
    assert info["error_message"] == f"stand-in failure requested by job {raised}"
    assert "Traceback" in info["error_traceback"]
    assert info["worker_id"] == fake.pod_id and info["hostname"] == f"{fake.pod_id}-host"
    assert info["runpod_version"] == "1.12.0"
    # A returned {"error": ...}: posted as is; the other keys go to "output" beside it.
    assert records[returned].result == {"error": "stand-in error returned as data"}
    assert records[with_output].result == {"output": {"details": {"field": "sleep"}},
                                           "error": "stand-in error with details"}
    assert records[with_output].failed
    # The worker goes on serving.
    assert records[after].output["echo"] == {"after": "failures"} and proc.alive()


def test_progress_updates_received(async4):
    fake, _ = async4
    job_id = fake.add_job({"progress": 3, "sleep": 0.1})
    record = fake.wait_for_results([job_id], timeout=20)[job_id]
    assert not record.failed
    # Fire-and-forget (a thread each): an update may arrive after the result, so wait for it.
    fake.wait_until(lambda: len(record.progress) == 3, timeout=10, what="3 progress updates")
    assert sorted((p for _, p in record.progress), key=lambda p: p["step"]) == [
        {"step": s, "of": 3} for s in (1, 2, 3)]
    assert len(record.results) == 1  # progress posts (status IN_PROGRESS) are not results


def test_stop_channel_cancels_one_job(async4):
    """A job id on /job-stop/ cancels that job's task; nothing is posted for it."""
    fake, proc = async4
    doomed = fake.add_job({"sleep": 10})
    proc.wait_for_log(rf"{doomed} \| Started\.", timeout=10)
    fake.stop_job(doomed)
    proc.wait_for_log(rf"{doomed} \| Job stopped\.", timeout=10)
    survivor = fake.add_job({"after": "stop"})
    assert fake.wait_for_results([survivor], timeout=10)[survivor].output["echo"] == {"after": "stop"}
    assert fake.records[doomed].result is None and proc.alive()


def test_concurrency_4_runs_the_jobs_in_fewer_rounds_than_1(async4, queue, workers, tmp_path):
    jobs = [{"sleep": 0.5, "i": i} for i in range(8)]
    fake4, _ = async4
    fake4.wait_for_idle_worker(timeout=10)
    records4 = fake4.wait_for_results(fake4.add_jobs(jobs), timeout=30)

    workers.append(launch(queue, tmp_path / "conc1.log", MAX_CONCURRENCY="1"))
    queue.wait_for_idle_worker(timeout=10)
    records1 = queue.wait_for_results(queue.add_jobs(jobs), timeout=30)

    span4, span1 = makespan(records4), makespan(records1)
    overlap4, overlap1 = max_overlap(records4), max_overlap(records1)
    print(f"8 jobs x 0.5 s: MAX_CONCURRENCY=4 {span4:.2f} s (overlap {overlap4}), "
          f"MAX_CONCURRENCY=1 {span1:.2f} s (overlap {overlap1})")
    assert overlap1 == 1 and overlap4 >= 3
    assert span1 >= 8 * 0.5
    # Four slots: the 8 jobs ran in at most 4 rounds one after another, one slot in 8.
    assert longest_chain(records4) <= 4 and longest_chain(records1) == 8
    # runpod 1.12.0: when the worker is full, get_jobs sleeps 1 s before it looks again, so a
    # freed slot idles up to 1 s: one job per slot per ~second even for 0.5 s jobs. (A lower
    # bound: it pins the SDK's sleep, which did happen.)
    gaps = sorted(r.handed_out_at for r in records1.values())
    assert min(b - a for a, b in zip(gaps, gaps[1:])) > 0.9


def test_sync_handler_runs_one_job_at_a_time(queue, workers, tmp_path):
    """A blocking handler blocks the SDK's event loop: jobs are taken 4 at once, run serially."""
    proc = launch(queue, tmp_path / "sync.log", script=ECHO_SYNC, MAX_CONCURRENCY="4")
    workers.append(proc)
    ids = queue.add_jobs([{"sleep": 0.3, "i": i} for i in range(4)])
    failing = queue.add_job({"fail": True})
    records = queue.wait_for_results(ids + [failing], timeout=30)
    failed = records.pop(failing)
    assert json.loads(failed.error)["error_type"] == "<class 'ValueError'>"
    assert max_overlap(records) == 1
    assert queue.records[ids[0]].handed_out_via == "job-take-batch"


def test_streaming_handler_posts_chunks_then_result(queue, workers, tmp_path):
    workers.append(launch(queue, tmp_path / "stream.log", script=ECHO_SYNC, ECHO_STREAM="1"))
    good = queue.add_job({"chunks": 3})
    bad = queue.add_job({"chunks": 3, "fail": True})
    records = queue.wait_for_results([good, bad], timeout=20)
    # Each chunk -> POST RUNPOD_WEBHOOK_POST_STREAM {"output": chunk} (&isStream=false), then the
    # final POST to job-done with &isStream=true and {"output": []} (no return_aggregate_stream).
    assert [body for _, body in records[good].stream] == [{"output": {"chunk": i}} for i in range(3)]
    assert records[good].result == {"output": []}
    assert records[good].result_query["isStream"] == "true"
    # A generator that raises: chunks so far are streamed, then {"error": "handler: ..."}.
    assert [body for _, body in records[bad].stream] == [{"output": {"chunk": 0}}]
    assert records[bad].error.startswith("handler: stand-in failure in the middle of a stream")


# ---------------------------------------------------------------------------- SIGTERM
def test_sigterm_finishes_in_flight_jobs_then_exits(queue, workers, tmp_path):
    proc = launch(queue, tmp_path / "sigterm.log", MAX_CONCURRENCY="4")
    workers.append(proc)
    in_flight = queue.add_jobs([{"sleep": 1.5, "i": i} for i in range(4)])
    proc.wait_for_log(r"\| Started\.", timeout=10, count=4)
    proc.send_sigterm()
    late = queue.add_jobs([{"i": "late"}, {"i": "late"}])
    rc = proc.wait_exit(timeout=20)
    delay = proc.exited_at - proc.sigterm_at
    print(f"SIGTERM with 4 jobs of 1.5 s in flight: exit {rc} after {delay:.2f} s")

    assert rc == 0
    for job_id in in_flight:  # every job in flight finished and was posted before the exit
        record = queue.records[job_id]
        assert record.done and not record.failed
        assert proc.sigterm_at < record.result_at <= proc.exited_at
    assert all(queue.records[j].handed_out_at is None for j in late)  # nothing new taken
    assert 0.5 < delay < 10
    assert proc.group_members() == []  # the heartbeat child went with it


@pytest.mark.parametrize("drain_fix", [False, True], ids=["sdk", "with_drain_fix"])
def test_sigterm_job_taken_by_a_held_poll(drain_fix, workers, tmp_path):
    """runpod 1.12.0 loses a job that a held job-take poll returns after SIGTERM.

    With spare capacity a job-take poll is outstanding; after SIGTERM ``run_jobs`` stops
    picking from its queue, ``get_jobs`` still waits for that poll, and a job it returns is
    queued and never run or reported. ``gpu_worker.sdk_patches.install_drain_fix`` runs it.
    """
    with FakeRunPodQueue(poll_hold_s=4.0) as fake:
        env = {"MAX_CONCURRENCY": "2", **({"STANDIN_DRAIN_FIX": "1"} if drain_fix else {})}
        proc = launch(fake, tmp_path / "held.log", **env)
        workers.append(proc)
        first = fake.add_job({"sleep": 2.0})
        fake.wait_for_handed_out([first], timeout=10)
        fake.wait_until(lambda: len(fake.polls) >= 2 and fake.held_polls > 0, 10, "a held poll")
        proc.send_sigterm()
        time.sleep(0.5)  # run_jobs has left its loop by now (it checks every 0.1 s)
        second = fake.add_job({"i": "arrives on the held poll"})
        rc = proc.wait_exit(timeout=20)
        print(f"drain_fix={drain_fix}: exit {rc} after {proc.exited_at - proc.sigterm_at:.2f} s")

        assert rc == 0 and proc.group_members() == []
        assert fake.records[first].done
        assert fake.records[second].handed_out_at is not None
        if drain_fix:
            assert fake.records[second].output["echo"] == {"i": "arrives on the held poll"}
        else:
            assert fake.records[second].result is None  # taken, never reported: lost


def test_sigterm_exit_waits_for_a_held_poll(workers, tmp_path):
    """An idle worker does not exit on SIGTERM until its outstanding job-take poll returns."""
    hold = 2.0
    with FakeRunPodQueue(poll_hold_s=hold) as fake:
        proc = launch(fake, tmp_path / "idle.log", MAX_CONCURRENCY="1")
        workers.append(proc)
        fake.wait_for_held_poll(timeout=10)
        poll = fake.polls[-1]
        rc, delay = proc.terminate(timeout=20)
        remaining = poll.at + hold - proc.sigterm_at
        print(f"idle SIGTERM: exit {rc} after {delay:.2f} s; the held poll had {remaining:.2f} s left")
        assert rc == 0
        assert delay >= remaining - 0.3
        assert proc.group_members() == []


# ---------------------------------------------------------------------------- local modes
def test_serve_api_runsync_run_status(workers, tmp_path):
    proc, url = start_api_worker(script=ECHO_ASYNC, log_path=tmp_path / "api.log")
    workers.append(proc)

    reply = api_runsync(url, {"x": 1})
    assert reply["status"] == "COMPLETED" and reply["output"]["echo"] == {"x": 1}
    assert reply["id"].startswith("test-")

    queued = api_run(url, {"y": 2})
    assert queued["status"] == "IN_PROGRESS"
    status = api_status(url, queued["id"])  # /status runs the stored job
    assert status["status"] == "COMPLETED" and status["output"]["echo"] == {"y": 2}
    gone = api_status(url, queued["id"])
    assert gone == {"id": queued["id"], "status": "FAILED", "error": "Job ID not found"}

    failed = api_runsync(url, {"fail": "return"})
    assert failed["status"] == "FAILED" and failed["error"] == "stand-in error returned as data"
    raised = api_runsync(url, {"fail": True})
    assert raised["status"] == "FAILED" and "RuntimeError" in json.loads(raised["error"])["error_type"]

    rc, delay = proc.terminate(timeout=10)
    print(f"--rp_serve_api SIGTERM: exit {rc} after {delay:.2f} s")
    # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM (15) with uvicorn 0.54.
    assert rc in (0, -15)


def test_test_input_prints_output_and_exits(tmp_path):
    done = run_test_input(script=ECHO_ASYNC, job_input={"x": 1, "flag": True, "none": None},
                          timeout=60)
    assert done.returncode == 0, done.stdout
    result = parse_test_input_result(done.stdout)
    assert result["output"]["echo"] == {"x": 1, "flag": True, "none": None}
    assert "Local testing complete, exiting." in done.stdout

    failed = run_test_input(script=ECHO_SYNC, job_input={"fail": True}, timeout=60)
    assert failed.returncode == 1, failed.stdout
    assert "Captured Handler Exception" in failed.stdout
