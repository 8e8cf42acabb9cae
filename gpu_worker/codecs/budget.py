"""``output.max_bytes``: the highest quality not above the job's whose file fits, by bisection.

For each image of a batch the search keeps an interval of qualities still possible: the job's
``quality`` is tried first; if its file is too large, qualities below it are bisected (file size
grows with quality for JPEG, WebP and AVIF, so the search finds the highest that fits in
``ceil(log2(quality))`` more encodes). When even quality 1 is over the budget the smallest file
seen is returned and the result says the budget was not met.

The images are searched in lockstep: each round, the images whose next candidate is the same
quality are encoded together in one call of the encoder (on CUDA, nvjpeg takes a list of images
at one quality: one call per distinct candidate per round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from gpu_worker.formats import QUALITY_RANGE

__all__ = ["Fitted", "encode_within"]

#: ``encode_at(images, quality, indices)``: the files of ``images`` (a ``(k, C, H, W)`` batch:
#: the searched batch's images at ``indices``) at ``quality``.
EncodeAt = Callable[[torch.Tensor, int, list[int]], list[bytes]]


@dataclass(frozen=True)
class Fitted:
    """One image's result: its file, the quality it was encoded at, and whether it fits (None:
    there was no budget)."""

    data: bytes
    quality: int
    met: Optional[bool]


@dataclass
class _Search:
    low: int  # lowest quality still possible
    high: int  # highest quality still possible
    best: Optional[tuple[bytes, int]] = None  # the highest quality found to fit
    smallest: Optional[tuple[bytes, int]] = None  # the smallest file seen

    def next(self) -> Optional[int]:
        return (self.low + self.high) // 2 if self.low <= self.high else None


def encode_within(images: torch.Tensor, quality: int, max_bytes: int, encode_at: EncodeAt) -> list[Fitted]:
    """Each image of ``images`` (``(B, C, H, W)``) encoded at the highest quality from 1 to
    ``quality`` whose file has at most ``max_bytes`` bytes; or, when none fits, its smallest file.

    Args:
        images: uint8 ``(B, C, H, W)`` on any device.
        quality: the highest quality allowed (the job's).
        max_bytes: the budget, bytes (at least 1).
        encode_at: the encoder at one quality (see `EncodeAt`).

    Returns:
        One `Fitted` per image, in batch order.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
    low = QUALITY_RANGE[0]
    n = images.shape[0]
    searches = [_Search(low, quality - 1) for _ in range(n)]
    candidates = {i: quality for i in range(n)}  # the first round: the job's own quality
    while candidates:
        by_quality: dict[int, list[int]] = {}
        for i, q in candidates.items():
            by_quality.setdefault(q, []).append(i)
        for q, indices in sorted(by_quality.items()):
            files = encode_at(images[indices], q, indices)
            for i, data in zip(indices, files):
                _record(searches[i], q, data, max_bytes, first=q == quality)  # later candidates are lower
        candidates = {i: q for i, s in enumerate(searches) if (q := s.next()) is not None}
    return [_result(s) for s in searches]


def _record(search: _Search, q: int, data: bytes, max_bytes: int, first: bool) -> None:
    if search.smallest is None or len(data) < len(search.smallest[0]):
        search.smallest = (data, q)
    if len(data) <= max_bytes:
        search.best = (data, q)
        if first:  # the job's quality fits: nothing higher is allowed
            search.low, search.high = 1, 0
        else:
            search.low = q + 1
    elif not first:
        search.high = q - 1


def _result(search: _Search) -> Fitted:
    if search.best is not None:
        return Fitted(search.best[0], search.best[1], True)
    return Fitted(search.smallest[0], search.smallest[1], False)
