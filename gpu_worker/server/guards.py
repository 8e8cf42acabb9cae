"""What every request passes before a route runs: the API key and RunPod's body size limits."""

from __future__ import annotations

import hmac
import json
from typing import Callable, Optional

from fastapi import Header, HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_worker.server.config import RUN_BODY_LIMIT, RUNSYNC_BODY_LIMIT

#: Body limit of every other request (none of them needs a body).
OTHER_BODY_LIMIT = 64 * 1024


def key_checker(api_key: Optional[str]) -> Callable:
    """A FastAPI dependency: with ``api_key`` set, the request needs ``Authorization: Bearer <key>``
    (or the bare key, which RunPod accepts too); without one, anything passes."""

    async def check_key(authorization: Optional[str] = Header(default=None)) -> None:
        if not api_key:
            return
        token = (authorization or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not hmac.compare_digest(token.encode("utf-8", "replace"), api_key.encode()):
            raise HTTPException(401, "unauthorized: send 'Authorization: Bearer <API_KEY>' with the server's API_KEY")

    return check_key


def body_limit(path: str) -> tuple[int, str]:
    """(bytes, name) of the body limit of a request path: RunPod's for run and runsync."""
    if path.endswith("/runsync"):
        return RUNSYNC_BODY_LIMIT, "runsync"
    if path.endswith("/run"):
        return RUN_BODY_LIMIT, "run"
    return OTHER_BODY_LIMIT, "this route"


def too_large_message(size: str, limit: int, name: str) -> str:
    return (f"request body of {size} bytes is over the {limit // (1024 * 1024) or limit} "
            f"{'MiB' if limit >= 1024 * 1024 else 'bytes'} limit of {name} (RunPod's limit: 10 MiB for run, "
            f"20 MiB for runsync); send the image as a URL instead of base64")


class BodyLimit:
    """ASGI middleware: a body over the path's limit is answered 413 ``{"error": ...}``, by its
    Content-Length before it is read, or as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, name = body_limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, {"error": too_large_message(declared.decode(), limit, name)})
            return
        total = 0

        async def limited() -> dict:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:  # FastAPI passes an HTTPException from reading the body on
                    raise HTTPException(413, too_large_message(f"more than {limit}", limit, name))
            return message

        await self.app(scope, limited, send)


async def _send_json(send: Send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
