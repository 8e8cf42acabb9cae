"""Fix 3 of :mod:`gpu_worker.sdk_patches`: no base64 in the SDK's log."""

from __future__ import annotations

import functools
import re

#: A base64 data URI: ``data:<mime>[;param]*;base64,`` and its payload (any length).
_DATA_URI = re.compile(r"(data:[^\s,;'\"]*(?:;[^\s,;'\"]*)*;base64,)([A-Za-z0-9+/_-]*={0,2})", re.IGNORECASE)
#: A bare run of base64 (standard or URL-safe alphabet) at least this long is redacted too.
MIN_BASE64_RUN = 100
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{%d,}={0,2}" % MIN_BASE64_RUN)


def _placeholder(length: int) -> str:
    return f"<base64: {length:,} chars>"


def redact(text: str) -> str:
    """``text`` with every base64 data URI's payload, and every bare base64 run of at least
    :data:`MIN_BASE64_RUN` characters, replaced by ``<base64: N chars>``.

    >>> redact("{'image': 'data:image/jpeg;base64,/9j/4AAQSkZJRg=='}")
    "{'image': 'data:image/jpeg;base64,<base64: 16 chars>'}"
    """
    text = _DATA_URI.sub(lambda m: m.group(1) + _placeholder(len(m.group(2))), text)
    return _BASE64_RUN.sub(lambda m: _placeholder(len(m.group())), text)


def install_log_redaction() -> None:
    """Wrap ``RunPodLogger.log`` (every SDK log line goes through it) with :func:`redact`.

    Redaction runs only for lines the logger's level lets through, before the SDK's own
    truncation of long lines (which would otherwise still print 4 kB of the payload).
    """
    from runpod.serverless.modules import rp_logger

    logger_class = rp_logger.RunPodLogger
    original = logger_class.log
    if getattr(original, "_redacts_base64", False):
        return
    levels = rp_logger.LOG_LEVELS

    @functools.wraps(original)
    def log(self, message, message_level="INFO", job_id=None):
        if _would_print(self.level, message_level, levels):
            message = redact(str(message))
        return original(self, message, message_level, job_id)

    log._redacts_base64 = True  # type: ignore[attr-defined]
    logger_class.log = log


def _would_print(level: str, message_level: str, levels: list[str]) -> bool:
    """Whether RunPodLogger at ``level`` prints a ``message_level`` line (its own rule)."""
    if level == "NOTSET":
        return False
    try:
        return levels.index(level) <= levels.index(message_level)
    except ValueError:  # "TIP" and other levels outside the list: assume printed
        return True

