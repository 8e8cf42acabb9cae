"""Loading the images that operation parameters name (resource parameters:
gpu_worker.operations.resources): fetched, probed and decoded exactly as a job's source is, with
the same code and the same limits.

A job's intake loads each distinct resource once, before any source is decoded
(gpu_worker.stages.intake.load_item_resources); :func:`load_resources` does the same for a plan in
the library (``Pipeline``) and the tests, within the default limits.
"""

from __future__ import annotations

import hashlib

import torch

from gpu_worker.codecs import check_pixels, decode, probe
from gpu_worker.config import Settings
from gpu_worker.errors import JobError
from gpu_worker.fetch import fetch_source
from gpu_worker.operations.resources import ImageResource, LoadedImage
from gpu_worker.plan import Plan


def load_image(resource: ImageResource, device: torch.device | str, *, field: str, max_bytes: int,
               timeout_s: float, max_pixels: int | None) -> LoadedImage:
    """Fetch (``max_bytes``, ``timeout_s``), probe (``max_pixels``: MAX_DECODED_PIXELS) and decode
    one resource onto ``device``. Errors are JobErrors whose message starts with ``field``."""
    data = fetch_source(resource, max_bytes=max_bytes, timeout_s=timeout_s, field=field)  # names field.url
    try:
        info = probe(data)
        check_pixels(info, max_pixels)
        image = decode(data, device, info)
    except JobError as exc:
        raise type(exc)(f"{field}: {exc}") from None
    return LoadedImage(image, hashlib.sha256(data).hexdigest())


def load_resources(plan: Plan, device: torch.device | str = "cpu") -> Plan:
    """``plan`` with every resource parameter loaded onto ``device``, each distinct one once,
    within the default limits (``Settings()``: MAX_SOURCE_BYTES, FETCH_TIMEOUT_S,
    MAX_DECODED_PIXELS; the worker's job intake applies its own configured ones). A plan without
    resources comes back as it is."""
    found = plan.resources()
    if not found:
        return plan
    settings = Settings()
    loaded: dict[ImageResource, LoadedImage] = {}
    for field, resource in found:
        if resource not in loaded:
            loaded[resource] = load_image(resource, device, field=field, max_bytes=settings.max_source_bytes,
                                          timeout_s=settings.fetch_timeout_s,
                                          max_pixels=settings.max_decoded_pixels)
    return plan.with_resources(loaded)
