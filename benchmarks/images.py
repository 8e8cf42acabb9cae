"""The benchmark's test images: real photos from scikit-image, as 1920x1080 JPEGs (quality 90).

Each photo is cut to 16:9 around its centre and scaled with Pillow's LANCZOS to 2048x1152, once;
image ``i`` is then a 1920x1080 window of photo ``i % 7`` at an offset that depends on ``i // 7``
(mirrored on odd rounds), saved as JPEG quality 90 in memory. So every image of a batch is a
different file (no result cache or decoder can see the same bytes twice), all are real
photographs, and all have the same 1080p shape, as a batch of camera or frame-grab uploads would.

The photos are small (300 to 1411 px) and are scaled up, so they are smoother than native 1080p
camera files: their JPEGs are smaller (about 0.29 MB) and decode a little faster. That favours
every peer alike.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

from PIL import Image

#: scikit-image's colour photos used, in order.
PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
)
WIDTH, HEIGHT = 1920, 1080
QUALITY = 90
#: The scaled base is this much larger than a window, so windows can move around in it.
_BASE = (2048, 1152)


def _data_dir() -> str:
    import skimage.data  # a dev dependency; imported late so peers' subprocesses need not load it

    return os.path.dirname(skimage.data.__file__)


@functools.cache
def _base(name: str) -> Image.Image:
    """The photo cut to 16:9 around its centre and scaled (LANCZOS) to 2048x1152, RGB."""
    with Image.open(os.path.join(_data_dir(), name)) as im:
        im = im.convert("RGB")
    w, h = im.size
    if w * 9 > h * 16:  # too wide: cut the sides
        cw, ch = h * 16 // 9, h
    else:  # too tall: cut top and bottom
        cw, ch = w, w * 9 // 16
    left, top = (w - cw) // 2, (h - ch) // 2
    return im.crop((left, top, left + cw, top + ch)).resize(_BASE, Image.Resampling.LANCZOS)


def image(i: int) -> Image.Image:
    """Test image ``i`` (0, 1, 2, ...) as a 1920x1080 RGB PIL image."""
    base = _base(PHOTOS[i % len(PHOTOS)])
    round_ = i // len(PHOTOS)
    dx = (round_ * 37) % (_BASE[0] - WIDTH + 1)
    dy = (round_ * 23) % (_BASE[1] - HEIGHT + 1)
    window = base.crop((dx, dy, dx + WIDTH, dy + HEIGHT))
    if round_ % 2:
        window = window.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return window


def three_ways(n: int, device):
    """The first ``n`` test images as each contender takes them: PIL images, one uint8
    ``(n, 3, 1080, 1920)`` tensor on ``device``, and pyvips images (in memory, uchar)."""
    import numpy as np
    import pyvips
    import torch

    pils = [image(i) for i in range(n)]
    arrays = [np.asarray(im) for im in pils]
    batch = torch.stack([torch.from_numpy(a.copy()).permute(2, 0, 1) for a in arrays]).to(device)
    vips_images = [pyvips.Image.new_from_memory(a.tobytes(), a.shape[1], a.shape[0], 3, "uchar") for a in arrays]
    return pils, batch, vips_images


def jpeg(i: int) -> bytes:
    """Test image ``i`` as JPEG bytes (quality 90, Pillow's default 4:2:0 chroma)."""
    buffer = io.BytesIO()
    image(i).save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def jpegs(n: int) -> list[bytes]:
    """The first ``n`` test images as JPEG bytes."""
    return [jpeg(i) for i in range(n)]


def save_set(n: int, folder: str | os.PathLike) -> Path:
    """Write the first ``n`` JPEGs to ``folder`` as 0000.jpg, 0001.jpg, ... (for subprocesses)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:04d}.jpg").write_bytes(jpeg(i))
    return folder


def load_set(folder: str | os.PathLike, n: int) -> list[bytes]:
    """The first ``n`` JPEGs written by :func:`save_set` (only those are read)."""
    return [(Path(folder) / f"{i:04d}.jpg").read_bytes() for i in range(n)]
