"""The job's ``analysis``: per-channel histograms, mean luma, size, mode and format of the source
or the result, computed on the device from decoded tensors."""

from __future__ import annotations

from typing import Any

import torch

from gpu_worker.interop import MODE_OF_CHANNELS
from kernels.stats import histograms, mean_luma_from_histograms

#: Histogram keys per channel count (the job contract names them r, g, b).
CHANNEL_NAMES = {1: ("l",), 2: ("l", "a"), 3: ("r", "g", "b"), 4: ("r", "g", "b", "a")}


def analyze(images: list[torch.Tensor], formats: list[str | None]) -> list[dict[str, Any]]:
    """Analysis of each uint8 ``(C, H, W)`` image: size, mode, format, mean luma, histograms.

    Each image is counted where it lies (no stacked copy; :func:`kernels.stats.histograms` reads
    it in blocks of rows), and the mean luma comes from its histograms. The results of images on
    one device cross to the host in one copy.
    """
    out: list[dict[str, Any] | None] = [None] * len(images)
    groups: dict[tuple, list[int]] = {}  # (channels, device): a result too large for the GPU is on the host
    for i, image in enumerate(images):
        groups.setdefault((image.shape[0], image.device), []).append(i)
    for (c, _), indices in groups.items():
        hists = torch.stack([histograms(images[i].unsqueeze(0))[0] for i in indices])  # (N, C, 256)
        lumas = mean_luma_from_histograms(hists)
        hists_host, lumas_host = hists.cpu().tolist(), lumas.cpu().tolist()
        for k, i in enumerate(indices):
            h, w = images[i].shape[1:]
            out[i] = {
                "width": w,
                "height": h,
                "size": [w, h],
                "mode": MODE_OF_CHANNELS[c],
                "format": formats[i],
                "brightness": round(lumas_host[k], 4),
                "histograms": dict(zip(CHANNEL_NAMES[c], hists_host[k])),
            }
    return out  # type: ignore[return-value]
