"""Fetch a job's source image bytes: inline base64 or an SSRF-safe URL download.

A job names its image as ``{"url": "..."}`` or ``{"base64": "..."}``. Both paths are bounded
before any pixel is touched:

- base64: the decoded size is computed from the encoded length and checked against the byte cap
  *before* decoding, so an oversized payload costs no allocation beyond the job JSON itself.
- URL: only through the RunPod SDK's :mod:`runpod.serverless.utils.rp_ssrf` (scheme allowlist,
  public-address check with DNS pinning, every redirect hop re-checked, Content-Length cap), plus
  a running byte cap while streaming and a *total* wall-clock limit. We do no address checking of
  our own: ``RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true`` (the SDK's switch) lifts it, for loopback
  tests and same-VPC sources.

Every failure is a :class:`~gpu_worker.errors.FetchError` or
:class:`~gpu_worker.errors.LimitExceeded` whose message names the field, the URL's host and the
problem; URLs in messages have their credentials, query string and fragment removed.

Example::

    >>> fetch_source({"base64": "data:image/png;base64,iVBORw0KGgo="}, max_bytes=1024, timeout_s=15)
    b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import binascii
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any, Optional
from urllib.parse import urlsplit

import pybase64  # SIMD base64, many times faster than the standard library's (BENCHMARKS.md)
import requests
from runpod.serverless.utils import rp_ssrf

from gpu_worker.errors import FetchError, InvalidInput, LimitExceeded

__all__ = ["decode_base64", "fetch_url", "fetch_source", "redact_url"]

#: Names of the configured limits, as they appear in LimitExceeded messages.
SIZE_LIMIT_NAME = "MAX_SOURCE_BYTES"
TIMEOUT_LIMIT_NAME = "FETCH_TIMEOUT_S"

#: Bytes read per chunk while streaming a download.
CHUNK_BYTES = 64 * 1024

#: The SDK's switch that lifts its address check (named in refusal messages).
ALLOW_PRIVATE_ENV = "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"
_ALLOW_PRIVATE_HINT = f"set {ALLOW_PRIVATE_ENV}=true to allow private addresses"

# Longest time, in seconds, the caller waits for the download thread to unwind after the deadline
# (it normally takes milliseconds: the socket is shut down under it).
_UNWIND_S = 0.5

# ---------------------------------------------------------------------------------------------
# base64
# ---------------------------------------------------------------------------------------------

_DATA_URI = re.compile(r"data:([^,]*),", re.IGNORECASE)
# str.translate tables: drop ASCII whitespace; map the URL-safe alphabet onto the standard one.
_WHITESPACE = " \t\r\n\f\v"
_DROP_WHITESPACE = {ord(c): None for c in _WHITESPACE}
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
# Anything but the two alphabets, '=' padding and ASCII whitespace.
_INVALID_B64_CHAR = re.compile(r"[^A-Za-z0-9+/\-_= \t\r\n\f\v]")


def decode_base64(text: str, max_bytes: int, *, field: str = "image.base64") -> bytes:
    """Decode an inline image given as base64 text into bytes.

    Accepts an optional ``data:<mime>;base64,`` prefix (any mime type, "base64" in any case),
    whitespace and newlines anywhere, the standard and the URL-safe alphabets, and missing
    ``=`` padding.

    Args:
        text: the base64 text (``str``).
        max_bytes: the most decoded bytes allowed (bytes). Checked from the encoded length
            *before* decoding.
        field: the job field named in error messages.

    Returns:
        The decoded bytes.

    Raises:
        LimitExceeded: the decoded size would exceed ``max_bytes``.
        FetchError: empty input, a data URI that is not base64, or text that is not valid base64.
    """
    if not isinstance(text, str):
        raise FetchError(f"{field} must be a string, got {type(text).__name__}")

    payload = text.lstrip()
    match = _DATA_URI.match(payload)
    if match is not None:
        params = [p.strip().lower() for p in match.group(1).split(";")]
        if "base64" not in params[1:]:
            raise FetchError(f"{field} is a data URI without ';base64' (only base64 data URIs are accepted)")
        payload = payload[match.end():]

    if not payload.strip(_WHITESPACE + "="):  # strips from both ends only: cheap on real data
        raise FetchError(f"{field} is empty")
    # Size check from the encoded length, before any copy or decode: every 4 base64 digits carry
    # 3 bytes. The length gives an upper bound for free; only a payload over the cap by that bound
    # pays for counting the characters that carry no data (whitespace, '=' padding).
    decoded_size = len(payload) * 3 // 4
    if decoded_size > max_bytes:
        decoded_size = (len(payload) - sum(payload.count(c) for c in _WHITESPACE + "=")) * 3 // 4
        if decoded_size > max_bytes:
            raise LimitExceeded(
                f"{field} decodes to about {decoded_size} bytes, over the limit "
                f"{SIZE_LIMIT_NAME}={max_bytes} bytes"
            )

    try:  # the common case, standard alphabet, padded, no whitespace: one SIMD pass, no copies
        return pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        pass  # below: whitespace, URL-safe digits and missing padding accepted, errors explained
    bad = _INVALID_B64_CHAR.search(payload)
    if bad is not None:
        raise FetchError(
            f"{field} is not valid base64: character {bad.group()!r} at position {bad.start()} of the data"
        )
    payload = payload.translate(_DROP_WHITESPACE).translate(_URLSAFE_TO_STANDARD)
    stripped = payload.rstrip("=")
    if "=" in stripped:
        raise FetchError(f"{field} is not valid base64: '=' padding in the middle of the data")
    if len(stripped) % 4 == 1:
        # 4n+1 digits cannot come from any byte string: the data is truncated or corrupt.
        raise FetchError(f"{field} is not valid base64: {len(stripped)} digits is one too many or three too few")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return pybase64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as err:  # belt and braces: the checks above catch all we know
        raise FetchError(f"{field} is not valid base64: {err}") from None


# ---------------------------------------------------------------------------------------------
# URL
# ---------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """Return ``url`` without credentials, query string or fragment, for messages and logs.

    Query strings often carry signatures or tokens (pre-signed bucket URLs), and user:password
    sits in the authority; neither belongs in an error message.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<unparseable URL>"
    tail = "?..." if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{tail}" if parts.scheme else f"{netloc}{parts.path}{tail}"


def _redact_urls_in(message: str) -> str:
    """Redact every http(s) URL inside an SDK message (it may name a redirect hop's full URL)."""
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", lambda m: redact_url(m.group().rstrip(".,;:'\")")), message)


class _Transfer:
    """State shared between the caller and the download thread of one fetch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.aborted = False
        self.response: Optional[requests.Response] = None
        self.connection: Any = None  # the urllib3 HTTPConnection under the response
        self.data: Optional[bytes] = None
        self.error: Optional[BaseException] = None

    def abort(self) -> None:
        """Stop the download from another thread: mark it abandoned and shut its socket down.

        A blocked ``recv`` is not woken by ``close()`` on Linux, but is by ``shutdown()``; the
        download thread then sees the end of the stream (or an error), closes the response and
        exits.
        """
        with self.lock:
            self.aborted = True
            response, connection = self.response, self.connection
        if response is None:
            return
        try:
            # urllib3 >= 2.3: shuts down the socket under the response, made for this purpose.
            response.raw.shutdown()
        except Exception:  # noqa: BLE001 - older urllib3, or the connection is already released
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _download(transfer: _Transfer, url: str, max_bytes: int, deadline: float) -> None:
    """Body of the download thread: fetch ``url`` into ``transfer.data`` or ``transfer.error``."""
    response = connection = None
    try:
        remaining = max(deadline - time.monotonic(), 0.001)
        # (connect, read) timeouts in seconds; read is per socket read, the total is the
        # caller's job. Neither may outlast the remaining time.
        response = rp_ssrf.safe_get(
            url, stream=True, timeout=(remaining, remaining), max_bytes=max_bytes
        )
        # urllib3 2.x exposes the connection until the body is read, then returns it to the pool.
        connection = getattr(response.raw, "connection", None)
        with transfer.lock:
            if transfer.aborted:
                return  # the caller has given up; `finally` closes the response
            transfer.response, transfer.connection = response, connection
        if not 200 <= response.status_code < 300:
            transfer.data = b""  # the caller reports the status; keep the response for it
            return
        chunks = []
        for chunk in rp_ssrf.iter_content_capped(response, CHUNK_BYTES, max_bytes):
            chunks.append(chunk)
            if transfer.aborted or time.monotonic() > deadline:
                return
        transfer.data = b"".join(chunks)
    except BaseException as err:  # noqa: BLE001 - handed over to the caller, which translates it
        transfer.error = _without_tracebacks(err)
    finally:
        if response is not None:
            with suppress(Exception):
                response.close()  # the SDK binds this to closing its single-use session too
        if connection is not None:
            # Closing the session does not close pooled connections with urllib3 2.8 (its pool
            # container has no dispose hook), so the socket would linger until garbage
            # collection: close it now. The session is single-use, nothing else shares it.
            with suppress(Exception):
                connection.close()


def _without_tracebacks(err: BaseException) -> BaseException:
    """Drop the tracebacks along ``err``'s chain, keeping the exceptions (messages, causes).

    The SDK's frames hold its single-use session, and with urllib3 2.8 a closed session still
    keeps pooled sockets open; a traceback kept alive by the caller (or by pytest) would keep
    them open until garbage collection.
    """
    seen: set[int] = set()
    stack = [err]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        links = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        stack.extend(link for link in links if isinstance(link, BaseException))
    return err


def fetch_url(url: str, max_bytes: int, timeout_s: float, *, field: str = "image.url") -> bytes:
    """Download ``url`` through the RunPod SDK's SSRF-safe fetch, bounded in size and total time.

    Only http and https are fetched. Private, loopback, link-local and metadata addresses, in any
    spelling the resolver accepts, are refused by the SDK unless
    ``RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=true``; redirects (at most 5) are re-checked hop by hop.

    Args:
        url: the http(s) URL of the image.
        max_bytes: the most body bytes accepted (bytes): a larger Content-Length is refused up
            front, and the stream is cut off as soon as the running total passes it.
        timeout_s: the total time allowed for the whole fetch (seconds): connecting, redirects,
            headers and body. A server that trickles bytes is cut off at this limit.
        field: the job field named in error messages.

    Returns:
        The response body.

    Raises:
        FetchError: refused URL (scheme, address), connection failure, non-2xx status.
        LimitExceeded: body over ``max_bytes`` or fetch slower than ``timeout_s``.
    """
    if not isinstance(url, str):
        raise FetchError(f"{field} must be a string, got {type(url).__name__}")
    if not url.strip():
        raise FetchError(f"{field} is empty")
    url = url.strip()
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError as err:
        raise FetchError(f"{field} is not a valid URL ({err}): {shown}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        # The SDK refuses these too; checking first gives the clearer message.
        raise FetchError(
            f"{field} refused: scheme {scheme or '(none)'!r} is not allowed, only http and https: {shown}"
        )
    if not host:
        raise FetchError(f"{field} has no host: {shown}")

    deadline = time.monotonic() + timeout_s
    transfer = _Transfer()
    # The download runs in its own thread so the caller can walk away at the deadline whatever
    # the server does: requests' timeouts are per socket read, so a server sending one byte per
    # second never trips them. At the deadline we shut the socket down under the thread.
    worker = threading.Thread(
        target=_download, args=(transfer, url, max_bytes, deadline), name=f"fetch {host}", daemon=True
    )
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0.0))

    if worker.is_alive():
        transfer.abort()
        # Usually unwinds at once. If the server is still trickling *headers* the SDK holds the
        # socket and we cannot reach it: the thread then ends at its own per-read timeout
        # (<= timeout_s between bytes) or when the server hangs up, and closes what it opened.
        worker.join(_UNWIND_S)
        raise LimitExceeded(
            f"{field} from {host} took longer than the limit {TIMEOUT_LIMIT_NAME}={timeout_s:g} s: {shown}"
        )

    if transfer.error is not None:
        raise _translate(transfer.error, field=field, host=host, shown=shown, max_bytes=max_bytes, timeout_s=timeout_s)
    response = transfer.response
    if response is not None and not 200 <= response.status_code < 300:
        reason = f" {response.reason[:60]}" if isinstance(response.reason, str) and response.reason else ""
        raise FetchError(f"{field} returned HTTP {response.status_code}{reason} from {host}: {shown}")
    if transfer.data is None:  # the thread stopped at the deadline between two chunks
        raise LimitExceeded(
            f"{field} from {host} took longer than the limit {TIMEOUT_LIMIT_NAME}={timeout_s:g} s: {shown}"
        )
    return transfer.data


_SDK_NON_PUBLIC = re.compile(r"host '(?P<host>.*)' resolves to non-public address (?P<ip>\S+)")
_SDK_UNRESOLVED = re.compile(r"could not resolve host '(?P<host>.*)': (?P<why>.*)")
_SDK_TOO_BIG_DECLARED = re.compile(r"download exceeds size cap: (?P<size>\d+) > (?P<cap>\d+) bytes")
_SDK_TOO_BIG_STREAMED = re.compile(r"download exceeds size cap: >(?P<cap>\d+) bytes")


def _translate(err: BaseException, *, field: str, host: str, shown: str, max_bytes: int, timeout_s: float) -> Exception:
    """Turn an SDK / requests exception from the download thread into our FetchError/LimitExceeded."""
    if isinstance(err, (FetchError, LimitExceeded)):
        return err
    if isinstance(err, rp_ssrf.SSRFError):
        message = str(err)
        if m := _SDK_NON_PUBLIC.match(message):
            refused_host, ip = m.group("host"), m.group("ip")
            what = ip if refused_host.strip("[]") == ip else f"{refused_host} (resolves to {ip})"
            if refused_host != host:  # the SDK names the hop it refused: a redirect target
                what = f"redirect target {what}"
            return FetchError(f"{field} refused: {what} is not a public address ({_ALLOW_PRIVATE_HINT})")
        if m := _SDK_UNRESOLVED.match(message):
            return FetchError(f"{field} failed: could not resolve host {m.group('host')} ({m.group('why')})")
        if m := _SDK_TOO_BIG_DECLARED.match(message):
            return LimitExceeded(
                f"{field} from {host} declares {m.group('size')} bytes (Content-Length), over the limit "
                f"{SIZE_LIMIT_NAME}={max_bytes} bytes"
            )
        if _SDK_TOO_BIG_STREAMED.match(message):
            return LimitExceeded(
                f"{field} from {host} sent more than the limit {SIZE_LIMIT_NAME}={max_bytes} bytes"
            )
        # Scheme of a redirect hop, redirect loops, missing Location, proxies: the SDK's own words.
        return FetchError(f"{field} refused: {_redact_urls_in(message)}")
    if isinstance(err, requests.exceptions.Timeout):
        return LimitExceeded(
            f"{field} from {host} took longer than the limit {TIMEOUT_LIMIT_NAME}={timeout_s:g} s: {shown}"
        )
    if isinstance(err, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return FetchError(
            f"{field} failed: the body from {host} ended early or is malformed ({_short_reason(err)}): {shown}"
        )
    if isinstance(err, requests.exceptions.ConnectionError):
        return FetchError(f"{field} failed: could not connect to {host} ({_short_reason(err)}): {shown}")
    if isinstance(err, requests.exceptions.RequestException):
        return FetchError(f"{field} failed: {type(err).__name__} from {host} ({_short_reason(err)}): {shown}")
    return FetchError(f"{field} failed: {type(err).__name__} while fetching from {host}: {shown}")


def _short_reason(err: BaseException) -> str:
    """The root cause of a requests/urllib3 error in a few words.

    requests' own messages embed the path and query string ("Max retries exceeded with url:
    /x?token=..."), so they are never shown: the innermost OS or TLS error is, else the innermost
    non-requests exception (urllib3's, e.g. "IncompleteRead(10 bytes read, 990 more expected)").
    """
    chain: list[BaseException] = []
    stack = [err]
    while stack:
        current = stack.pop()
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        links = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        stack.extend(link for link in links if isinstance(link, BaseException))
    for current in chain:
        if isinstance(current, ssl.SSLError):
            text = f"TLS error: {getattr(current, 'verify_message', None) or current.reason or current}"
            break
        if isinstance(current, OSError) and current.strerror:
            text = str(current.strerror).lower()
            break
    else:
        inner = [e for e in chain if not isinstance(e, requests.exceptions.RequestException)]
        text = _redact_urls_in(str(inner[-1])) if inner and str(inner[-1]) else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------


def fetch_source(image: Any, *, max_bytes: int, timeout_s: float, field: str = "image") -> bytes:
    """Return the bytes of a job's image source, ``{"url": ...}`` or ``{"base64": ...}``.

    Args:
        image: a mapping (or an object with ``url`` / ``base64`` attributes, e.g. a pydantic
            model) holding exactly one of ``url`` and ``base64``.
        max_bytes: the most source bytes accepted (bytes).
        timeout_s: the total time allowed for a URL download (seconds); unused for base64.
        field: the job field named in error messages, e.g. ``"images[3]"`` in a batch.

    Raises:
        InvalidInput: neither or both of ``url`` and ``base64`` are given.
        FetchError, LimitExceeded: see :func:`decode_base64` and :func:`fetch_url`.
    """
    if isinstance(image, Mapping):
        url, b64 = image.get("url"), image.get("base64")
    else:
        url, b64 = getattr(image, "url", None), getattr(image, "base64", None)
    if url is not None and b64 is not None:
        raise InvalidInput(f"{field} must give exactly one of 'url' and 'base64', not both")
    if url is not None:
        return fetch_url(url, max_bytes, timeout_s, field=f"{field}.url")
    if b64 is not None:
        return decode_base64(b64, max_bytes, field=f"{field}.base64")
    raise InvalidInput(f"{field} must give one of 'url' or 'base64'")
