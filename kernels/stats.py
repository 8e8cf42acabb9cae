"""Image statistics on the device: per-channel histograms and mean luma.

Both read the images in blocks of rows, so the extra memory is one block's int32 copy
(:data:`BLOCK_ELEMENTS` values on the CPU, :data:`CUDA_BLOCK_ELEMENTS` elsewhere), whatever the
image's size. The mean luma comes from the histograms, in exact integers.
"""

from __future__ import annotations

import torch

from kernels._checks import check_images

#: ITU-R 601 luma weights in thousandths, as RunPod's custom-worker tutorial's analyze_image uses
#: (0.299 R + 0.587 G + 0.114 B; not Pillow's rounded integer L).
LUMA_WEIGHTS_1000 = (299, 587, 114)

#: Most pixel values one histogram block converts at once on the CPU (an int32 buffer of 4 MB).
BLOCK_ELEMENTS = 1 << 20
#: The same on other devices (64 MB of int32): fewer, larger kernel launches.
CUDA_BLOCK_ELEMENTS = 1 << 24


def histograms(images: torch.Tensor) -> torch.Tensor:
    """256-bin histogram of every channel of every image, counted in blocks of rows.

    Args:
        images: uint8 ``(B, C, H, W)``, any strides.
    Returns:
        int64 ``(B, C, 256)``: ``out[b, c, v]`` counts pixels of value ``v`` in channel ``c``.

    >>> histograms(torch.full((1, 1, 2, 2), 7, dtype=torch.uint8))[0, 0, 7]
    tensor(4)
    """
    check_images(images)
    b, c, h, w = images.shape
    bins = b * c * 256
    counts = torch.zeros(bins, dtype=torch.int64, device=images.device)
    if b == 0:
        return counts.view(b, c, 256)
    limit = BLOCK_ELEMENTS if images.device.type == "cpu" else CUDA_BLOCK_ELEMENTS
    rows = max(1, min(h, limit // (b * c * w)))
    # Give each (image, channel) plane its own 256-bin range so one bincount counts them all.
    offsets = (torch.arange(b * c, dtype=torch.int32, device=images.device) * 256).view(b, c, 1, 1)
    buffer = torch.empty(b * c * rows * w, dtype=torch.int32, device=images.device)
    for r0 in range(0, h, rows):
        block = images[:, :, r0 : r0 + rows]
        values = buffer[: block.numel()].view(block.shape)
        values.copy_(block).add_(offsets)
        counts += torch.bincount(values.view(-1), minlength=bins)
    return counts.view(b, c, 256)


def mean_luma_from_histograms(hists: torch.Tensor) -> torch.Tensor:
    """Mean luma of each image from its :func:`histograms` ``(B, C, 256)``; float64 ``(B,)``.

    L (and LA) images: the mean of L. RGB (and RGBA): the mean of 0.299 R + 0.587 G + 0.114 B,
    from exact int64 channel sums divided once. Alpha is ignored.
    """
    b, c, _ = hists.shape
    levels = torch.arange(256, dtype=torch.int64, device=hists.device)
    sums = (hists * levels).sum(dim=2)  # (B, C): each channel's sum of values, exact
    pixels = hists[:, 0].sum(dim=1)  # (B,)
    if c in (1, 2):
        return sums[:, 0].double() / pixels.double()
    weights = torch.tensor(LUMA_WEIGHTS_1000, dtype=torch.int64, device=hists.device)
    weighted = (sums[:, :3] * weights).sum(dim=1)  # < 2**53: exact in float64 too
    return weighted.double() / (pixels.double() * 1000)


def mean_luma(images: torch.Tensor) -> torch.Tensor:
    """Mean brightness of each image, 0..255: 0.299 R + 0.587 G + 0.114 B, or the mean of L.

    Alpha is ignored. Args: images uint8 ``(B, C, H, W)``. Returns float64 ``(B,)``.

    >>> float(mean_luma(torch.full((1, 3, 2, 2), 100, dtype=torch.uint8))[0])
    100.0
    """
    check_images(images)
    return mean_luma_from_histograms(histograms(images))
