"""The server's log: plain text or JSON lines (``LOG_FORMAT=json``), and one line per ended job.

A job's line holds its id, outcome, image count, queue delay, execution time and stage timings,
and for a failed job the error (cut to :data:`MAX_ERROR_CHARS`). Never the input or the output:
no image data, no URLs, reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Optional

log = logging.getLogger("gpu_worker.server.jobs")

#: Longest error message written to the log.
MAX_ERROR_CHARS = 300
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s | %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Send every logger (uvicorn's too) to stdout, as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def image_counts(output: Any) -> tuple[int, int]:
    """(images, failed images) of a handler output; (0, 0) when it names none."""
    if not isinstance(output, dict):
        return 0, 0
    if isinstance(output.get("results"), list):
        results = output["results"]
        return len(results), sum(1 for r in results if not (isinstance(r, dict) and r.get("success")))
    if "success" in output:
        return 1, 0 if output.get("success") else 1
    return 0, 0


def log_job(job_id: str, outcome: str, output: Any, error: Any,
            delay_ms: Optional[int], execution_ms: Optional[int]) -> None:
    """The one line of an ended job."""
    images, failed = image_counts(output)
    timings = (output.get("metadata") or {}).get("timings_ms") if isinstance(output, dict) else None
    fields: dict[str, Any] = {"event": "job", "job_id": job_id, "outcome": outcome, "images": images,
                              "failed_images": failed, "delay_ms": delay_ms, "execution_ms": execution_ms,
                              "timings_ms": timings or {}}
    if error is not None:
        fields["error"] = str(error)[:MAX_ERROR_CHARS]
    stages = " ".join(f"{k}={v}" for k, v in (timings or {}).items())
    text = (f"job {job_id} {outcome} images={images} failed={failed} delay_ms={delay_ms} "
            f"execution_ms={execution_ms}" + (f" timings_ms[{stages}]" if stages else "")
            + (f" error={fields['error']!r}" if error is not None else ""))
    log.info(text, extra={"fields": fields})
