"""Pillow's rank filters (``MedianFilter``, ``MinFilter``, ``MaxFilter``) and ``ModeFilter`` on
uint8 batches.

What Pillow does, which these kernels reproduce exactly (they pick values, they compute none):

* ``RankFilter.filter`` (``ImageFilter.py``) first expands the image by ``size // 2`` on every
  side, repeating the edge pixels (``ImagingExpand``), then ``RankFilter.c`` takes, for each pixel,
  the ``rank``-th smallest of the ``size x size`` window: rank ``size * size // 2`` for the median,
  0 for the minimum, ``size * size - 1`` for the maximum. The result has the image's size.
* ``ModeFilter.c`` counts the values of the window that lie inside the image (nothing is repeated
  at the edges), takes the most frequent one, the lowest on ties, and keeps it only where it
  occurs more than twice; elsewhere the pixel keeps its own value.
* Neither is a ``MultibandFilter``: ``Image.filter`` runs them on each band alone, alpha included.

How: the window's ``size * size`` taps are shifted views of the padded image. The minimum and
maximum are separable (a row pass, then a column pass of elementwise ``minimum``/``maximum``).
The median sorts the taps with Batcher's odd-even merge network of elementwise ``minimum`` and
``maximum``, pruned to the compare-exchanges the middle element depends on; the mode sorts them
fully and scans the runs. The work goes in bands of rows, so the ``size * size`` sorted copies
exist for one band at a time, never for the whole stack.
"""

from __future__ import annotations

import functools

import torch

from kernels._checks import check_images
from kernels.parallel import map_pieces, split

#: The window sizes accepted, and the rank filters' kinds.
RANK_SIZES = (3, 5, 7, 9)
RANK_KINDS = ("median", "min", "max")

#: Tap elements (band pixels times size * size) in one band: per plane on the CPU (the band's
#: sorted copies stay in cache), over the whole batch elsewhere (CUDA: bounded memory, few launches).
CPU_BAND_ELEMENTS = 1 << 19
BAND_ELEMENTS = 1 << 26


@functools.cache
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort network for ``n`` items: compare-exchanges ``(i, j)``, i < j."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


@functools.cache
def _network_for(n: int, wanted: int | None) -> tuple[tuple[int, int], ...]:
    """The sorting network for ``n`` items; with ``wanted``, only the compare-exchanges that the
    item at that sorted position depends on."""
    pairs = _batcher_pairs(n)
    if wanted is None:
        return pairs
    needed, kept = {wanted}, []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            kept.append((i, j))
            needed.update((i, j))
    return tuple(reversed(kept))


def _sort_taps(taps: list[torch.Tensor], wanted: int | None) -> list[torch.Tensor]:
    """The taps (equal-shaped tensors) sorted elementwise, ascending, by the network."""
    items = list(taps)
    for i, j in _network_for(len(items), wanted):
        a, b = items[i], items[j]
        items[i], items[j] = torch.minimum(a, b), torch.maximum(a, b)
    return items


def _pad_edges(x: torch.Tensor, m: int) -> torch.Tensor:
    """``(P, H, W)`` padded by ``m`` on every side with the edge pixels repeated (ImagingExpand)."""
    h, w = x.shape[-2:]
    rows = torch.arange(-m, h + m, device=x.device).clamp_(0, h - 1)
    cols = torch.arange(-m, w + m, device=x.device).clamp_(0, w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def _taps(padded: torch.Tensor, size: int, rows: int, cols: int) -> list[torch.Tensor]:
    return [padded[:, i : i + rows, j : j + cols] for i in range(size) for j in range(size)]


def _bands(images: torch.Tensor, size: int, per_pixel: int) -> tuple[torch.Tensor, list]:
    """Planes ``(P, H, W)`` and the pieces ``(planes, rows)`` to work through."""
    b, c, h, w = images.shape
    planes = images.reshape(b * c, h, w)
    if images.device.type == "cpu":
        step = max(1, CPU_BAND_ELEMENTS // (w * per_pixel))
        pieces = [(slice(p, p + 1), top) for p in range(b * c) for top in range(0, h, step)]
    else:
        step = max(1, BAND_ELEMENTS // (b * c * w * per_pixel))
        pieces = [(slice(None), top) for top in range(0, h, step)]
    return planes, [(plane, top, min(h, top + step)) for plane, top in pieces]


def _min_max(images: torch.Tensor, size: int, pick) -> torch.Tensor:
    """Separable minimum or maximum over the edge-repeated window, in bands of rows."""
    m = size // 2
    b, c, h, w = images.shape
    planes, pieces = _bands(images, size, size)
    out = torch.empty((b * c, h, w), dtype=torch.uint8, device=images.device)

    def run(part):
        for plane, top, bottom in part:
            lo, hi = max(0, top - m), min(h, bottom + m)
            band = _pad_edges(planes[plane, lo:hi], m)  # rows lo - m .. hi + m (edges repeated)
            # Only the rows top - m .. bottom + m are wanted.
            band = band[:, top - lo : top - lo + bottom - top + 2 * m]
            across = band[..., 0:w]
            for j in range(1, size):
                across = pick(across, band[..., j : j + w])
            result = across[:, 0 : bottom - top]
            for i in range(1, size):
                result = pick(result, across[:, i : i + bottom - top])
            out[plane, top:bottom] = result

    map_pieces(run, split(pieces))
    return out.view(b, c, h, w)


def _median(images: torch.Tensor, size: int) -> torch.Tensor:
    m = size // 2
    b, c, h, w = images.shape
    planes, pieces = _bands(images, size, size * size)
    out = torch.empty((b * c, h, w), dtype=torch.uint8, device=images.device)
    middle = size * size // 2

    def run(part):
        for plane, top, bottom in part:
            lo, hi = max(0, top - m), min(h, bottom + m)
            band = _pad_edges(planes[plane, lo:hi], m)[:, top - lo : top - lo + bottom - top + 2 * m]
            out[plane, top:bottom] = _sort_taps(_taps(band, size, bottom - top, w), middle)[middle]

    map_pieces(run, split(pieces))
    return out.view(b, c, h, w)


def _check_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size not in RANK_SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, RANK_SIZES))}, got {size!r}")
    return size


def rank_filter(images: torch.Tensor, kind: str, size: int) -> torch.Tensor:
    """Pillow's ``MedianFilter(size)``, ``MinFilter(size)`` or ``MaxFilter(size)``.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel alone, alpha included.
        kind: ``"median"``, ``"min"`` or ``"max"``.
        size: the window's side, 3, 5, 7 or 9; edge pixels are repeated to fill it.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.

    Example:
        >>> x = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
        >>> rank_filter(x, "median", 5).shape
        torch.Size([2, 3, 20, 30])
    """
    check_images(images)
    size = _check_size(size)
    if kind not in RANK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RANK_KINDS)}, got {kind!r}")
    if images.shape[0] == 0:
        return images.clone()
    if kind == "median":
        return _median(images, size)
    return _min_max(images, size, torch.minimum if kind == "min" else torch.maximum)


#: Stands for a tap outside the image in :func:`mode_filter`: sorts after every level, never counted.
_OUTSIDE = 256


def mode_filter(images: torch.Tensor, size: int) -> torch.Tensor:
    """Pillow's ``ModeFilter(size)``: the most frequent value of the window (the lowest on ties)
    where it occurs more than twice, else the pixel's own value.

    Args:
        images: uint8 ``(B, C, H, W)``, C in 1..4; every channel alone, alpha included.
        size: the window's side, 3, 5, 7 or 9; only pixels inside the image count.

    Returns:
        A new uint8 ``(B, C, H, W)`` tensor on the input's device.
    """
    check_images(images)
    size = _check_size(size)
    m = size // 2
    b, c, h, w = images.shape
    if b == 0:
        return images.clone()
    planes, pieces = _bands(images, size, 2 * size * size)
    out = torch.empty((b * c, h, w), dtype=torch.uint8, device=images.device)

    def run(part):
        for plane, top, bottom in part:
            lo, hi = max(0, top - m), min(h, bottom + m)
            src = planes[plane, lo:hi]
            band = torch.full((src.shape[0], bottom - top + 2 * m, w + 2 * m), _OUTSIDE, dtype=torch.int16,
                              device=images.device)
            band[:, lo - top + m : hi - top + m, m : m + w] = src
            ordered = _sort_taps(_taps(band, size, bottom - top, w), None)
            best_value, best_count = ordered[0], (ordered[0] < _OUTSIDE).to(torch.int16)
            run_length = torch.ones_like(best_count)
            for previous, value in zip(ordered, ordered[1:]):
                run_length = torch.where(value == previous, run_length + 1, 1)
                better = (run_length > best_count) & (value < _OUTSIDE)
                best_count = torch.where(better, run_length, best_count)
                best_value = torch.where(better, value, best_value)
            centre = planes[plane, top:bottom]
            out[plane, top:bottom] = torch.where(best_count > 2, best_value.to(torch.uint8), centre)

    map_pieces(run, split(pieces))
    return out.view(b, c, h, w)
