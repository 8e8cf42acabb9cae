"""The tutorial's ``analyze_image``, computed on the device from decoded tensors."""

from __future__ import annotations

from typing import Any

import torch

from gpu_worker.interop import MODE_OF_CHANNELS
from kernels.stats import histograms, mean_luma

#: Histogram keys per channel count (the tutorial names them r, g, b).
CHANNEL_NAMES = {1: ("l",), 2: ("l", "a"), 3: ("r", "g", "b"), 4: ("r", "g", "b", "a")}


def analyze(images: list[torch.Tensor], formats: list[str | None]) -> list[dict[str, Any]]:
    """Analysis of each uint8 ``(C, H, W)`` image: size, mode, format, mean luma, histograms.

    Same-shaped images are counted in one device call; the results cross to the host once per group.
    """
    out: list[dict[str, Any] | None] = [None] * len(images)
    groups: dict[tuple, list[int]] = {}  # (shape, device): a result too large for the GPU is on the host
    for i, image in enumerate(images):
        groups.setdefault((tuple(image.shape), image.device), []).append(i)
    for ((c, h, w), _), indices in groups.items():
        batch = torch.stack([images[i] for i in indices])
        hists = histograms(batch).cpu().tolist()
        lumas = mean_luma(batch).cpu().tolist()
        for k, i in enumerate(indices):
            out[i] = {
                "width": w,
                "height": h,
                "size": [w, h],
                "mode": MODE_OF_CHANNELS[c],
                "format": formats[i],
                "brightness": round(lumas[k], 4),
                "histograms": dict(zip(CHANNEL_NAMES[c], hists[k])),
            }
    return out  # type: ignore[return-value]
