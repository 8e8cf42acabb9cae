"""The stages after encoding: the cache store, the bucket upload, and the response."""

from __future__ import annotations

from typing import Any

import pybase64

from gpu_worker import upload
from gpu_worker.cache import ResultCache
from gpu_worker.config import Settings
from gpu_worker.errors import LimitExceeded
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.stages import frames
from gpu_worker.stages.intake import cache_key
from gpu_worker.stages.item import Item, each_threaded, live


def store_cache(item: Item, cache: ResultCache) -> None:
    if not item.cached:
        cache.put(cache_key(item), (item.encoded, dict(item.analysis), item.result_size, dict(item.encoded_meta)),
                  len(item.encoded))


def upload_all(items: list[Item], settings: Settings, job_id: str) -> None:
    """Send results to the bucket when the job asks, or when inline base64 would be too large."""
    items = live(items)
    inline_bytes = sum(_base64_size(len(item.encoded)) for item in items)
    too_large = inline_bytes > settings.upload_threshold_bytes
    targets = items if too_large else [item for item in items if item.spec.output.upload]
    if not targets:
        return
    if too_large and not upload.bucket_configured():
        raise LimitExceeded(
            f"the result is {inline_bytes / 1e6:.1f} MB as base64, over the inline limit of "
            f"{settings.upload_threshold_bytes / 1e6:.1f} MB (UPLOAD_THRESHOLD_BYTES); results this "
            f"large are returned as bucket URLs, but {upload.not_configured_message()}")
    each_threaded(targets, "upload", _send, settings, job_id)


def _send(item: Item, settings: Settings, job_id: str) -> None:
    item.url = upload.upload_image(item.encoded, key_prefix=job_id, bucket_name=settings.bucket_name,
                                   extension=OUTPUT_FORMATS[item.spec.output.format].extension)


def item_response(item: Item, timings: dict[str, float], device: str) -> dict[str, Any]:
    """The job contract's response for one image: the result, or its error."""
    if item.error is not None:
        return error_response(item.error)
    out = item.spec.output
    w, h = item.result_size
    response: dict[str, Any] = {"success": True}
    if item.url is not None:
        response["processed_image_url"] = item.url
    else:
        encoded = pybase64.b64encode(item.encoded).decode("ascii")
        response["processed_image"] = f"data:{OUTPUT_FORMATS[out.format].mime};base64,{encoded}"
    response["metadata"] = {
        "width": w,
        "height": h,
        "format": out.format,
        "quality": out.quality,
        **item.encoded_meta,  # the quality used, the metadata kept, whether max_bytes was met
        "bytes": len(item.encoded),
        "source": {"format": item.info.format, "width": item.info.width, "height": item.info.height,
                   "mode": item.info.mode, "bytes": len(item.data),
                   **item.info.metadata.describe(item.info.frames)},
        "device": device,
        "cached": item.cached,
        "stacked": item.stacked,
        "timings_ms": dict(timings, fetch=item.fetch_ms),
        **frames.metadata(item),
    }
    if item.analysis:
        response["analysis"] = dict(item.analysis)
    return response


def error_response(message: str) -> dict[str, Any]:
    """The job contract's failure: ``{"success": false, "error": message}``."""
    return {"success": False, "error": message}


def _base64_size(n_bytes: int) -> int:
    """Characters of base64 for ``n_bytes`` bytes, plus the data URI's prefix."""
    return 4 * ((n_bytes + 2) // 3) + 32
