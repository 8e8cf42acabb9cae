"""The child interpreter of the mutation-fuzz harness (`fuzz_harness`): runs many cases, one by one.

    python tests/fuzz_child.py CASES.jsonl SKIP PROGRESS_FD

Reads cases (one JSON object a line: ``{"name", "job", "must_succeed"}``) from ``CASES.jsonl``,
skipping the first ``SKIP`` lines, and runs each job through the worker's real job path
(`gpu_worker.jobs.JobRunner.run`, on the CPU, cache off), then checks the response
(`check_response`). Progress goes to file descriptor ``PROGRESS_FD``, one line per event, written
before and after each case, so that a parent sees which case was in flight when the child died:

    ready <baseline RSS kB>
    start <line number>
    done <line number> <JSON: problems, outcome, error, peak_kb, ms>

``peak_kb`` is the case's peak resident memory above the ready baseline (the kernel's high-water
mark ``VmHWM``, reset before each case through ``/proc/self/clear_refs``). stdout and stderr (the
decoders' own complaints, Python's fatal-error traceback) go wherever the parent sent them.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import signal
import sys
import time
from typing import Any

import torch
from PIL import Image

from gpu_worker.config import Settings
from gpu_worker.jobs import JobRunner

#: Longest acceptable error message (the worker names the problem, it does not echo input).
MAX_MESSAGE_CHARS = 2_000


def proc_status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, VmSize)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not allowed here: the peak then only ever grows, which errs on the safe side
        pass


def make_runner() -> JobRunner:
    """The job runner every case goes through: the real one, on the CPU, without the cache."""
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0)
    return JobRunner(settings, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# checks


def check_message(message: Any, where: str) -> list[str]:
    """Problems with a failure's message: it must be a short, non-empty text and not an
    "internal error" (which means an unexpected exception escaped a stage)."""
    if not isinstance(message, str) or not message.strip():
        return [f"{where}: failure without a message: {message!r}"]
    problems = []
    if "internal error" in message:
        problems.append(f"{where}: {message[:300]}")
    if len(message) > MAX_MESSAGE_CHARS:
        problems.append(f"{where}: message of {len(message)} chars: {message[:200]}...")
    return problems


def check_image(result: dict, where: str) -> list[str]:
    """A success's returned image decodes, and its size, format and frame count are the metadata's."""
    meta = result.get("metadata")
    uri = result.get("processed_image")
    if not isinstance(meta, dict) or not isinstance(uri, str) or not uri.startswith("data:image/"):
        return [f"{where}: success without metadata or image: {sorted(result)}"]
    try:
        data = base64.b64decode(uri.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as out:
            out.load()
            size, fmt, frames = out.size, out.format, getattr(out, "n_frames", 1)
    except Exception as exc:  # the worker's own output must be readable
        return [f"{where}: returned image unreadable: {type(exc).__name__}: {exc}"]
    problems = []
    if size != (meta.get("width"), meta.get("height")):
        problems.append(f"{where}: returned image is {size[0]}x{size[1]}, metadata says "
                        f"{meta.get('width')}x{meta.get('height')} (source {meta.get('source')})")
    if fmt != meta.get("format"):
        problems.append(f"{where}: returned {fmt}, metadata says {meta.get('format')}")
    if frames != meta.get("frames"):
        problems.append(f"{where}: returned {frames} frames, metadata says {meta.get('frames')}")
    return problems


def check_item(result: Any, where: str, must_succeed: bool) -> list[str]:
    """One image's result: a dict with a bool ``success``; a failure has a clean message, a
    success an image of the size it states."""
    if not isinstance(result, dict) or not isinstance(result.get("success"), bool):
        return [f"{where}: not a result: {str(result)[:300]}"]
    if result["success"]:
        return check_image(result, where)
    problems = check_message(result.get("error"), where)
    if must_succeed:
        problems.append(f"{where}: a valid image failed: {str(result.get('error'))[:300]}")
    return problems


def check_response(response: Any, case: dict) -> list[str]:
    """Every problem with a job's response (empty: it behaved). A batch job must answer per item,
    its item errors must name the item, and the valid items (``must_succeed``) must succeed."""
    if not isinstance(response, dict) or not isinstance(response.get("success"), bool):
        return [f"response is not a result: {str(response)[:300]}"]
    must = case.get("must_succeed", False)
    if "images" not in case["job"]:
        return check_item(response, "input", bool(must))
    if not response["success"]:
        return [f"the whole batch failed: {str(response.get('error'))[:300]}"]
    results = response.get("results")
    if not isinstance(results, list) or len(results) != len(case["job"]["images"]):
        return [f"batch answered {type(results).__name__} for {len(case['job']['images'])} items"]
    problems = []
    for index, item in enumerate(results):
        where = f"images[{index}]"
        problems += check_item(item, where, index in (must or []))
        if isinstance(item, dict) and item.get("success") is False and isinstance(item.get("error"), str) \
                and not item["error"].startswith(where):
            problems.append(f"{where}: error does not name the item: {item['error'][:200]}")
    return problems


def outcome_of(response: Any) -> tuple[str, str]:
    """("ok" | "refused" | "mixed", the first error message) of a response."""
    if not isinstance(response, dict):
        return "broken", ""
    results = response.get("results") if "results" in response else [response]
    errors = [r.get("error", "") for r in results if isinstance(r, dict) and r.get("success") is False]
    if not errors:
        return "ok", ""
    return ("refused" if len(errors) == len(results) else "mixed"), str(errors[0])


# ---------------------------------------------------------------------------------------------
# the loop


def run_case(runner: JobRunner, case: dict, baseline_kb: int) -> dict:
    """Run one case and return its report (problems, outcome, error, peak_kb, ms)."""
    if case.get("raise_signal"):  # the harness's self-test: a real crash at a known case
        os.kill(os.getpid(), getattr(signal, case["raise_signal"]))
    reset_peak()
    started = time.perf_counter()
    try:
        response = runner.run(case["job"], job_id="fuzz")
        problems = check_response(response, case)
        outcome, error = outcome_of(response)
    except Exception as exc:  # JobRunner.run promises never to raise for bad input
        problems = [f"JobRunner.run raised {type(exc).__name__}: {str(exc)[:300]}"]
        outcome, error = "raised", f"{type(exc).__name__}: {exc}"
    ms = (time.perf_counter() - started) * 1000
    peak_kb = max(0, proc_status_kb("VmHWM") - baseline_kb)
    return {"problems": problems, "outcome": outcome, "error": error[:500], "peak_kb": peak_kb, "ms": round(ms, 1)}


def warm_up(runner: JobRunner) -> None:
    """One small valid job first, so that lazy imports and first-call costs are not the first
    case's (and not in its memory peak)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "PNG")
    job = {"image": {"base64": base64.b64encode(buf.getvalue()).decode()},
           "operations": [{"type": "resize", "params": {"width": 8}}], "analysis": "both"}
    response = runner.run(job)
    if not response.get("success"):
        raise SystemExit(f"warm-up job failed: {response}")


def main(cases_path: str, skip: int, progress_fd: int) -> None:
    torch.set_num_threads(1)  # one core per child; the parent runs one child per core
    progress = os.fdopen(progress_fd, "w", buffering=1)
    runner = make_runner()
    warm_up(runner)
    baseline_kb = proc_status_kb("VmRSS")
    progress.write(f"ready {baseline_kb}\n")
    with open(cases_path) as cases:
        for number, line in enumerate(cases):
            if number < skip:
                continue
            case = json.loads(line)
            progress.write(f"start {number}\n")
            report = run_case(runner, case, baseline_kb)
            progress.write(f"done {number} {json.dumps(report)}\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
