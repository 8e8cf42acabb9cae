"""What the tone entries (``autocontrast``, ``colorize``, ``equalize``, ``gamma``, ``invert``,
``posterize``, ``solarize``) share: their Pillow reference on the colour bands.

Pillow's ``ImageOps`` refuses LA and RGBA images for these; the worker's meaning is Pillow's
operation on the L or RGB image, with the alpha band put back. This module defines no
``OPERATION``.
"""

from __future__ import annotations

from typing import Callable

from PIL import Image


def on_colour_bands(image: Image.Image, operation: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """``operation`` on the L or RGB part of ``image``, its alpha (LA, RGBA) put back: an L or
    RGB result with alpha becomes LA or RGBA."""
    if image.mode not in ("LA", "RGBA"):
        return operation(image)
    *colour, alpha = image.split()
    result = operation(colour[0] if image.mode == "LA" else Image.merge("RGB", colour))
    return Image.merge(result.mode + "A", (*result.split(), alpha))
