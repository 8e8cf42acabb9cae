"""Cheap argument checks shared by every kernel."""

from __future__ import annotations

import torch

#: Channel counts a batch may have: L, LA, RGB, RGBA. Alpha is the last channel when C is even.
CHANNELS = (1, 2, 3, 4)


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Raise unless ``images`` is a uint8 ``(B, C, H, W)`` tensor with C in 1..4.

    B may be 0 (an empty batch); H and W must be at least 1.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8, got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in CHANNELS:
        raise ValueError(f"{name} must have 1, 2, 3 or 4 channels, got {images.shape[1]}")
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(f"{name} must be at least 1x1, got {images.shape[3]}x{images.shape[2]}")


def has_alpha(images: torch.Tensor) -> bool:
    """True for LA and RGBA batches (an even channel count): the last channel is alpha."""
    return images.shape[1] % 2 == 0


def color_channels(images: torch.Tensor) -> torch.Tensor:
    """The colour planes of a batch: all channels but alpha, as a view."""
    return images[:, :-1] if has_alpha(images) else images


def per_image(name: str, values: torch.Tensor, count: int, width: int | None = None) -> torch.Tensor:
    """Check a per-image argument: a tensor ``(count,)`` (``width`` None) or ``(count, width)``,
    of numbers, row i for image i; returns it. Raise naming ``name`` otherwise."""
    shape = (count,) if width is None else (count, width)
    if values.dtype == torch.bool or values.is_complex() or tuple(values.shape) != shape:
        raise ValueError(f"{name} per image must be a real tensor of shape {shape} (one row per image), "
                         f"got {values.dtype} {tuple(values.shape)}")
    return values
