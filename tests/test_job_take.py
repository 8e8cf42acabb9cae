"""The prompt job-take (gpu_worker.sdk_patches, fix 4) in the RunPod SDK's job loop.

Two ways in:

* in this process, ``DrainingJobScaler`` driven by scripted job-take and job functions (the SDK
  lets a local run replace them), for what must hold exactly: no job lost or run twice while jobs
  end during job-takes, never more jobs running than slots, no job-take while every slot is busy;
* the stand-in worker (tests/standin_workers/echo_async.py, its handler sleeps as asked) with
  the fix installed (``STANDIN_DRAIN_FIX=1``), its real job loop against the fake queue
  (tests/fake_runpod.py) on 127.0.0.1: slots refilled as they free, one batch job-take for the
  free slots, results posted while the next jobs run, ``TooManyRequests`` still debounced, no
  spinning on an empty queue, SIGTERM still draining.

Counts and orders are asserted where they can be; the few times asserted are the SDK's own waits
(5 s after a 429) or bounds an order of magnitude from what is measured.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from fake_runpod import FakeRunPodQueue
from worker_process import STANDIN_DIR, start_polling_worker

from gpu_worker import sdk_patches
from gpu_worker.sdk_patches import job_scaler

pytestmark = pytest.mark.timeout(120)

ECHO_ASYNC = STANDIN_DIR / "echo_async.py"


# ---------------------------------------------------------------------------- in this process
@pytest.fixture
def scaler_class(monkeypatch):
    """``DrainingJobScaler`` with no shutdown limit, the SDK's log at WARN, and an empty
    JobsProgress (a process-wide singleton) before and after."""
    from runpod.serverless.modules import rp_logger, worker_state

    if not worker_state.IS_LOCAL_TEST:
        pytest.skip("RUNPOD_WEBHOOK_GET_JOB is set: the SDK ignores custom fetchers")
    cls = sdk_patches.draining_job_scaler()
    monkeypatch.setattr(cls, "shutdown_grace_s", None)
    monkeypatch.setattr(rp_logger.RunPodLogger(), "level", "WARN")
    worker_state.JobsProgress().clear()
    yield cls
    worker_state.JobsProgress().clear()


async def no_stop_signals(session):
    await asyncio.sleep(0.05)
    return []


def make_scaler(cls, fetcher, jobs_handler, concurrency: int):
    return cls({"handler": None, "jobs_fetcher": fetcher, "jobs_handler": jobs_handler,
                "stop_signals_fetcher": no_stop_signals, "concurrency_modifier": lambda current: concurrency})


def test_jobs_ending_during_job_takes_are_neither_lost_nor_run_twice(scaler_class):
    """200 jobs of 0-4 ms, taken by job-takes of 0-4 ms that hand out 0..n jobs: jobs end while
    job-takes are in flight hundreds of times. Every job runs exactly once, at most 4 at a time,
    and no job-take asks for more than the slots free when it was sent."""
    concurrency, total = 4, 200
    pool = [{"id": f"job-{i:03d}", "input": {}} for i in range(total)]
    all_ids = [job["id"] for job in pool]
    rng = random.Random(19)
    handled: list[str] = []
    running = {"now": 0, "most": 0, "ended_during_take": 0}
    takes = {"in_flight": False, "over_asked": 0}

    async def fetcher(session, count):
        if concurrency - running["now"] < count:
            takes["over_asked"] += 1
        takes["in_flight"] = True
        await asyncio.sleep(rng.uniform(0, 0.004))
        takes["in_flight"] = False
        batch = [pool.pop(0) for _ in range(min(rng.randint(0, count), len(pool)))]
        return batch or None

    async def jobs_handler(session, config, job):
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(rng.uniform(0, 0.004))
        handled.append(job["id"])
        running["now"] -= 1
        running["ended_during_take"] += takes["in_flight"]
        if len(handled) == total:
            scaler.kill_worker()

    scaler = make_scaler(scaler_class, fetcher, jobs_handler, concurrency)
    asyncio.run(asyncio.wait_for(scaler.run(), timeout=60))

    assert sorted(handled) == all_ids  # each job once
    assert running["most"] <= concurrency
    assert takes["over_asked"] == 0
    assert running["ended_during_take"] > 20, running  # the case this test is about did happen
    assert scaler.job_progress.get_job_count() == 0


def test_no_job_take_while_every_slot_is_busy_and_one_as_soon_as_a_slot_frees(scaler_class, monkeypatch):
    """Two slots, two jobs that hold them until released: no job-take while they run; releasing
    one brings exactly one job-take, for one job, woken by the freed slot (not by the periodic
    recheck, nor after a sleep as the SDK's loop does)."""
    events_seen: list[tuple] = []  # in order: ("ask", count), ("freed",), ("wait", woken?) per slot wait
    events: dict[str, asyncio.Event] = {}
    handed = iter([[{"id": "job-a", "input": {}}, {"id": "job-b", "input": {}}]])
    real_wait_for = job_scaler._wait_for

    async def spied_wait_for(event, timeout=None):
        await real_wait_for(event, timeout)
        if event is scaler._slot_freed:  # get_jobs waiting for a slot (run_jobs waits on another)
            events_seen.append(("wait", event.is_set()))  # set: woken; clear: the recheck timed out

    monkeypatch.setattr(job_scaler, "_wait_for", spied_wait_for)

    async def fetcher(session, count):
        events_seen.append(("ask", count))
        if ("freed",) in events_seen:
            asked_after_free.set()
        batch = next(handed, None)
        if batch is None:
            await asyncio.sleep(0.2)  # a held job-take on an empty queue
        return batch

    async def jobs_handler(session, config, job):
        await events[job["id"]].wait()

    async def script():
        nonlocal asked_after_free
        asked_after_free = asyncio.Event()
        events.update({"job-a": asyncio.Event(), "job-b": asyncio.Event()})
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(1.5)  # both slots busy all along: the 1 s recheck comes and finds none free
        events_seen.append(("freed",))
        events["job-a"].set()
        await asyncio.wait_for(asked_after_free.wait(), timeout=5)  # a hang guard
        scaler.kill_worker()
        events["job-b"].set()
        await asyncio.wait_for(task, timeout=5)

    asked_after_free = None
    scaler = make_scaler(scaler_class, fetcher, jobs_handler, 2)
    asyncio.run(script())
    freed = events_seen.index(("freed",))
    busy, after = events_seen[:freed], events_seen[freed + 1:]
    assert [e for e in busy if e[0] == "ask"] == [("ask", 2)]  # the take that filled both slots, then none
    assert ("wait", False) in busy  # a recheck did come while both were busy, and asked nothing
    asks_after = [i for i, e in enumerate(after) if e[0] == "ask"]
    assert [after[i] for i in asks_after] == [("ask", 1)]
    assert after[asks_after[0] - 1] == ("wait", True)  # right after the wait the freed slot woke


def test_an_empty_queue_answered_at_once_is_asked_at_most_twice_a_second(scaler_class):
    asks = []

    async def fetcher(session, count):
        asks.append(time.monotonic())
        return None  # 204 at once: no long-poll holding the request

    async def jobs_handler(session, config, job):
        raise AssertionError("no job was handed out")

    async def script():
        task = asyncio.create_task(scaler.run())
        await asyncio.sleep(2.0)
        scaler.kill_worker()
        await asyncio.wait_for(task, timeout=5)

    scaler = make_scaler(scaler_class, fetcher, jobs_handler, 4)
    asyncio.run(script())
    assert 2 <= len(asks) <= 2.0 / job_scaler.EMPTY_TAKE_INTERVAL_S + 2, len(asks)


def test_on_another_sdk_version_no_fix_is_installed(monkeypatch, capsys):
    import runpod.version
    from runpod.serverless.modules import rp_logger, rp_scale

    monkeypatch.setattr(rp_scale, "JobScaler", rp_scale.JobScaler)  # restored after
    from runpod.serverless.modules import rp_job

    monkeypatch.setattr(rp_logger.RunPodLogger, "log", rp_logger.RunPodLogger.log)
    monkeypatch.setattr(rp_job, "run_job", rp_job.run_job)
    sdk_scaler, sdk_log, sdk_run_job = rp_scale.JobScaler, rp_logger.RunPodLogger.log, rp_job.run_job
    monkeypatch.setattr(rp_logger.RunPodLogger(), "level", "INFO")
    monkeypatch.setattr(runpod.version, "__version__", "1.13.0")
    assert sdk_patches.install(5.0) is False
    assert rp_scale.JobScaler is sdk_scaler and rp_logger.RunPodLogger.log is sdk_log and rp_job.run_job is sdk_run_job
    lines = [line for line in capsys.readouterr().out.splitlines() if "sdk_patches" in line]
    assert lines == ["WARN   | gpu_worker.sdk_patches was written for runpod 1.12.0, this is 1.13.0: none of its "
                     "fixes is installed (the SDK runs as it is); check whether each is still needed and still "
                     "fits (gpu_worker/sdk_patches/__init__.py)"]
    cls = sdk_patches.draining_job_scaler()
    monkeypatch.setattr(cls, "shutdown_grace_s", cls.shutdown_grace_s)
    monkeypatch.setattr(runpod.version, "__version__", sdk_patches.SDK_VERSION)
    assert sdk_patches.install(5.0) is True
    assert rp_scale.JobScaler is cls and cls.shutdown_grace_s == 5.0
    assert getattr(rp_logger.RunPodLogger.log, "_redacts_base64", False)
    assert rp_job.run_job is not sdk_run_job and rp_job.run_job.__module__ == "gpu_worker.sdk_patches.lean_run_job"


# ---------------------------------------------------------------------------- the stand-in's real loop
def launch(queue: FakeRunPodQueue, log_path, concurrency: int):
    """The async stand-in with the real worker's SDK fixes, against ``queue``."""
    env = {"MAX_CONCURRENCY": str(concurrency), "STANDIN_DRAIN_FIX": "1"}
    return start_polling_worker(queue, log_path, 60.0, script=ECHO_ASYNC, env=env)


def test_one_slot_is_refilled_as_soon_as_its_job_ends(workers, tmp_path):
    """MAX_CONCURRENCY=1, ten 0.2 s jobs: each next job is handed out right after the one
    before ends (runpod 1.12.0 alone: about a second apart), one job-take per job."""
    with FakeRunPodQueue() as queue:
        workers.append(launch(queue, tmp_path / "one.log", 1))
        queue.wait_for_idle_worker(timeout=10)
        ids = queue.add_jobs([{"sleep": 0.2, "i": i} for i in range(10)])
        records = queue.wait_for_results(ids, timeout=30)
        takes = [p for p in queue.polls if p.handed_out]

    assert all(len(r.results) == 1 and r.output["echo"]["i"] == i for i, r in enumerate(records.values()))
    assert [len(p.handed_out) for p in takes] == [1] * 10
    gaps = [b.output["started"] - a.output["finished"] for a, b in zip(records.values(), list(records.values())[1:])]
    print(f"gap from a job's end to the next job's start: {min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 0.3  # runpod 1.12.0: > 0.8 s each (test_runpod_harness)
    assert queue.unexpected == []


@pytest.mark.parametrize("keep_alive", [False, True], ids=["connection-per-request", "keep-alive"])
def test_free_slots_are_taken_in_one_batch_job_take(workers, tmp_path, keep_alive):
    """Also over persistent connections, as RunPod's API keeps them (and the benchmark's fake)."""
    with FakeRunPodQueue(keep_alive=keep_alive) as queue:
        workers.append(launch(queue, tmp_path / "batch.log", 4))
        queue.wait_for_idle_worker(timeout=10)
        ids = queue.add_jobs([{"sleep": 0.5, "i": i} for i in range(4)])
        queue.wait_for_results(ids, timeout=20)
        take = next(p for p in queue.polls if p.handed_out)
    assert take.kind == "job-take-batch" and take.batch_size == 4 and len(take.handed_out) == 4


def test_results_are_posted_while_the_next_jobs_run(workers, tmp_path):
    """Each job-done post takes 1 s (a slow link). With one slot, the next job is handed out and
    run while the result before it is still being posted (the order of take, start and post
    shows it; posts holding the slot would make four 0.1 s jobs take 4.4 s)."""
    with FakeRunPodQueue(post_delay_s=1.0) as queue:
        workers.append(launch(queue, tmp_path / "post.log", 1))
        queue.wait_for_idle_worker(timeout=10)
        ids = queue.add_jobs([{"sleep": 0.1, "i": i} for i in range(4)])
        records = list(queue.wait_for_results(ids, timeout=30).values())
    for before, after in zip(records, records[1:]):
        assert after.handed_out_at < before.result_at  # taken while the post before was in flight
        assert after.output["started"] < before.result_at
    span = records[-1].result_at - records[0].handed_out_at
    print(f"4 jobs of 0.1 s, posts of 1 s, one slot: {span:.2f} s")  # posts holding the slot: 4 x 1.1 s


def test_too_many_requests_still_debounces(workers, tmp_path):
    """A job-take answered 429: the next one comes the SDK's 5 s later, and jobs flow again."""
    with FakeRunPodQueue() as queue:
        workers.append(launch(queue, tmp_path / "429.log", 2))
        queue.wait_for_idle_worker(timeout=10)
        queue.throttle(1)
        queue.wait_until(lambda: any(p.throttled for p in queue.polls), 10, "a throttled job-take")
        throttled = next(p for p in queue.polls if p.throttled)
        ids = queue.add_jobs([{"i": i} for i in range(3)])
        records = queue.wait_for_results(ids, timeout=20)
        after = [p for p in queue.polls if p.at > throttled.at]
    gap = after[0].at - throttled.answered_at
    print(f"next job-take {gap:.2f} s after the 429")
    assert gap >= job_scaler.TOO_MANY_REQUESTS_WAIT_S - 0.1
    assert all(r.done and not r.failed for r in records.values())


def test_no_spinning_on_an_empty_queue_or_while_full(workers, tmp_path):
    """A queue that answers 204 at once: at most about two job-takes a second. Then two 2 s
    jobs fill both slots: no job-take until one ends."""
    with FakeRunPodQueue(poll_hold_s=0.0) as queue:
        workers.append(launch(queue, tmp_path / "spin.log", 2))
        time.sleep(0.5)
        start, first = time.time(), len(queue.polls)
        time.sleep(3.0)
        empty_rate = (len(queue.polls) - first) / (time.time() - start)
        ids = queue.add_jobs([{"sleep": 2.0, "i": i} for i in range(2)])
        records = queue.wait_for_results(ids, timeout=20)
        taken_at = max(r.handed_out_at for r in records.values())
        first_end = min(r.output["finished"] for r in records.values())
        while_full = [p for p in queue.polls if taken_at < p.at < first_end]
    print(f"empty queue: {empty_rate:.1f} job-takes/s; while full: {len(while_full)}")
    assert empty_rate <= 1 / job_scaler.EMPTY_TAKE_INTERVAL_S + 0.5
    assert while_full == []


def test_sigterm_still_drains(workers, tmp_path):
    """SIGTERM with both slots busy and a job-take held open on... nothing: the running jobs
    finish and are posted, the job the open poll returns runs too, nothing else is taken, the
    worker exits 0 with its heartbeat process."""
    with FakeRunPodQueue(poll_hold_s=4.0) as queue:
        proc = launch(queue, tmp_path / "sigterm.log", 3)
        workers.append(proc)
        running = queue.add_jobs([{"sleep": 1.5, "i": i} for i in range(2)])
        proc.wait_for_log(r"\| Started\.", timeout=10, count=2)
        queue.wait_until(lambda: queue.held_polls > 0, 10, "a held job-take for the free slot")
        proc.send_sigterm()
        time.sleep(0.3)
        on_the_open_poll = queue.add_job({"i": "on the open poll"})
        time.sleep(0.3)
        late = queue.add_job({"i": "late"})
        rc = proc.wait_exit(timeout=20)

        assert rc == 0 and proc.group_members() == []
        for job_id in running + [on_the_open_poll]:
            record = queue.records[job_id]
            assert record.done and not record.failed and len(record.results) == 1
            assert record.result_at <= proc.exited_at
        assert queue.records[late].handed_out_at is None
        assert queue.unexpected == []


# ---------------------------------------------------------------------------- MAX_CONCURRENCY
def test_max_concurrency_default_is_per_device():
    import dataclasses

    from gpu_worker.__main__ import _with_max_concurrency
    from gpu_worker.config import CUDA_MAX_CONCURRENCY, Settings, max_concurrency_for

    default = Settings()
    assert default.max_concurrency == 0
    assert max_concurrency_for(default, "cpu", 2) == 2 and max_concurrency_for(default, "cpu", 16) == 16
    assert max_concurrency_for(default, "cuda", 16) == CUDA_MAX_CONCURRENCY
    chosen = dataclasses.replace(default, max_concurrency=5)
    assert max_concurrency_for(chosen, "cpu", 2) == max_concurrency_for(chosen, "cuda", 2) == 5
    on_cpu = dataclasses.replace(default, gpu_worker_device="cpu", cpu_threads=3)
    assert _with_max_concurrency(on_cpu).max_concurrency == 3  # the images worked on at once
    assert _with_max_concurrency(chosen).max_concurrency == 5
    no_device = dataclasses.replace(default, gpu_worker_device="cuda:99")
    assert _with_max_concurrency(no_device).max_concurrency == 0  # left to the runtime to report
