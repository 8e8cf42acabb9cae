"""Runs fuzz cases through the worker in child interpreters, so that a crash is a finding, not a
dead run.

A *case* (`Case`) is one job (single image or batch) with a readable name. `run_cases` splits
the cases over ``workers`` shards; each shard runs its cases in one long-lived child
(`fuzz_child.py`, the real `JobRunner` on the CPU), which reports on a pipe when it starts and
finishes each case. The parent watches every case:

- the child **dies** (a signal such as SIGSEGV, or any exit) in the middle of a case -> a
  ``crash`` finding for the case in flight, with the child's last log lines;
- a case runs past ``case_timeout_s`` -> the child is killed, a ``hang`` finding;
- the child's resident memory grows more than ``memory_bound_mb`` above its ready baseline
  (polled while the case runs, and the case's exact peak read after it) -> a ``memory`` finding
  (killed if caught while running);
- the case finishes but its response breaks a rule (`fuzz_child.check_response`: no bool
  ``success``, an "internal error", a valid item failed, a success whose image is not the size
  its metadata states, ``JobRunner.run`` raising) -> a ``problem`` finding.

After a crash, hang or memory kill, a fresh child carries on with the shard's remaining cases.
The case in flight is then run again alone in a fresh child (and a batch case's single-item
``parts`` one by one), which names the culprit and says whether it reproduces alone.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

CHILD = Path(__file__).resolve().parent / "fuzz_child.py"
#: How long a child may take to import torch and the worker and run its warm-up job.
STARTUP_TIMEOUT_S = 180.0
#: How often the parent polls a running child's resident memory.
POLL_S = 0.05


@dataclasses.dataclass
class Case:
    """One job to run.

    Attributes:
        name: readable and unique (a mutant's name, a corpus file's name, "batch-7 ...").
        job: the job's ``input`` (base64 sources).
        must_succeed: True for a valid single image; for a batch, the indices of its valid items.
        parts: for a batch, its items as single-image cases, to name a crash's culprit.
        raise_signal: for the harness's own tests only: the child sends itself this signal
            ("SIGSEGV") instead of running the job, a real crash at a known case.
    """

    name: str
    job: dict
    must_succeed: Any = False
    parts: list["Case"] = dataclasses.field(default_factory=list)
    raise_signal: str = ""

    def to_json(self) -> str:
        fields = {"name": self.name, "job": self.job, "must_succeed": self.must_succeed}
        if self.raise_signal:
            fields["raise_signal"] = self.raise_signal
        return json.dumps(fields)


@dataclasses.dataclass
class Finding:
    """Something a case did wrong: ``kind`` is crash, hang, memory or problem."""

    kind: str
    case: str
    detail: str
    isolated: str = ""  # what running it alone showed

    def __str__(self) -> str:
        text = f"[{self.kind}] {self.case}: {self.detail}"
        return text + (f"\n    alone: {self.isolated}" if self.isolated else "")


@dataclasses.dataclass
class Report:
    """What a run saw: every finding, each case's outcome and measurements."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    results: dict[str, dict] = dataclasses.field(default_factory=dict)  # case name -> child's report
    children: int = 0
    seconds: float = 0.0

    def merge(self, other: "Report") -> None:
        self.findings += other.findings
        self.results.update(other.results)
        self.children += other.children

    def counts(self) -> dict[str, int]:
        """Findings by kind (crash, hang, memory, problem), zeros included."""
        found = collections.Counter(f.kind for f in self.findings)
        return {kind: found.get(kind, 0) for kind in ("crash", "hang", "memory", "problem")}

    def outcomes(self) -> dict[str, int]:
        """Finished cases by outcome (ok, refused, mixed, raised)."""
        return dict(collections.Counter(r["outcome"] for r in self.results.values()))


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-case bounds: wall time, resident memory above the child's baseline, and how many
    crash/hang isolations (a fresh child each, a few seconds) a run may spend."""

    case_timeout_s: float = 20.0
    memory_bound_mb: float = 1536.0
    max_isolations: int = 10
    max_restarts: int = 40


# ---------------------------------------------------------------------------------------------
# one child


def _frame(line: str) -> str:
    """'  File "/x/y/torchvision/io/image.py", line 97 in decode_png' -> 'decode_png (io/image.py:97)'."""
    try:
        path, rest = line.strip()[len('File "'):].split('", line ', 1)
        number, func = rest.split(" in ", 1)
    except ValueError:
        return line.strip()
    return f"{func} ({'/'.join(path.split('/')[-2:])}:{number})"


def summarize_log(text: str) -> str:
    """The gist of a child's output after it died: Python's fatal error with the innermost frame
    and the innermost frame of the worker's own code, and the message a decoder printed just before
    it (libpng, libjpeg); else the last few meaningful lines."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Extension modules")]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is None:
        plain = [line.strip() for line in lines if "warnings.warn" not in line and "Warning:" not in line]
        return " | ".join(plain[-4:])
    frames = [line for line in lines[fatal:] if line.lstrip().startswith('File "') and "torch/_ops.py" not in line]
    own = next((f for f in frames if "/gpu_worker/" in f or "/kernels/" in f), None)
    where = " <- ".join(_frame(f) for f in ([frames[0]] if frames else []) + ([own] if own and own != frames[0] else []))
    before = [line.strip() for line in lines[max(0, fatal - 3):fatal]
              if "warnings.warn" not in line and not line.lstrip().startswith('File "')]
    said = f"; printed before: {before[-1]}" if before else ""
    return f"{lines[fatal].strip()} in {where or '?'}{said}"


class Child:
    """A running `fuzz_child.py` on a cases file, its progress pipe and its log file."""

    def __init__(self, cases_path: str, skip: int, log_path: str):
        read_fd, write_fd = os.pipe()
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.log_start = self.log.tell()  # this child's output starts here
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), cases_path, str(skip), str(write_fd)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
            start_new_session=True, env=dict(os.environ, PYTHONFAULTHANDLER="1", OMP_NUM_THREADS="1"),
        )
        os.close(write_fd)
        self.pipe = read_fd
        self.buffer = b""
        self.baseline_kb = 0

    def read_line(self, deadline: float, memory_limit_kb: Optional[int] = None) -> tuple[str, str]:
        """The next progress line, or ("eof", how it ended), ("timeout", ""), ("memory", rss)."""
        while b"\n" not in self.buffer:
            now = time.monotonic()
            if now >= deadline:
                return "timeout", ""
            if memory_limit_kb is not None:
                rss = self.rss_kb()
                if rss - self.baseline_kb > memory_limit_kb:
                    return "memory", f"resident {rss // 1024} MB, {(rss - self.baseline_kb) // 1024} MB over baseline"
            ready, _, _ = select.select([self.pipe], [], [], min(POLL_S, deadline - now))
            if ready:
                chunk = os.read(self.pipe, 65536)
                if not chunk:
                    return "eof", self.exit_description()
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return "line", line.decode()

    def rss_kb(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def exit_description(self) -> str:
        """How the child ended: its signal's name or exit status (waits up to 10 s)."""
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return "closed its pipe but did not exit (killed)"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def log_tail(self) -> str:
        """What this child's output says about how it ended (`summarize_log`)."""
        self.log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return summarize_log(f.read()[-200_000:].decode("utf-8", "replace"))

    def kill(self) -> None:
        """SIGKILL the child's process group (it is the group's leader) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def close(self) -> None:
        self.kill()
        os.close(self.pipe)
        self.log.close()


# ---------------------------------------------------------------------------------------------
# one shard


class Shard:
    """Runs a list of cases through successive children until each case has finished or been
    blamed for a child's death."""

    def __init__(self, cases: list[Case], limits: Limits, workdir: str, label: str):
        self.cases = cases
        self.limits = limits
        self.workdir = workdir
        self.label = label
        self.report = Report()
        self.cases_path = self._write_cases(cases, "cases")
        self.log_path = os.path.join(workdir, f"{label}.log")

    def _write_cases(self, cases: list[Case], stem: str) -> str:
        path = os.path.join(self.workdir, f"{self.label}-{stem}.jsonl")
        with open(path, "w") as f:
            for case in cases:
                f.write(case.to_json() + "\n")
        return path

    def run(self) -> Report:
        next_index = 0
        while next_index < len(self.cases):
            if self.report.children > self.limits.max_restarts:
                left = [c.name for c in self.cases[next_index:]]
                self.report.findings.append(Finding("problem", f"{len(left)} cases", (
                    f"not run: {self.limits.max_restarts} child restarts used up (first: {left[0]})")))
                break
            next_index = self._run_child(next_index)
        return self.report

    def _run_child(self, skip: int) -> int:
        """Start a child at case ``skip``; return the index to go on from when it has ended."""
        stopped, index = self._drive(self.cases_path, skip, self.cases, self.report)
        if stopped is None:
            return len(self.cases)
        kind, detail, tail = stopped
        case = self.cases[index]
        finding = Finding(kind, case.name, f"{detail}; log: {tail}")
        if self.limits.max_isolations > 0:
            finding.isolated = self._isolate(case, kind)
        self.report.findings.append(finding)
        return index + 1

    def _drive(self, path: str, skip: int, cases: list[Case], report: Report
               ) -> tuple[Optional[tuple[str, str, str]], int]:
        """Run one child over ``cases[skip:]`` (written at ``path``); record what finishes in
        ``report``. Returns (None, len) when all finished, else ((kind, detail, log tail), the
        index of the case in flight)."""
        child = Child(path, skip, self.log_path)
        report.children += 1
        bound_kb = int(self.limits.memory_bound_mb * 1024)
        try:
            event, text = child.read_line(time.monotonic() + STARTUP_TIMEOUT_S)
            if event != "line" or not text.startswith("ready "):
                raise RuntimeError(f"fuzz child did not start ({event} {text}): {child.log_tail()}")
            child.baseline_kb = int(text.split()[1])
            index = skip
            while index < len(cases):
                event, text = child.read_line(time.monotonic() + self.limits.case_timeout_s + 5)
                if event == "line" and text.startswith("start "):
                    index = int(text.split()[1])
                    event, text = child.read_line(time.monotonic() + self.limits.case_timeout_s, bound_kb)
                if event == "line" and text.startswith("done "):
                    _, number, payload = text.split(" ", 2)
                    self._record(cases[int(number)], json.loads(payload), report)
                    index = int(number) + 1
                    continue
                if event == "timeout":
                    return ("hang", f"no answer within {self.limits.case_timeout_s:.0f} s", child.log_tail()), index
                if event == "memory":
                    return ("memory", f"over the {self.limits.memory_bound_mb:.0f} MB bound: {text}",
                            child.log_tail()), index
                return ("crash", f"child {text}", child.log_tail()), index
            return None, len(cases)
        finally:
            child.close()

    def _record(self, case: Case, result: dict, report: Report) -> None:
        report.results[case.name] = result
        for problem in result["problems"]:
            report.findings.append(Finding("problem", case.name, problem))
        if result["peak_kb"] > self.limits.memory_bound_mb * 1024:
            report.findings.append(Finding("memory", case.name, (
                f"peak {result['peak_kb'] // 1024} MB above baseline, bound {self.limits.memory_bound_mb:.0f} MB")))

    def _isolate(self, case: Case, kind: str) -> str:
        """Run ``case`` alone in a fresh child (a batch: each of its parts alone) and say what
        happened."""
        if self.limits.max_isolations <= 0:
            return ""
        self.limits = dataclasses.replace(self.limits, max_isolations=self.limits.max_isolations - 1)
        alone = case.parts or [case]
        path = self._write_cases(alone, "isolate")
        scratch = Report()
        verdicts, index = [], 0
        while index < len(alone):
            stopped, at = self._drive(path, index, alone, scratch)
            if stopped is None:
                break
            verdicts.append(f"{alone[at].name} -> {stopped[0]} ({stopped[1]})")
            index = at + 1
        self.report.children += scratch.children
        if verdicts:
            return "; ".join(verdicts)
        return f"no {kind} when run alone (depends on what ran before it in the same child)"


# ---------------------------------------------------------------------------------------------
# entry point


def run_cases(cases: list[Case], workers: int = 2, limits: Limits = Limits(), workdir: Optional[str] = None
              ) -> Report:
    """Run ``cases`` in ``workers`` parallel shards of child processes; return what was found.

    ``workdir`` keeps the case files and child logs (default: a temporary directory, removed)."""
    started = time.monotonic()
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        where = workdir or tmp
        os.makedirs(where, exist_ok=True)
        shards = [Shard(cases[i::workers], limits, where, f"shard{i}") for i in range(workers) if cases[i::workers]]
        report = Report()
        with concurrent.futures.ThreadPoolExecutor(len(shards) or 1) as pool:
            for shard_report in pool.map(Shard.run, shards):
                report.merge(shard_report)
    report.seconds = time.monotonic() - started
    return report
