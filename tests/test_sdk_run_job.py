"""Fix 5 of gpu_worker.sdk_patches: ``run_job`` formats the handler's output for the log only
when the log prints it, and otherwise returns exactly what runpod 1.12.0's ``run_job`` returns."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from runpod.serverless.modules import rp_job

from gpu_worker.sdk_patches import lean_run_job


class CountedRepr:
    """A value that counts how often it is formatted in full (``repr``/``str``; asyncio's own
    size-limited task reprs, through ``reprlib``, are not counted)."""

    formatted = 0

    def __repr__(self) -> str:
        if "reprlib" not in sys._getframe(1).f_code.co_filename:
            CountedRepr.formatted += 1
        return "<counted>"

    __str__ = __repr__


@pytest.fixture
def log_level(monkeypatch):
    def set_level(level: str) -> None:
        monkeypatch.setattr(rp_job.log, "level", level)
    CountedRepr.formatted = 0
    return set_level


def run(run_job, handler, job=None):
    return asyncio.run(run_job(handler, job or {"id": "job-1", "input": {}}))


@pytest.mark.parametrize("level", ["INFO", "WARN", "ERROR", "NOTSET"])
def test_the_output_is_not_formatted_unless_debug_prints(log_level, level, capsys):
    log_level(level)
    result = run(lean_run_job.run_job, lambda job: {"image": CountedRepr()})
    assert CountedRepr.formatted == 0
    assert set(result) == {"output"} and isinstance(result["output"]["image"], CountedRepr)
    # the SDK's own run_job formats it twice at any level: what the fix removes
    run(rp_job.run_job, lambda job: {"image": CountedRepr()})
    assert CountedRepr.formatted == 2
    capsys.readouterr()


def test_at_debug_both_messages_are_logged_as_the_sdk_logs_them(log_level, capsys):
    log_level("DEBUG")
    run(lean_run_job.run_job, lambda job: {"image": CountedRepr()})
    ours = [line for line in capsys.readouterr().out.splitlines() if "job-1" in line]
    run(rp_job.run_job, lambda job: {"image": CountedRepr()})
    sdks = [line for line in capsys.readouterr().out.splitlines() if "job-1" in line]
    assert ours == sdks
    assert any("Handler output: {'image': <counted>}" in line for line in ours)
    assert any("run_job return: {'output': {'image': <counted>}}" in line for line in ours)


async def _async_handler(job):
    return {"success": True, "value": job["input"]["x"]}


def _raising_handler(job):
    raise ValueError("bad thing")


@pytest.mark.parametrize("handler", [
    lambda job: {"success": False, "error": "no image", "refresh_worker": True},
    lambda job: {"error": "only an error"},
    lambda job: {},
    lambda job: True,
    lambda job: ["a", 1],
    lambda job: None,
    _async_handler,
], ids=["error+refresh", "error-only", "empty", "bool", "list", "none", "async"])
def test_the_result_is_the_sdks(log_level, handler, capsys):
    log_level("INFO")
    job = {"id": "job-2", "input": {"x": 3}}
    assert run(lean_run_job.run_job, handler, dict(job)) == run(rp_job.run_job, handler, dict(job))


def test_a_raising_handler_gives_the_sdks_error_record(log_level, capsys):
    log_level("INFO")
    ours = json.loads(run(lean_run_job.run_job, _raising_handler)["error"])
    sdks = json.loads(run(rp_job.run_job, _raising_handler)["error"])
    assert ours.keys() == sdks.keys()
    assert ours["error_type"] == sdks["error_type"] == "<class 'ValueError'>"
    assert ours["error_message"] == "bad thing" and "_raising_handler" in ours["error_traceback"]
