"""Where a job runs: an endpoint speaking RunPod's API, or the worker's handler in-process.

Each backend's ``run(job_input)`` returns the job's output (the handler's response dict) or
raises :class:`Transient` (worth another try: network, 429, 5xx, TIMED_OUT, a crashed worker, a
job the endpoint lost), :class:`Permanent` (the job itself was refused: retrying gives the same)
or :class:`Stopped` (the client is stopping: the job was cancelled).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter

from gpu_worker.client.s3 import ClientError

#: HTTP statuses worth another try.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Words of a FAILED job's error that mean the worker died under it, not that its input was bad.
CRASH_MARKERS = ("worker process crashed", "worker crashed", "worker process died")
#: In a failed job's error: its results together were too large to return inline and the worker has
#: no bucket to put them in (gpu_worker.stages.deliver.upload_all names the setting). The same
#: images in smaller jobs come back.
RESULT_TOO_LARGE = "(UPLOAD_THRESHOLD_BYTES)"


class Transient(Exception):
    """A failure worth another try. ``kind`` names the way it failed without the job's details
    ("network: ConnectionError", "HTTP 503", "TIMED_OUT"): jobs that fail the same way in a row
    mean the endpoint is down (:mod:`gpu_worker.client.breaker`)."""

    def __init__(self, message: str, kind: Optional[str] = None) -> None:
        super().__init__(message)
        self.kind = kind or message


class Permanent(Exception):
    """A failure another try would repeat."""


class Stopped(Exception):
    """The client is stopping (``stop`` set): the job was cancelled, not failed."""


class RemoteBackend:
    """Jobs through ``runpod.Endpoint``: ``/run``, then ``/status`` polled until the job ends.

    Args:
        endpoint_id: the endpoint's id (any id for the local server).
        api_key: the key (RUNPOD_API_KEY).
        base_url: what ``runpod.endpoint_url_base`` takes (``http://127.0.0.1:8000/v2``); None:
            RunPod's (``https://api.runpod.ai/v2``).
        job_timeout_s: a job still not ended this long after it was queued is cancelled and tried
            again.
        poll_s: the longest pause between status polls, seconds (they start at 0.1 s).
        poll_retries: status polls that may fail in a row (network) before the job is given up
            and tried again; the pause after the n-th is ``poll_backoff_s * 2 ** (n - 1)``.
        stop: once set, a job being polled is cancelled and given up (Ctrl-C).
    """

    def __init__(self, endpoint_id: str, api_key: str, base_url: Optional[str] = None,
                 job_timeout_s: float = 900.0, poll_s: float = 1.0, poll_retries: int = 3,
                 poll_backoff_s: float = 1.0, stop: Optional[threading.Event] = None) -> None:
        self.endpoint_id, self.api_key, self.base_url = endpoint_id, api_key, base_url
        self.job_timeout_s, self.poll_s, self.poll_retries = job_timeout_s, poll_s, poll_retries
        self.poll_backoff_s = poll_backoff_s
        self.stop = stop or threading.Event()
        self._local = threading.local()

    def _endpoint(self) -> Any:
        """One ``runpod.Endpoint`` per thread (each has its own requests session)."""
        endpoint = getattr(self._local, "endpoint", None)
        if endpoint is None:
            import runpod

            saved = runpod.endpoint_url_base
            try:  # the client reads the base URL when it is made; the module's global is put back
                if self.base_url:
                    runpod.endpoint_url_base = self.base_url.rstrip("/")
                endpoint = self._local.endpoint = runpod.Endpoint(self.endpoint_id, api_key=self.api_key)
            finally:
                runpod.endpoint_url_base = saved
            # The SDK's session retries refused connections 5 times with pauses of up to 16 s on
            # http://; retries here are this client's own (run_with_retries, the poll loop).
            for prefix in ("http://", "https://"):
                endpoint.rp_client.rp_session.mount(prefix, HTTPAdapter(max_retries=0))
        return endpoint

    def run(self, job_input: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._endpoint()
        job = _call(lambda: endpoint.run({"input": job_input}), "submitting the job")
        started = time.monotonic()
        pause, failures = 0.1, 0
        while True:
            if self.stop.wait(pause):
                _cancel(job)
                raise Stopped(f"job {job.job_id} cancelled: the client is stopping")
            pause = min(self.poll_s, pause * 1.5)
            try:
                state = _call(lambda: endpoint.rp_client.get(f"{self.endpoint_id}/status/{job.job_id}"),
                              f"polling job {job.job_id}")
                failures = 0
            except Transient:
                failures += 1
                if failures > self.poll_retries:
                    raise
                self.stop.wait(min(30.0, self.poll_backoff_s * 2 ** (failures - 1)))
                continue
            except Permanent as exc:
                if "404" in str(exc):  # the endpoint forgot the job (restarted, expired)
                    raise Transient(f"job {job.job_id} is gone from the endpoint ({exc})", "job gone") from None
                raise
            status = state.get("status")
            if status == "COMPLETED":
                output = state.get("output")
                if not isinstance(output, dict):
                    raise Permanent(f"job {job.job_id} COMPLETED with no output object")
                return output
            if status == "FAILED":
                error = str(state.get("error") or (state.get("output") or {}).get("error") or "no error given")
                if any(marker in error for marker in CRASH_MARKERS):
                    raise Transient(f"job FAILED: {error}", "worker crashed")
                raise Permanent(f"job FAILED: {error}")
            if status == "TIMED_OUT":
                raise Transient(f"job {job.job_id} TIMED_OUT on the endpoint", "TIMED_OUT")
            if status == "CANCELLED":
                raise Permanent(f"job {job.job_id} was CANCELLED on the endpoint")
            if time.monotonic() - started > self.job_timeout_s:
                _cancel(job)
                raise Transient(f"job {job.job_id} not done after {self.job_timeout_s:g} s (status {status})",
                                "not done in --job-timeout")


def _cancel(job: Any) -> None:
    try:
        job.cancel()
    except Exception:  # noqa: BLE001 - the job is given up either way
        pass


def _call(fn: Callable[[], Any], what: str) -> Any:
    """``fn()`` with requests' and the SDK's failures sorted into Transient / Permanent; a
    refused API key is a ClientError (nothing else can work)."""
    try:
        return fn()
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        kind = f"network: {type(exc).__name__}"
        raise Transient(f"{what}: {kind}", kind) from None
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        body = exc.response.text[:300] if exc.response is not None else ""
        message = f"{what}: HTTP {code} {body}".strip()
        if code in TRANSIENT_STATUSES:
            raise Transient(message, f"HTTP {code}") from None
        raise Permanent(message) from None
    except RuntimeError as exc:  # runpod's client: 401, or no key
        raise ClientError(f"{what}: {exc}") from None


class LocalBackend:
    """The worker's handler in this process (``--local``): the same jobs, no endpoint. The
    worker's runtime (device, settings from the environment) is built on the first job."""

    _ids = itertools.count()

    def run(self, job_input: dict[str, Any]) -> dict[str, Any]:
        from gpu_worker.handler import run_sync

        output = run_sync({"id": f"client-{next(self._ids)}-{uuid.uuid4().hex[:8]}", "input": job_input})
        if "results" not in output:
            raise Permanent(f"job failed: {output.get('error', 'no error given')}")
        return output
