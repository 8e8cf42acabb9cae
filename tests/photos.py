"""Real photos for the tests, from scikit-image's bundled data, in the modes and sizes we test."""

from __future__ import annotations

import functools
import os

import numpy as np
import skimage.data
import torch
from PIL import Image

DATA_DIR = os.path.dirname(skimage.data.__file__)

#: Colour photos shipped by scikit-image (file names in skimage/data).
COLOR_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
#: Sizes (width, height) cut from the photos: odd, tiny and a middling one.
SIZES = ((97, 61), (61, 97), (1, 1), (2, 2), (3, 5), (257, 193))
MODES = ("RGB", "L", "RGBA")


@functools.cache
def photo(name: str = "astronaut.png") -> Image.Image:
    """A scikit-image photo as an RGB PIL image (loaded once)."""
    with Image.open(os.path.join(DATA_DIR, name)) as im:
        return im.convert("RGB")


def alpha_mask(size: tuple[int, int]) -> Image.Image:
    """A real-looking alpha plane: the 'camera' photo, which has soft and hard edges, 0 and 255."""
    with Image.open(os.path.join(DATA_DIR, "camera.png")) as im:
        cam = im.convert("L").resize(size, Image.Resampling.BILINEAR)
    # Push part of the range to fully transparent / fully opaque so both extremes occur.
    return cam.point(lambda v: 0 if v < 40 else 255 if v > 215 else v)


def sample(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    """A crop of a real photo of the given mode and (width, height), from near its centre."""
    src = photo(name)
    w, h = size
    left = max(0, (src.width - w) // 3)
    top = max(0, (src.height - h) // 3)
    im = src.crop((left, top, left + w, top + h))
    if mode == "RGB":
        return im
    if mode == "L":
        return im.convert("L")
    if mode == "RGBA":
        rgba = im.convert("RGBA")
        rgba.putalpha(alpha_mask(size))
        return rgba
    raise ValueError(mode)


def to_tensor(im: Image.Image, device: str | torch.device = "cpu") -> torch.Tensor:
    """PIL image -> uint8 tensor (1, C, H, W)."""
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).to(device)


def to_array(t: torch.Tensor) -> np.ndarray:
    """uint8 tensor (1, C, H, W) or (C, H, W) -> numpy (H, W, C) on the host."""
    if t.ndim == 4:
        assert t.shape[0] == 1, t.shape
        t = t[0]
    return t.permute(1, 2, 0).cpu().numpy()


def pil_array(im: Image.Image) -> np.ndarray:
    """PIL image -> numpy (H, W, C), L included as C=1."""
    arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    """Largest per-pixel difference between two uint8 arrays of the same shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(initial=0))
