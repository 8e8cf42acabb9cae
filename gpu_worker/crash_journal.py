"""Which job is in which stage, kept where another process can read it after this one dies.

A native crash (a decoder or driver fault: SIGSEGV, SIGBUS, SIGABRT) or the kernel's OOM killer
ends the process without running any Python, so nothing in it can say which job it was working on.
The worker therefore writes its jobs in flight and their stages into a small memory-mapped file
whenever they change (a few microseconds: a JSON dump copied into shared memory, no system call),
and the supervising process (:mod:`gpu_worker.supervisor`) reads that file once the worker is
gone, to name the job and the stage in its log and report the jobs it held as failed.

The file holds a 4-byte big-endian length, then that many bytes of JSON:
``{"pid": 123, "jobs": {"<job id>": ["decode", "ops"], ...}}``; a job with no stage running
has an empty list. Jobs beyond what fits in :data:`SIZE_BYTES` are left out of the snapshot.

Outside a supervisor (tests, notebooks, the SDK's local modes) the runner gets :data:`NO_JOURNAL`,
which records nothing.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional

#: Environment variable naming the journal file; the supervisor sets it for the worker it starts.
JOURNAL_ENV = "GPU_WORKER_CRASH_JOURNAL"
#: Size of the journal file, bytes (about a thousand jobs in flight with RunPod's job ids).
SIZE_BYTES = 64 * 1024
_HEADER = struct.Struct(">I")


class CrashJournal:
    """Records the stages of jobs in flight into a memory-mapped file (see the module docstring).

    Args:
        path: the file; created (or overwritten) at :data:`SIZE_BYTES`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        with open(self.path, "wb+") as file:
            file.truncate(SIZE_BYTES)
            self._map = mmap.mmap(file.fileno(), SIZE_BYTES)
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._active: dict[int, tuple[str, Optional[str]]] = {}  # token -> (job id, stage or None)
        self._write()

    @classmethod
    def from_environment(cls) -> "CrashJournal | NullJournal":
        """The journal named by ``$GPU_WORKER_CRASH_JOURNAL``, else :data:`NO_JOURNAL`."""
        path = os.environ.get(JOURNAL_ENV)
        return cls(path) if path else NO_JOURNAL

    @contextlib.contextmanager
    def job(self, job_id: str) -> Iterator[None]:
        """The job is in flight for the ``with`` block."""
        with self._entry(job_id, None):
            yield

    @contextlib.contextmanager
    def stage(self, job_id: str, stage: str) -> Iterator[None]:
        """The job is in ``stage`` ("decode", "ops", ...) for the ``with`` block; stages of one job
        may overlap (a batch job's next chunk decodes while this one's operations run)."""
        with self._entry(job_id, stage):
            yield

    def staged(self, job_id: str, stage: str, work: Callable[..., Any]) -> Callable[..., Any]:
        """``work`` wrapped so that each call runs inside :meth:`stage` (its name kept)."""

        @functools.wraps(work)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self.stage(job_id, stage):
                return work(*args, **kwargs)

        return run

    @contextlib.contextmanager
    def _entry(self, job_id: str, stage: Optional[str]) -> Iterator[None]:
        token = next(self._tokens)
        with self._lock:
            self._active[token] = (job_id, stage)
            self._write()
        try:
            yield
        finally:
            with self._lock:
                del self._active[token]
                self._write()

    def _write(self) -> None:
        """Copy the snapshot into the map (the caller holds the lock)."""
        jobs: dict[str, list[str]] = {}
        for job_id, stage in self._active.values():
            stages = jobs.setdefault(job_id, [])
            if stage is not None and stage not in stages:
                stages.append(stage)
        body = json.dumps({"pid": os.getpid(), "jobs": jobs}).encode()
        while len(body) > SIZE_BYTES - _HEADER.size and jobs:  # keep what fits
            jobs.pop(next(reversed(jobs)))
            body = json.dumps({"pid": os.getpid(), "jobs": jobs, "truncated": True}).encode()
        self._map[_HEADER.size : _HEADER.size + len(body)] = body
        self._map[: _HEADER.size] = _HEADER.pack(len(body))

    def close(self) -> None:
        self._map.close()


class NullJournal:
    """The journal when no supervisor reads one: records nothing."""

    @contextlib.contextmanager
    def job(self, job_id: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def stage(self, job_id: str, stage: str) -> Iterator[None]:
        yield

    def staged(self, job_id: str, stage: str, work: Callable[..., Any]) -> Callable[..., Any]:
        return work


NO_JOURNAL = NullJournal()


def read_journal(path: str | os.PathLike) -> dict[str, list[str]]:
    """The jobs in flight and their stages as last written to the journal at ``path``.

    Returns ``{}`` when the file is missing, empty or unreadable (a write torn by the crash).
    """
    try:
        with open(path, "rb") as file:
            raw = file.read(SIZE_BYTES)
        (length,) = _HEADER.unpack(raw[: _HEADER.size])
        snapshot = json.loads(raw[_HEADER.size : _HEADER.size + length])
        jobs = snapshot["jobs"]
        return {str(job): [str(s) for s in stages] for job, stages in jobs.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return {}
