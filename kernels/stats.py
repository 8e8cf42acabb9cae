"""Image statistics on the device: per-channel histograms and mean luma."""

from __future__ import annotations

import torch

from kernels._checks import check_images, color_channels

#: ITU-R 601 luma weights, as the tutorial's analyze_image uses (float, not Pillow's integer L).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def histograms(images: torch.Tensor) -> torch.Tensor:
    """256-bin histogram of every channel of every image, in one ``bincount`` on the device.

    Args:
        images: uint8 ``(B, C, H, W)``.
    Returns:
        int64 ``(B, C, 256)``: ``out[b, c, v]`` counts pixels of value ``v`` in channel ``c``.

    >>> histograms(torch.full((1, 1, 2, 2), 7, dtype=torch.uint8))[0, 0, 7]
    tensor(4)
    """
    check_images(images)
    b, c = images.shape[:2]
    # Give each (image, channel) plane its own 256-bin range so one bincount counts them all.
    offsets = torch.arange(b * c, device=images.device).view(b, c, 1, 1) * 256
    flat = (images.long() + offsets).flatten()
    return torch.bincount(flat, minlength=b * c * 256).view(b, c, 256)


def mean_luma(images: torch.Tensor) -> torch.Tensor:
    """Mean brightness of each image, 0..255: 0.299 R + 0.587 G + 0.114 B, or the mean of L.

    Alpha is ignored. Args: images uint8 ``(B, C, H, W)``. Returns float64 ``(B,)``.
    """
    check_images(images)
    planes = color_channels(images).double()
    if planes.shape[1] == 1:
        return planes.mean(dim=(1, 2, 3))
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    return (planes * weights).sum(dim=1).mean(dim=(1, 2))
