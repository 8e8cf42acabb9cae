"""The tutorial's Pillow worker, with its bugs fixed: the reference for parity tests and the
plain-Pillow peer in benchmarks.

It reads the same ``operations`` JSON as the worker and applies each op with Pillow, one image at
a time, exactly as ``ImageProcessor.process_image`` in the tutorial does, except:
``resize`` with both sides and ``maintain_aspect`` returns the fitted image (the tutorial returned
``None`` from ``thumbnail``), and it resizes with the op's filter (LANCZOS by default) rather than
``thumbnail``'s BICUBIC with reducing_gap.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
FILTERS = {
    "blur": ImageFilter.BLUR,
    "contour": ImageFilter.CONTOUR,
    "detail": ImageFilter.DETAIL,
    "edge_enhance": ImageFilter.EDGE_ENHANCE,
    "edge_enhance_more": ImageFilter.EDGE_ENHANCE_MORE,
    "emboss": ImageFilter.EMBOSS,
    "find_edges": ImageFilter.FIND_EDGES,
    "sharpen": ImageFilter.SHARPEN,
    "smooth": ImageFilter.SMOOTH,
    "smooth_more": ImageFilter.SMOOTH_MORE,
}


def resize(image: Image.Image, params: dict[str, Any]) -> Image.Image:
    width, height = params.get("width"), params.get("height")
    if params.get("maintain_aspect", True):
        if width and height:
            fitted = Image.new("L", image.size)
            fitted.thumbnail((width, height), reducing_gap=None)  # Pillow's own sizing rule
            width, height = fitted.size
        elif width:
            height = max(1, int(image.height * (width / image.width)))
        else:
            width = max(1, int(image.width * (height / image.height)))
    if (width, height) == image.size:
        return image
    return image.resize((width, height), RESAMPLING[params.get("filter", "lanczos")])


def crop(image: Image.Image, params: dict[str, Any]) -> Image.Image:
    box = (params.get("left", 0), params.get("top", 0), params.get("right", image.width),
           params.get("bottom", image.height))
    return image.crop(box)


def apply_filter(image: Image.Image, params: dict[str, Any]) -> Image.Image:
    if params["name"] == "grayscale":
        return ImageOps.grayscale(image)
    return image.filter(FILTERS[params["name"]])


def adjust(image: Image.Image, params: dict[str, Any]) -> Image.Image:
    for key, enhancer in (("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
                          ("saturation", ImageEnhance.Color)):
        if params.get(key) is not None:
            image = enhancer(image).enhance(params[key])
    return image


OPS = {"resize": resize, "crop": crop, "filter": apply_filter, "adjust": adjust}


def apply_operations(image: Image.Image, operations: list[dict[str, Any]]) -> Image.Image:
    """Apply the job's operations to a PIL image with Pillow, in order."""
    for op in operations:
        image = OPS[op["type"]](image, op.get("params") or {})
    return image


def process_bytes(data: bytes, operations: list[dict[str, Any]], fmt: str = "JPEG", quality: int = 85) -> bytes:
    """The tutorial's whole job on encoded bytes: decode, apply, encode (alpha flattened for JPEG)."""
    with Image.open(io.BytesIO(data)) as source:
        image = apply_operations(ImageOps.exif_transpose(source), operations)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality)
    return buffer.getvalue()
