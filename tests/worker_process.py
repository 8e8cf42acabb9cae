"""Start RunPod workers as subprocesses for tests, and always stop them.

* :func:`start_worker` -- ``python -m <module>`` or ``python <script>`` with a given environment,
  in its own process group (the SDK forks a heartbeat process), output captured to a file.
* :class:`WorkerProcess` -- wait for readiness, SIGTERM and wait for the exit (bounded), and a
  :meth:`~WorkerProcess.stop` that always leaves nothing of the group running (SIGKILL last).
* :func:`start_api_worker` -- ``--rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port N`` and wait
  until it answers; :func:`api_runsync`, :func:`api_run`, :func:`api_status` talk to it.
* :func:`run_test_input` -- ``--test_input '{"input": ...}'`` once, output captured;
  :func:`parse_test_input_result` reads the result the SDK prints.

Only 127.0.0.1 is used. Every wait is bounded.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import requests

__all__ = [
    "REPO_ROOT", "STANDIN_DIR", "WorkerProcess", "worker_env", "free_port", "start_worker",
    "start_api_worker", "api_runsync", "api_run", "api_status", "run_test_input",
    "parse_test_input_result",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STANDIN_DIR = Path(__file__).resolve().parent / "standin_workers"


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus any inherited ``RUNPOD_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env["PYTHONUNBUFFERED"] = "1"  # the SDK's banner is a bare print()
    env.setdefault("RUNPOD_LOG_LEVEL", "INFO")  # unset means DEBUG, which logs whole payloads
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(module: str | None, script: str | os.PathLike | None, args: Sequence[str]) -> list[str]:
    if (module is None) == (script is None):
        raise ValueError("give exactly one of module= or script=")
    target = ["-m", module] if module is not None else [str(script)]
    return [sys.executable, *target, *args]


class WorkerProcess:
    """A worker subprocess in its own process group, its output in ``log_path``."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: str | os.PathLike,
                 cwd: str | os.PathLike = REPO_ROOT) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                self.argv, env=dict(env), cwd=str(cwd), stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self.proc.pid
        self.started_at = time.time()
        self.sigterm_at: float | None = None
        self.exited_at: float | None = None

    # ------------------------------------------------------------------ state
    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_members(self) -> list[int]:
        """Live (non-zombie) processes in the worker's process group, the worker included."""
        members = []
        proc_dir = Path("/proc")
        if not proc_dir.is_dir():  # not Linux: fall back to a signal-0 probe
            try:
                os.killpg(self.pid, 0)
                return [self.pid]
            except (ProcessLookupError, PermissionError):
                return []
        for entry in proc_dir.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp == self.pid and state not in ("Z", "X"):
                members.append(int(entry.name))
        return members

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ------------------------------------------------------------------ waiting
    def wait_ready(self, predicate: Callable[[], bool], timeout: float, what: str = "readiness") -> None:
        """Poll ``predicate`` until true; fail at once (with the log) if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.returncode} before {what}:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not at {what} after {timeout:.1f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_for_log(self, pattern: str, timeout: float, count: int = 1) -> list[re.Match]:
        """Wait until ``pattern`` (a regex) matches ``count`` times in the output."""
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match] = []

        def check() -> bool:
            found[:] = list(regex.finditer(self.log_text()))
            return len(found) >= count

        self.wait_ready(check, timeout, f"{count} x {pattern!r} in its log")
        return found

    def wait_exit(self, timeout: float) -> int:
        """Wait for the worker to exit; raises ``subprocess.TimeoutExpired`` after ``timeout``."""
        rc = self.proc.wait(timeout=timeout)
        if self.exited_at is None:
            self.exited_at = time.time()
        return rc

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM the worker (its main process only, as ``docker stop`` does) and wait.

        Returns ``(returncode, seconds from SIGTERM to exit)``; raises
        ``subprocess.TimeoutExpired`` if it is still running after ``timeout`` (``stop()``
        kills it then).
        """
        self.send_sigterm()
        rc = self.wait_exit(timeout)
        return rc, self.exited_at - self.sigterm_at

    def send_sigterm(self) -> None:
        self.sigterm_at = time.time()
        self.proc.send_signal(signal.SIGTERM)

    # ------------------------------------------------------------------ teardown
    def stop(self, term_timeout: float = 5.0) -> None:
        """Leave nothing running: SIGTERM, wait ``term_timeout``, SIGKILL the whole group."""
        try:
            if self.alive():
                try:
                    self.terminate(term_timeout)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the heartbeat child, if it outlived it
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL did not take
                pass
        finally:
            self._log.close()

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_worker(*, module: str | None = None, script: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, log_path: str | os.PathLike,
                 args: Sequence[str] = (), cwd: str | os.PathLike = REPO_ROOT) -> WorkerProcess:
    """Start ``python -m module`` or ``python script`` with ``worker_env(env)``.

    For the real job loop pass ``env=queue.env(...)`` and wait with
    ``proc.wait_ready(lambda: len(queue.polls) > 0, timeout)``.
    """
    return WorkerProcess(_command(module, script, args), worker_env(env), log_path, cwd)


def start_polling_worker(queue, log_path: str | os.PathLike, ready_timeout: float, **start_args) -> WorkerProcess:
    """Start a worker against a FakeRunPodQueue (``start_args`` as for :func:`start_worker`,
    ``env`` merged over ``queue.env()``) and return once its job loop polls the queue."""
    env = queue.env(**start_args.pop("env", {}))
    proc = start_worker(env=env, log_path=log_path, **start_args)
    try:
        proc.wait_ready(lambda: len(queue.polls) > 0, ready_timeout, "its first job-take poll")
    except BaseException:
        proc.stop()
        raise
    return proc


# ---------------------------------------------------------------------- --rp_serve_api
def start_api_worker(*, module: str | None = None, script: str | os.PathLike | None = None,
                     env: Mapping[str, str] | None = None, log_path: str | os.PathLike,
                     port: int | None = None, timeout: float = 30.0, attempts: int = 3,
                     cwd: str | os.PathLike = REPO_ROOT) -> tuple[WorkerProcess, str]:
    """Start the SDK's local FastAPI server on 127.0.0.1 and wait until it answers.

    Returns ``(process, base_url)``. The env must not hold ``RUNPOD_AI_API_KEY`` +
    ``RUNPOD_POD_ID`` unless ``RUNPOD_WEBHOOK_PING`` points somewhere local: the API mode
    starts the heartbeat too. Retries with a new port if the chosen one was taken meanwhile.
    """
    last_error: Exception | None = None
    for attempt in range(attempts):
        chosen = port if (port is not None and attempt == 0) else free_port()
        args = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(chosen)]
        proc = start_worker(module=module, script=script, env=env, args=args,
                            log_path=f"{log_path}.{attempt}" if attempt else log_path, cwd=cwd)
        base_url = f"http://127.0.0.1:{chosen}"
        try:
            proc.wait_ready(lambda: _answers(f"{base_url}/openapi.json"), timeout, "API answering")
            return proc, base_url
        except Exception as err:  # noqa: BLE001 - retried, or re-raised below
            last_error = err
            proc.stop()
            if "address already in use" not in proc.log_text().lower():
                break
    raise RuntimeError(f"API worker did not start: {last_error}")


def _answers(url: str) -> bool:
    try:
        with requests.get(url, timeout=1) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False


def _post(url: str, payload: Mapping[str, Any] | None, timeout: float) -> dict:
    with requests.post(url, json=payload, timeout=timeout) as response:
        response.raise_for_status()
        return response.json()


def api_runsync(base_url: str, job_input: Any, timeout: float = 30.0) -> dict:
    """POST /runsync ``{"input": job_input}`` -> ``{"id", "status": "COMPLETED"|"FAILED", "output"|"error"}``."""
    return _post(f"{base_url}/runsync", {"input": job_input}, timeout)


def api_run(base_url: str, job_input: Any, timeout: float = 30.0) -> dict:
    """POST /run -> ``{"id": "test-<uuid>", "status": "IN_PROGRESS"}``; the job only is stored."""
    return _post(f"{base_url}/run", {"input": job_input}, timeout)


def api_status(base_url: str, job_id: str, timeout: float = 30.0) -> dict:
    """POST /status/{id}: runs the stored job now and returns it like /runsync (once only:
    a second call answers ``FAILED`` / ``Job ID not found``)."""
    return _post(f"{base_url}/status/{job_id}", None, timeout)


# ---------------------------------------------------------------------- --test_input
def run_test_input(*, module: str | None = None, script: str | os.PathLike | None = None,
                   job_input: Any, env: Mapping[str, str] | None = None, timeout: float = 60.0,
                   cwd: str | os.PathLike = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run ``--test_input '{"input": job_input}'`` once (the SDK needs the ``input`` wrapper).

    Output (stdout and stderr together) is in ``.stdout``. Exit code 0 on success, 1 when the
    result holds an ``error``. Kills the process group on timeout.
    """
    argv = _command(module, script, ["--test_input", json.dumps({"input": job_input})])
    env = {k: v for k, v in worker_env(env).items() if k != "RUNPOD_WEBHOOK_GET_JOB"}
    proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, output=out) from None
    finally:
        if proc.poll() is None:  # pragma: no cover - interrupted
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, None)


_RESULT_LINE = re.compile(r"^INFO\s*\|\s*Job result: (.*)$", re.MULTILINE)


def parse_test_input_result(output: str) -> dict:
    """The ``{"output": ...}`` dict that ``--test_input`` prints (as a Python repr, INFO level)."""
    match = _RESULT_LINE.search(output)
    if match is None:
        raise ValueError(f"no 'Job result:' line in output:\n{output[-2000:]}")
    return ast.literal_eval(match.group(1))
