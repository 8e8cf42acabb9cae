"""A fake RunPod job queue on 127.0.0.1 that speaks the serverless SDK's worker protocol.

The real worker loop (``runpod.serverless.start`` with ``RUNPOD_WEBHOOK_GET_JOB`` set) can be
pointed at this server with :meth:`FakeRunPodQueue.env`, so tests drive the SDK's own job-take /
job-done code exactly as it runs on RunPod. Protocol, as runpod 1.12.0 implements it:

* Job take -- ``GET RUNPOD_WEBHOOK_GET_JOB`` with ``$ID`` replaced by the worker id
  (``RUNPOD_POD_ID``) and ``&job_in_progress=0|1`` appended (so the URL must already hold a
  ``?``). To take N > 1 jobs at once the SDK rewrites ``/job-take/`` to ``/job-take-batch/`` and
  appends ``&batch_size=N`` before ``job_in_progress``. Answer: 204 (no job), a JSON object
  ``{"id", "input", ...}`` (single take) or a JSON list of such objects (batch take).
  The request carries ``Authorization: <RUNPOD_AI_API_KEY>``. The poll is held open while the
  queue is empty (``poll_hold_s``), as the real long-poll is.
* Too many requests -- :meth:`FakeRunPodQueue.throttle` answers the next job-takes 429; the SDK
  raises ``TooManyRequests`` and waits 5 s before the next.
* Stop channel -- ``GET`` the job-take URL with ``/job-take/`` replaced by ``/job-stop/``;
  answer 204 or ``{"jobsToStop": [ids]}``: the SDK cancels those jobs' tasks (nothing is posted).
* Result -- ``POST RUNPOD_WEBHOOK_POST_OUTPUT`` with ``$RUNPOD_POD_ID`` -> worker id, ``$ID`` ->
  job id, ``&isStream=true|false`` appended; the body is JSON text although the Content-Type
  says ``application/x-www-form-urlencoded``: ``{"output": ...}``, ``{"error": "..."}``,
  ``{"output": ..., "error": ...}``, possibly ``"stopPod": true``.
* Progress -- ``runpod.serverless.progress_update(job, x)`` POSTs ``{"status": "IN_PROGRESS",
  "output": x}`` to the *same* job-done URL, from a separate thread (fire-and-forget).
* Stream -- a generator handler POSTs ``{"output": chunk}`` per chunk to
  ``RUNPOD_WEBHOOK_POST_STREAM`` (same substitutions, ``&isStream=false``), then the final
  ``{"output": [...]}`` (aggregate or empty list) to job-done with ``&isStream=true``.
* Heartbeat -- a child process ``GET``s ``RUNPOD_WEBHOOK_PING`` (``$RUNPOD_POD_ID`` replaced)
  with ``?job_id=<comma-separated ids in progress>&runpod_version=...`` every
  ``RUNPOD_PING_INTERVAL`` ms (integer seconds after ``// 1000``: keep it >= 1000).

Everything is recorded with ``time.time()`` stamps, comparable with timestamps taken inside the
worker process on the same machine.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeRunPodQueue", "JobRecord", "Poll"]


@dataclass
class JobRecord:
    """What the fake saw of one job."""

    id: str
    input: Any
    added_at: float
    handed_out_at: float | None = None
    handed_out_via: str | None = None  # "job-take" or "job-take-batch"
    result_at: float | None = None  # arrival of the first final (non-progress) post
    result: dict | None = None  # body of the first final post
    results: list[tuple[float, dict]] = field(default_factory=list)  # every final post
    result_query: dict[str, str] = field(default_factory=dict)  # query of the first final post
    result_headers: dict[str, str] = field(default_factory=dict)  # headers of the first final post (names lower-case)
    progress: list[tuple[float, Any]] = field(default_factory=list)  # (time, output) per update
    stream: list[tuple[float, dict]] = field(default_factory=list)  # (time, body) per chunk

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def failed(self) -> bool:
        """True when the SDK reported the job as failed (an ``error`` key in its result)."""
        return self.result is not None and bool(self.result.get("error"))

    @property
    def output(self) -> Any:
        return None if self.result is None else self.result.get("output")

    @property
    def error(self) -> Any:
        return None if self.result is None else self.result.get("error")


@dataclass
class Poll:
    """One job-take request."""

    at: float
    kind: str  # "job-take" or "job-take-batch"
    worker_id: str
    batch_size: int
    job_in_progress: str | None
    authorization: str | None
    handed_out: list[str] = field(default_factory=list)
    answered_at: float | None = None
    throttled: bool = False  # answered 429 Too Many Requests (see FakeRunPodQueue.throttle)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins request threads: nothing outlives stop()
    block_on_close = True


class FakeRunPodQueue:
    """Threaded HTTP server on 127.0.0.1 serving jobs to a RunPod SDK worker loop.

    Use as a context manager (or call :meth:`start` / :meth:`stop`)::

        with FakeRunPodQueue() as queue:
            proc = start_worker(script=..., env=queue.env(MAX_CONCURRENCY="4"), ...)
            ids = [queue.add_job({"sleep": 0.1}) for _ in range(8)]
            records = queue.wait_for_results(ids, timeout=20)

    ``poll_hold_s``: how long an empty job-take poll is held before 204 (keep it > 0: after a
    204 the SDK polls again at once). While the worker is full it does not poll: runpod 1.12.0
    sleeps 1 s, gpu_worker.sdk_patches' prompt job-take waits for a slot to free.
    ``stop_poll_hold_s``: the same for the stop channel (after a 204 the SDK waits 1 s).
    ``post_delay_s``: each job-done post is taken in only after this long, as over a slow link
    (its record's ``result_at`` is then), and answered after that.
    ``keep_alive``: HTTP/1.1 with persistent connections, as RunPod's API serves them (the
    benchmarks use it); by default each request gets its own connection (HTTP/1.0), so no
    request thread outlives a test's worker.
    Records: ``records`` (id -> :class:`JobRecord`), ``polls``, ``stop_polls``, ``pings``,
    ``unexpected`` (anything malformed: tests should assert it stays empty).
    """

    def __init__(
        self,
        *,
        poll_hold_s: float = 0.5,
        stop_poll_hold_s: float = 0.0,
        endpoint_id: str = "fake-endpoint",
        pod_id: str | None = None,
        api_key: str = "fake-runpod-api-key",
        ping_interval_ms: int = 2000,
        post_delay_s: float = 0.0,
        keep_alive: bool = False,
    ) -> None:
        if ping_interval_ms < 1000:
            # the SDK sleeps RUNPOD_PING_INTERVAL // 1000 seconds: below 1000 it spins
            raise ValueError("ping_interval_ms must be >= 1000")
        self.poll_hold_s = poll_hold_s
        self.stop_poll_hold_s = stop_poll_hold_s
        self.endpoint_id = endpoint_id
        self.pod_id = pod_id or f"fake-pod-{uuid.uuid4().hex[:8]}"
        self.api_key = api_key
        self.ping_interval_ms = ping_interval_ms
        self.post_delay_s = post_delay_s
        self.keep_alive = keep_alive

        self._cond = threading.Condition()
        self._pending: collections.deque[str] = collections.deque()
        self._stop_signals: list[str] = []
        self._counter = itertools.count(1)
        self._stopping = False
        self._held_polls = 0
        self._throttle = 0

        self.records: dict[str, JobRecord] = {}
        self.polls: list[Poll] = []
        self.stop_polls: list[float] = []
        self.pings: list[tuple[float, dict[str, str], str | None]] = []  # (time, query, auth)
        self.unexpected: list[str] = []  # requests the fake did not understand

        self._connections: set = set()  # open client sockets (kept open with keep_alive)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeRunPodQueue":
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-runpod-queue", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held polls are answered 204 at once. Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            with self._cond:  # persistent connections end now: their threads stop reading
                for connection in self._connections:
                    with contextlib.suppress(OSError):
                        connection.shutdown(socket.SHUT_RDWR)
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "FakeRunPodQueue":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeRunPodQueue is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/{self.endpoint_id}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment a worker process needs to run its real loop against this queue.

        Only RunPod's own variables (plus NO_PROXY); merge it over a clean base environment
        (``worker_process.worker_env`` drops inherited ``RUNPOD_*``). ``extra`` is added as is.
        ``$ID`` / ``$RUNPOD_POD_ID`` are literal: the SDK substitutes them.
        """
        base = self.base_url
        env = {
            # `?gpu=fake` so the `&...` the SDK appends forms a valid query string.
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=fake",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=fake",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=fake",
            # The heartbeat (and the fitness checks' "unhealthy" report) GET this URL; with the
            # API key and pod id set the SDK would otherwise start the ping with a bogus URL.
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=fake",
            "RUNPOD_PING_INTERVAL": str(self.ping_interval_ms),
            "RUNPOD_POD_ID": self.pod_id,
            "RUNPOD_POD_HOSTNAME": f"{self.pod_id}-host",
            "RUNPOD_AI_API_KEY": self.api_key,
            # System checks would open a TCP connection to 8.8.8.8:53; the GPU check runs
            # nvidia-smi and a CUDA test binary.
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            # Unset means DEBUG, which logs whole job inputs and outputs.
            "RUNPOD_LOG_LEVEL": "INFO",
            # runpod.Endpoint & co. default to https://api.runpod.ai/v2: keep any use local.
            "RUNPOD_ENDPOINT_BASE_URL": f"http://127.0.0.1:{self.port}/v2",
            # requests (the heartbeat) honours proxy variables; aiohttp does not by default.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        env.update({k: str(v) for k, v in extra.items()})
        return env

    # ------------------------------------------------------------------ jobs
    def add_job(self, input: Any, job_id: str | None = None) -> str:
        """Queue one job; returns its id. The worker gets ``{"id": id, "input": input}``."""
        with self._cond:
            if job_id is None:
                job_id = f"job-{next(self._counter):04d}-{uuid.uuid4().hex[:6]}"
            if job_id in self.records:
                raise ValueError(f"duplicate job id {job_id!r}")
            self.records[job_id] = JobRecord(id=job_id, input=input, added_at=time.time())
            self._pending.append(job_id)
            self._cond.notify_all()
        return job_id

    def add_jobs(self, inputs: Iterable[Any]) -> list[str]:
        """Queue several jobs at once (atomically: a held poll sees all of them)."""
        with self._cond:
            return [self.add_job(item) for item in inputs]

    def stop_job(self, job_id: str) -> None:
        """Deliver ``job_id`` on the stop channel at the worker's next stop poll."""
        with self._cond:
            self._stop_signals.append(job_id)
            self._cond.notify_all()

    def throttle(self, count: int = 1) -> None:
        """Answer the next ``count`` job-take requests 429 Too Many Requests at once (recorded in
        ``polls`` with ``throttled=True``)."""
        with self._cond:
            self._throttle += count

    @property
    def pending(self) -> list[str]:
        """Ids queued but not yet handed out."""
        with self._cond:
            return list(self._pending)

    @property
    def held_polls(self) -> int:
        """Job-take requests currently held open waiting for a job."""
        with self._cond:
            return self._held_polls

    # ------------------------------------------------------------------ waiting
    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
        """Wait (bounded) until ``predicate()`` is true; it is evaluated under the queue lock."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
                self._cond.wait(min(remaining, 0.2))

    def wait_for_results(self, ids: Iterable[str], timeout: float) -> dict[str, JobRecord]:
        """Wait until every job in ``ids`` has a final result; returns ``{id: record}``."""
        ids = list(ids)
        try:
            self.wait_until(lambda: all(self.records[i].result is not None for i in ids),
                            timeout, f"results of {len(ids)} job(s)")
        except TimeoutError as err:
            with self._cond:
                missing = [i for i in ids if self.records[i].result is None]
                taken = [i for i in missing if self.records[i].handed_out_at is not None]
                odd = self.unexpected[-3:]
            raise TimeoutError(f"{err}; {len(missing)} missing (handed out but no result: "
                               f"{taken}; never handed out: {sorted(set(missing) - set(taken))})"
                               + (f"; last unexpected requests: {odd}" if odd else "")) from None
        with self._cond:
            return {i: self.records[i] for i in ids}

    def wait_for_handed_out(self, ids: Iterable[str], timeout: float) -> None:
        ids = list(ids)
        self.wait_until(lambda: all(self.records[i].handed_out_at is not None for i in ids),
                        timeout, f"{len(ids)} job(s) to be handed out")

    def wait_for_polls(self, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the worker has sent ``count`` job-take requests (1 = the loop is up)."""
        self.wait_until(lambda: len(self.polls) >= count, timeout, f"{count} job-take poll(s)")

    def wait_for_held_poll(self, timeout: float) -> None:
        self.wait_until(lambda: self._held_polls > 0, timeout, "a held job-take poll")

    def wait_for_idle_worker(self, timeout: float) -> None:
        """Wait until the worker holds a poll with ``job_in_progress=0``: nothing running, and
        the poll asks for its full concurrency (for timings that must start from idle)."""
        def idle() -> bool:
            last = self.polls[-1] if self.polls else None
            return (last is not None and last.answered_at is None
                    and last.job_in_progress == "0")
        self.wait_until(idle, timeout, "an idle worker (a held poll with job_in_progress=0)")

    # ------------------------------------------------------------------ HTTP side
    def _take(self, poll: Poll, batch: bool) -> Any:
        """Hand out up to ``poll.batch_size`` jobs, holding the poll while the queue is empty;
        ``"throttled"`` when the poll is to be answered 429."""
        deadline = time.monotonic() + self.poll_hold_s
        with self._cond:
            self.polls.append(poll)
            self._cond.notify_all()
            if self._throttle > 0:
                self._throttle -= 1
                poll.throttled, poll.answered_at = True, time.time()
                return "throttled"
            self._held_polls += 1
            try:
                while not self._pending and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            finally:
                self._held_polls -= 1
            now = time.time()
            poll.answered_at = now
            if self._stopping or not self._pending:
                self._cond.notify_all()
                return None
            count = poll.batch_size if batch else 1
            jobs = []
            while self._pending and len(jobs) < count:
                job_id = self._pending.popleft()
                record = self.records[job_id]
                record.handed_out_at = now
                record.handed_out_via = poll.kind
                poll.handed_out.append(job_id)
                jobs.append({"id": job_id, "input": record.input})
            self._cond.notify_all()
        return jobs if batch else jobs[0]

    def _take_stop_signals(self) -> list[str]:
        deadline = time.monotonic() + self.stop_poll_hold_s
        with self._cond:
            self.stop_polls.append(time.time())
            while not self._stop_signals and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            signals, self._stop_signals = self._stop_signals, []
            return signals

    def _post(self, kind: str, job_id: str, query: dict[str, str], body: dict,
              headers: dict[str, str] | None = None) -> bool:
        now = time.time()
        with self._cond:
            record = self.records.get(job_id)
            if record is None:
                self.unexpected.append(f"POST {kind} for unknown job {job_id!r}")
                return False
            if kind == "job-stream":
                record.stream.append((now, body))
            elif body.get("status") == "IN_PROGRESS":
                record.progress.append((now, body.get("output")))
            else:
                record.results.append((now, body))
                if record.result is None:
                    record.result, record.result_at, record.result_query = body, now, query
                    record.result_headers = dict(headers or {})
            self._cond.notify_all()
        return True

    def _note_unexpected(self, what: str) -> None:
        with self._cond:
            self.unexpected.append(what)
            self._cond.notify_all()


def _make_handler(queue: FakeRunPodQueue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if queue.keep_alive else "HTTP/1.0"
        timeout = 10  # socket timeout, so a stuck client cannot pin a request thread

        def setup(self) -> None:
            super().setup()
            with queue._cond:
                queue._connections.add(self.connection)

        def finish(self) -> None:
            with queue._cond:
                queue._connections.discard(self.connection)
            with contextlib.suppress(OSError):  # the peer or stop() may have closed it already
                super().finish()

        def log_message(self, format, *args):  # noqa: A002 - silence per-request stderr lines
            pass

        def _reply(self, status: int, payload: Any = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _parse(self) -> tuple[list[str], dict[str, str]]:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            parts = split.path.strip("/").split("/")
            if len(parts) < 4 or parts[0] != "v2" or parts[1] != queue.endpoint_id:
                return [], query
            return parts[2:], query

        def do_GET(self) -> None:  # noqa: N802
            parts, query = self._parse()
            auth = self.headers.get("Authorization")
            kind = parts[0] if parts else ""
            if kind in ("job-take", "job-take-batch") and len(parts) == 2:
                batch = kind == "job-take-batch"
                try:
                    batch_size = int(query.get("batch_size", "1")) if batch else 1
                except ValueError:
                    batch_size = -1
                if parts[1] != queue.pod_id or auth != queue.api_key or batch_size < 1:
                    queue._note_unexpected(f"bad job-take {self.path!r} auth={auth!r}")
                    self._reply(401 if auth != queue.api_key else 400)
                    return
                poll = Poll(at=time.time(), kind=kind, worker_id=parts[1], batch_size=batch_size,
                            job_in_progress=query.get("job_in_progress"), authorization=auth)
                jobs = queue._take(poll, batch)
                if jobs == "throttled":
                    self._reply(429)
                else:
                    self._reply(204) if jobs is None else self._reply(200, jobs)
            elif kind == "job-stop" and len(parts) == 2:
                signals = queue._take_stop_signals()
                self._reply(200, {"jobsToStop": signals}) if signals else self._reply(204)
            elif kind == "ping" and len(parts) == 2:
                with queue._cond:
                    queue.pings.append((time.time(), query, auth))
                    queue._cond.notify_all()
                self._reply(200, {})
            else:
                queue._note_unexpected(f"GET {self.path!r}")
                self._reply(404)

        def do_POST(self) -> None:  # noqa: N802
            parts, query = self._parse()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            kind = parts[0] if parts else ""
            if kind not in ("job-done", "job-stream") or len(parts) != 3 or parts[1] != queue.pod_id:
                queue._note_unexpected(f"POST {self.path!r}")
                self._reply(404)
                return
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                queue._note_unexpected(f"POST {self.path!r} with non-JSON body {raw[:200]!r}")
                self._reply(400)
                return
            if not isinstance(body, dict):
                queue._note_unexpected(f"POST {self.path!r} with non-object body {raw[:200]!r}")
                self._reply(400)
                return
            if kind == "job-done" and body.get("status") != "IN_PROGRESS" and queue.post_delay_s > 0:
                time.sleep(queue.post_delay_s)
            headers = {name.lower(): value for name, value in self.headers.items()}
            ok = queue._post(kind, parts[2], query, body, headers)
            self._reply(200, {}) if ok else self._reply(404)

    return Handler
