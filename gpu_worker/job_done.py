"""Report jobs FAILED to RunPod from outside the SDK's job loop, without the SDK.

Two callers: :mod:`gpu_worker.supervisor` (the jobs a crashed worker held; the supervisor runs no
job loop of its own) and the bounded shutdown of :mod:`gpu_worker.sdk_patches` (the jobs unfinished
when the grace period is over). Each needs only the SDK's job-done call, and calling it through
the SDK's internals (``rp_http.send_result``, ``http_client.AsyncClientSession``) would tie both to
one SDK version. This module sends what runpod 1.12.0's ``send_result`` sends for
``{"error": message}``; ``tests/test_job_done.py`` posts one job each way to the fake queue
(tests/fake_runpod.py) and compares the two requests, so a new SDK that changes the call fails
there:

* ``POST $RUNPOD_WEBHOOK_POST_OUTPUT``, ``$RUNPOD_POD_ID`` replaced by the worker id (the
  variable ``RUNPOD_POD_ID``), ``$ID`` by the job id, ``&isStream=false`` appended;
* the body ``{"error": message}`` as JSON text in UTF-8 (non-ASCII characters not escaped),
  although the Content-Type says ``application/x-www-form-urlencoded``, as the SDK's does;
* the headers ``Authorization`` (the API key: ``api_key`` of ``[default]`` in
  ``~/.runpod/config.toml`` when that file has one, else ``$RUNPOD_AI_API_KEY``),
  ``X-Request-ID`` (the job id), ``charset: utf-8``, ``Accept: */*`` and
  ``Accept-Encoding: gzip, deflate``; the ``User-Agent`` names this module, not the SDK;
* no proxy (the SDK's aiohttp session ignores proxy variables);
* an answer 5xx is tried again, up to :data:`ATTEMPTS` requests in all, :data:`RETRY_WAITS_S`
  apart (the SDK's ``FibonacciRetry(attempts=3)``), as long as the caller's time bound allows;
  a 4xx answer or a connection error is final, as in the SDK.

Every job is posted at once, each from its own thread; :func:`post_failures` returns within its
``timeout`` whatever the network does, and says which jobs were not delivered and why.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from typing import Mapping, Optional

#: The variable holding the job-done URL template (set by RunPod in its job loop).
JOB_DONE_URL_ENV = "RUNPOD_WEBHOOK_POST_OUTPUT"
#: Requests per job at most: the first and the retries after a 5xx answer.
ATTEMPTS = 3
#: Seconds before the 2nd and the 3rd request (the SDK's FibonacciRetry waits).
RETRY_WAITS_S = (2.0, 3.0)
#: Default bound on a whole :func:`post_failures` call (seconds).
REPORT_TIMEOUT_S = 5.0
#: Where the SDK reads an API key before it reads ``$RUNPOD_AI_API_KEY``.
CREDENTIAL_FILE = "~/.runpod/config.toml"
USER_AGENT = f"gpu_worker.job_done (Python {platform.python_version()})"


def configured(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when the job-done URL is set (RunPod's job loop)."""
    return bool((os.environ if environ is None else environ).get(JOB_DONE_URL_ENV))


def job_done_url(job_id: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The URL the SDK posts ``job_id``'s result to. Raises KeyError when the variable is unset."""
    environ = os.environ if environ is None else environ
    worker_id = environ.get("RUNPOD_POD_ID", str(uuid.uuid4()))  # the SDK's worker_state.WORKER_ID
    template = environ[JOB_DONE_URL_ENV].replace("$RUNPOD_POD_ID", worker_id)
    return template.replace("$ID", job_id) + "&isStream=false"


def api_key(environ: Optional[Mapping[str, str]] = None) -> str:
    """The ``Authorization`` value the SDK sends (see the module docstring)."""
    environ = os.environ if environ is None else environ
    try:
        with open(os.path.expanduser(CREDENTIAL_FILE), "rb") as file:
            profile = tomllib.load(file).get("default")
    except (OSError, ValueError):  # no file, or not TOML: the SDK reads the variable then too
        profile = None
    if isinstance(profile, dict):
        return str(profile.get("api_key", ""))
    return environ.get("RUNPOD_AI_API_KEY", "")


def post_failures(errors: Mapping[str, str], *, timeout: float = REPORT_TIMEOUT_S,
                  environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """POST ``{"error": errors[job]}`` to each job's job-done URL, all at once, for at most
    ``timeout`` seconds in all.

    Returns job id -> why that job's failure was not delivered (an HTTP status, a connection
    error, the time bound, no URL set); empty when every one was.
    """
    environ = dict(os.environ if environ is None else environ)
    if not configured(environ):
        return {job: f"{JOB_DONE_URL_ENV} is not set" for job in errors}
    deadline = time.monotonic() + timeout
    key = api_key(environ)
    outcome: dict[str, str] = {}
    threads = []
    for job, message in errors.items():
        thread = threading.Thread(target=_post_one, args=(job, message, key, environ, deadline, outcome),
                                  name=f"job-done-{job}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {job: outcome.get(job, f"no answer within {timeout:g} s") for job in errors
            if outcome.get(job) != "delivered"}


def _post_one(job: str, message: str, key: str, environ: Mapping[str, str], deadline: float,
              outcome: dict[str, str]) -> None:
    """Post one job's failure, retrying 5xx answers while the deadline allows; the result goes
    to ``outcome[job]``: "delivered" or why not."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    headers = {
        "Authorization": key,
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "X-Request-ID": job,
        "charset": "utf-8",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        request = urllib.request.Request(job_done_url(job, environ), data=body, headers=headers, method="POST")
    except ValueError as exc:  # a template that is no URL
        outcome[job] = f"bad {JOB_DONE_URL_ENV}: {exc}"
        return
    for attempt in range(ATTEMPTS):
        left = deadline - time.monotonic()
        if left <= 0:
            return  # the caller reports the time bound
        try:
            with opener.open(request, timeout=left) as response:
                response.read()
            outcome[job] = "delivered"
            return
        except urllib.error.HTTPError as exc:
            outcome[job] = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 or attempt + 1 == ATTEMPTS:
                return
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timed out, bad answer
            outcome[job] = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            return
        wait = RETRY_WAITS_S[attempt]
        if time.monotonic() + wait >= deadline:
            return
        time.sleep(wait)
