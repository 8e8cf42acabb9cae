"""Animations made from real photos for the tests: a camera panning over a scikit-image photo,
written by Pillow as animated GIF, WebP (lossless, so the frames are known exactly) and APNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from photos import alpha_mask, photo

#: Each frame's display time, ms (GIF stores tens of ms): two alternating values, so that a
#: writer that kept only the first would be caught.
DURATIONS = (40, 120)


def panning_frames(count: int = 8, size: tuple[int, int] = (97, 61), name: str = "astronaut.png",
                   transparent: bool = False) -> list[Image.Image]:
    """``count`` RGB (or RGBA, with a real alpha plane that moves) crops of ``size`` (width,
    height) panning right and down across the photo, a few pixels a frame."""
    src = photo(name)
    w, h = size
    frames = []
    for i in range(count):
        left, top = (40 + 9 * i) % max(1, src.width - w), (100 + 5 * i) % max(1, src.height - h)
        frame = src.crop((left, top, left + w, top + h))
        if transparent:
            frame = frame.convert("RGBA")
            frame.putalpha(Image.fromarray(np.roll(np.asarray(alpha_mask(size)), 7 * i, axis=1)))
        frames.append(frame)
    return frames


def durations(count: int) -> list[int]:
    return [DURATIONS[i % len(DURATIONS)] for i in range(count)]


def write(frames: list[Image.Image], fmt: str, **params) -> bytes:
    """``frames`` as one animated file of ``fmt`` ("GIF", "WEBP", "PNG" for APNG)."""
    params.setdefault("duration", durations(len(frames)))
    if fmt == "WEBP":
        params.setdefault("lossless", True)
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **params)
    return buf.getvalue()


def pillow_frames(data: bytes) -> list[Image.Image]:
    """Every frame of an animated file as Pillow presents it: ``seek(i)``, ``convert("RGBA")``."""
    out = []
    with Image.open(io.BytesIO(data)) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            out.append(im.convert("RGBA"))
    return out


def frame_durations(data: bytes) -> list[int]:
    """Each frame's duration (ms) as Pillow reads it."""
    out = []
    with Image.open(io.BytesIO(data)) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            im.load()
            out.append(im.info.get("duration"))
    return out
