"""benchmarks.ab: its summary from given numbers, and its child protocol with a stand-in worker.

The stand-in is a tiny ``gpu_worker`` package written into a temporary tree (no torch: the real
worker's children take seconds to start and are exercised by running ``python -m benchmarks.ab``);
it answers like the handler (``run_sync``) and can exit, fail a job or hang, by ``AB_STANDIN``.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from benchmarks.ab import Child, ChildFailed, summarize

STANDIN = '''
import base64, os, sys, time

MODE = os.environ.get("AB_STANDIN", "ok")


def run_sync(job):
    print("the stand-in prints on stdout")  # must land in stderr, not in the answers
    if MODE == "exit":
        sys.stderr.write("the stand-in exits\\n")
        sys.stderr.flush()
        os._exit(3)
    if MODE == "hang":
        time.sleep(3)
    if MODE == "fail":
        return {"success": False, "error": "the stand-in failed"}
    inp = job["input"]
    images = [inp["image"]] if "image" in inp else [item["image"] for item in inp["images"]]
    results = [{"success": True, "metadata": {},
                "processed_image": "data:image/jpeg;base64," + base64.b64encode(im["base64"][::-1].encode()).decode()}
               for im in images]
    meta = {"timings_ms": {"decode": 1.0, "total": 2.0}}
    if len(images) == 1:
        return {**results[0], "metadata": meta}
    return {"success": True, "results": results, "metadata": meta}
'''


@pytest.fixture
def standin(tmp_path):
    tree = tmp_path / "tree"
    (tree / "gpu_worker").mkdir(parents=True)
    (tree / "gpu_worker" / "__init__.py").write_text("")
    (tree / "gpu_worker" / "handler.py").write_text(textwrap.dedent(STANDIN))
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    inputs = {1: {"image": {"base64": "abc"}},
              2: {"images": [{"image": {"base64": "abc"}}, {"image": {"base64": "xyz"}}]}}
    for n, job in inputs.items():
        (jobs / f"job-{n}.json").write_text(json.dumps(job))
    started = []

    def start(warmup=1):
        child = Child("stand-in", tree, jobs, [1, 2], warmup, None, tmp_path / "stderr.txt")
        started.append(child)
        return child

    yield start, tree, tmp_path / "stderr.txt"
    for child in started:
        child.close()


def _digest(*payloads: str) -> str:
    h = hashlib.sha256()
    for p in payloads:
        data = p[::-1].encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def test_child_answers_each_command_and_library_output_stays_out_of_the_answers(standin):
    start, tree, stderr = standin
    child = start()
    ready = child.answer(timeout=30)
    assert ready["ready"] is True
    assert ready["gpu_worker"] == str((tree / "gpu_worker").resolve())
    assert ready["entry"] == "gpu_worker.handler.run_sync"
    assert "torch_threads" not in ready  # the stand-in never loads torch

    two = child.ask(2, 3, timeout=30)
    assert len(two["ms_per_image"]) == 3 and all(ms > 0 for ms in two["ms_per_image"])
    assert two["timings_ms"] == [{"decode": 1.0, "total": 2.0}] * 3
    assert two["sha256"] == _digest("abc", "xyz")
    assert "sha256_varies" not in two
    one = child.ask(1, 1, timeout=30)
    assert one["sha256"] == _digest("abc")

    child.close()
    assert child.proc.returncode == 0
    assert "the stand-in prints on stdout" in stderr.read_text()


@pytest.mark.parametrize("mode, message", [
    ("exit", r"exited \(status 3\)(.|\n)*the stand-in exits"),
    ("fail", "the job failed: the stand-in failed"),
])
def test_a_child_that_exits_or_fails_a_job_stops_the_run_with_its_stderr(standin, monkeypatch, mode, message):
    start, _, _ = standin
    monkeypatch.setenv("AB_STANDIN", mode)
    child = start(warmup=0)
    child.answer(timeout=30)
    with pytest.raises(ChildFailed, match=message):
        child.ask(1, 1, timeout=30)


def test_a_child_that_does_not_answer_in_time_is_reported(standin, monkeypatch):
    start, _, _ = standin
    monkeypatch.setenv("AB_STANDIN", "hang")
    child = start(warmup=0)
    child.answer(timeout=30)
    with pytest.raises(ChildFailed, match="no answer within 1 s"):
        child.ask(1, 1, timeout=1)


def test_a_child_that_fails_while_warming_up_is_reported(standin, monkeypatch):
    start, _, _ = standin
    monkeypatch.setenv("AB_STANDIN", "fail")
    child = start(warmup=1)
    with pytest.raises(ChildFailed, match="exited \\(status 1\\)(.|\n)*RuntimeError: the job failed"):
        child.answer(timeout=30)


def _m(round_, commit, values, busy=False, size=1):
    return {"round": round_, "commit": commit, "size": size, "ms_per_image": values, "busy": busy}


def test_summary_medians_quartiles_and_ratios_per_round():
    ms = [_m(0, 0, [10, 12, 11]), _m(0, 1, [20, 22, 21]), _m(1, 1, [21, 19, 20]), _m(1, 0, [14, 13, 15])]
    base, other = summarize(ms, 2, [1])[1]
    assert (base["median"], base["min"], base["max"], base["values"], base["rounds"]) == (12.5, 10, 15, 6, 2)
    assert (base["p25"], base["p75"]) == pytest.approx((11.25, 13.75))
    assert base["round_ratios"] == [1.0, 1.0]
    assert other["median"] == 20.5
    assert other["ratio_of_medians"] == pytest.approx(20.5 / 12.5)
    assert other["round_ratios"] == pytest.approx([21 / 11, 20 / 14])
    assert other["round_ratio_median"] == pytest.approx((21 / 11 + 20 / 14) / 2)
    assert (other["round_ratio_min"], other["round_ratio_max"]) == pytest.approx((20 / 14, 21 / 11))


def test_summary_of_quiet_rounds_leaves_out_every_commit_of_a_busy_round_at_that_size():
    ms = [_m(0, 0, [10]), _m(0, 1, [20]), _m(1, 0, [14]), _m(1, 1, [30], busy=True),
          _m(1, 0, [100], size=16), _m(1, 1, [200], size=16)]
    quiet = summarize(ms, 2, [1, 16], quiet_only=True)
    base, other = quiet[1]
    assert (base["median"], other["median"], other["round_ratios"]) == (10, 20, [2.0])
    assert [row["median"] for row in quiet[16]] == [100, 200]  # that round was quiet at 16
    assert summarize(ms, 2, [1])[1][1]["round_ratios"] == pytest.approx([2.0, 30 / 14])
