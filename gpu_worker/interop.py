"""Converting PIL images and numpy arrays to and from uint8 ``(C, H, W)`` tensors.

Channel counts map to Pillow modes: 1 = L, 2 = LA, 3 = RGB, 4 = RGBA. Other Pillow modes are
converted first: P (palette) and PA to RGBA when they carry transparency else RGB, 1 to L,
CMYK, YCbCr, LAB, HSV to RGB, I;16 / I / F to L (clipped to 0..255 as Pillow's convert does).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

#: Channel count -> Pillow mode.
MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def normalize_mode(image: Image.Image) -> Image.Image:
    """The image in one of L, LA, RGB or RGBA (a no-op when it already is)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode == "1" or mode.startswith("I") or mode == "F":
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    return image.convert("RGB")


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image (any mode, see module doc) -> uint8 ``(C, H, W)`` CPU tensor."""
    return array_to_tensor(np.asarray(normalize_mode(image)))


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``(C, H, W)`` tensor (any device) -> PIL image of mode L, LA, RGB or RGBA."""
    mode = MODE_OF_CHANNELS[image.shape[0]]
    array = image.permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 numpy ``(H, W)`` or ``(H, W, C)`` -> uint8 ``(C, H, W)`` CPU tensor (a copy)."""
    if array.dtype != np.uint8:
        raise TypeError(f"numpy images must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in MODE_OF_CHANNELS:
        raise ValueError(f"numpy image must be (H, W) or (H, W, C) with C in 1..4, got shape {array.shape}")
    # A copy: arrays from PIL are read-only, and the caller's array must stay untouched.
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def tensor_to_array(image: torch.Tensor, squeeze_gray: bool) -> np.ndarray:
    """uint8 ``(C, H, W)`` tensor -> numpy ``(H, W, C)``, or ``(H, W)`` for one channel if asked."""
    array = image.permute(1, 2, 0).contiguous().cpu().numpy()
    return array[:, :, 0] if squeeze_gray and array.shape[2] == 1 else array
