"""The local endpoint's settings: command-line flags over environment variables over defaults.

These are the server's own settings; the worker's (device, MAX_CONCURRENCY, limits, ...) stay in
:mod:`gpu_worker.config`. Durations in the names' units; RunPod's own defaults where it has them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, fields
from typing import Mapping, Optional

#: RunPod's request body limits, in bytes (10 MiB for /run, 20 MiB for /runsync).
RUN_BODY_LIMIT = 10 * 1024 * 1024
RUNSYNC_BODY_LIMIT = 20 * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    """Settings of ``python -m gpu_worker serve``. Each has an environment variable (upper case)."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: When set, every /v2 and /metrics request needs ``Authorization: Bearer <key>``.
    api_key: Optional[str] = None
    #: ``text`` or ``json`` (one JSON object per line) for the server's log.
    log_format: str = "text"
    #: Jobs waiting for a worker slot; one more is answered 429.
    queue_size: int = 100
    #: How long a finished /run job's result can be read (RunPod keeps it 30 minutes).
    result_ttl_s: float = 1800.0
    #: The same for /runsync jobs (RunPod: 1 minute).
    runsync_result_ttl_s: float = 60.0
    #: Finished jobs kept at most; past it the oldest are dropped first (bounds memory).
    max_finished_jobs: int = 1000
    #: How long /runsync waits before answering IN_PROGRESS (RunPod: about 90 s; ``?wait=`` ms).
    runsync_wait_s: float = 90.0
    #: policy.executionTimeout when a job gives none (RunPod's endpoint default: 600 s).
    execution_timeout_ms: int = 600_000
    #: policy.ttl when a job gives none (RunPod: 24 h from submission).
    job_ttl_ms: int = 86_400_000
    #: Webhook POST: time per attempt, retries after a failed attempt, pause between them.
    webhook_timeout_s: float = 10.0
    webhook_retries: int = 2
    webhook_retry_delay_s: float = 10.0


def env_name(name: str) -> str:
    """The environment variable of a setting (``queue_size`` -> ``SERVE_QUEUE_SIZE``)."""
    if name in ("api_key", "log_format") or name.startswith("webhook_"):
        return name.upper()
    return f"SERVE_{name.upper()}"


def load_config(argv: list[str], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Flags (``--host``, ``--port``, ``--queue-size`` ...) over the environment over defaults.

    Raises ValueError naming the setting when a value does not parse or is out of range.
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m gpu_worker serve",
                                     description="A local endpoint speaking RunPod's serverless API.")
    for field in fields(ServerConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, dest=field.name, default=None, help=f"(env {env_name(field.name)})")
    args = vars(parser.parse_args(argv))
    values: dict[str, object] = {}
    for field in fields(ServerConfig):
        raw = args[field.name] if args[field.name] is not None else environ.get(env_name(field.name))
        if raw is None or raw == "":
            continue
        values[field.name] = _coerce(field.name, raw, field.default)
    config = ServerConfig(**values)
    if config.log_format not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be 'text' or 'json', got {config.log_format!r}")
    return config


def _coerce(name: str, raw: str, default: object) -> object:
    kind = float if isinstance(default, float) else int if isinstance(default, int) else str
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{env_name(name)} (--{name.replace('_', '-')}) must be "
                         f"{'a number' if kind is not str else 'text'}, got {raw!r}") from None
    if kind is not str and (value < 0 or value != value):
        raise ValueError(f"{env_name(name)} must not be negative, got {raw!r}")
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(config: ServerConfig) -> Optional[str]:
    """Why the server must not start with ``config`` (None when it may)."""
    if not is_loopback(config.host) and not config.api_key:
        return (f"refusing to listen on {config.host}: that is reachable from other machines and "
                f"API_KEY is not set. Set API_KEY (clients then send 'Authorization: Bearer <key>') "
                f"or listen on 127.0.0.1")
    return None
