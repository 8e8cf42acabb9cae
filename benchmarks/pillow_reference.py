"""The tutorial's Pillow worker, with its bugs fixed: the plain-Pillow peer in benchmarks.

It reads the same ``operations`` JSON as the worker and applies each op with Pillow, one image at
a time, as ``ImageProcessor.process_image`` in the tutorial does, through each operation's Pillow
reference in the registry (gpu_worker.operations), which differs from the tutorial's code where
that code was wrong: ``resize`` with both sides and ``maintain_aspect`` returns the fitted image
(the tutorial returned ``None`` from ``thumbnail``), and it resizes with the op's filter (LANCZOS
by default) rather than ``thumbnail``'s BICUBIC with reducing_gap.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageOps

from gpu_worker.operations import apply_reference


def process_bytes(data: bytes, operations: list[dict[str, Any]], fmt: str = "JPEG", quality: int = 85) -> bytes:
    """The tutorial's whole job on encoded bytes: decode, apply, encode (alpha flattened for JPEG)."""
    with Image.open(io.BytesIO(data)) as source:
        image = apply_reference(ImageOps.exif_transpose(source), operations)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality)
    return buffer.getvalue()
