"""Webhooks: when a job that named one ends, its status JSON is POSTed there.

The address rules are the image URLs' (RunPod's ``rp_ssrf``): http or https only; the host must
resolve to public addresses only, unless ``RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true``; the
connection is pinned to the address that was checked (no second DNS answer is trusted), made
directly (environment proxies are not used), and redirects are not followed. Each attempt has a
timeout; a failed attempt (no connection, a timeout, a status other than 2xx) is retried a few
times after a pause; a refused address is not retried. Deliveries run in the background and
never hold a job or a worker slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from runpod.serverless.utils import rp_ssrf

from gpu_worker.fetch import redact_url

log = logging.getLogger(__name__)


class WebhookRefused(ValueError):
    """The URL may not be called (scheme, or an address that is not public)."""


class WebhookFailed(RuntimeError):
    """An attempt that may succeed later failed (connection, timeout, non-2xx status)."""


def post_once(url: str, body: dict[str, Any], timeout_s: float) -> int:
    """POST ``body`` as JSON to ``url`` under the address rules; returns the 2xx status."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookRefused("a webhook must be an http or https URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = rp_ssrf.resolve_and_validate(parts.hostname, port)
    except (rp_ssrf.SSRFError, ValueError) as exc:
        raise WebhookRefused(str(exc)) from None
    last: Exception | None = None
    for address in addresses:
        with requests.Session() as session:
            session.trust_env = False  # no proxies: the connection must go to the checked address
            adapter = rp_ssrf.PinnedIPAdapter(address)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                response = session.post(url, json=body, timeout=timeout_s, allow_redirects=False)
            except requests.ConnectionError as exc:
                last = exc
                continue
            except requests.RequestException as exc:
                raise WebhookFailed(f"{type(exc).__name__}") from None
            with response:
                if 200 <= response.status_code < 300:
                    return response.status_code
                raise WebhookFailed(f"answered HTTP {response.status_code}")
    raise WebhookFailed(f"no connection ({type(last).__name__})")


class WebhookSender:
    """Delivers webhooks in background tasks; ``on_outcome`` hears delivered/failed/refused."""

    def __init__(self, timeout_s: float, retries: int, retry_delay_s: float,
                 on_outcome: Callable[[str], None] = lambda outcome: None) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.on_outcome = on_outcome
        self._tasks: set[asyncio.Task] = set()

    def send(self, url: str, body: dict[str, Any]) -> None:
        """Start delivering ``body`` to ``url`` and return at once."""
        task = asyncio.get_running_loop().create_task(self.deliver(url, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, body: dict[str, Any]) -> str:
        """Try up to 1 + ``retries`` times; returns and reports ``delivered``, ``refused`` or ``failed``."""
        shown = redact_url(url)
        for attempt in range(1 + self.retries):
            try:
                status = await asyncio.to_thread(post_once, url, body, self.timeout_s)
            except WebhookRefused as exc:
                log.warning("webhook of job %s to %s refused: %s", body.get("id"), shown, exc)
                return self._report("refused")
            except WebhookFailed as exc:
                log.warning("webhook of job %s to %s, attempt %d of %d: %s", body.get("id"), shown,
                            attempt + 1, 1 + self.retries, exc)
                if attempt < self.retries:
                    await asyncio.sleep(self.retry_delay_s)
                continue
            log.info("webhook of job %s delivered to %s (HTTP %d)", body.get("id"), shown, status)
            return self._report("delivered")
        return self._report("failed")

    def _report(self, outcome: str) -> str:
        self.on_outcome(outcome)
        return outcome

    async def close(self) -> None:
        """Cancel deliveries still pending (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
