"""How a CPU kernel spreads independent pieces of its work over threads: a plain loop by default.

A kernel cut into pieces that write disjoint parts of its output hands them to
:func:`map_pieces`, which runs them through the calling context's ``piece_map``
(:mod:`kernels.context`). By default there is none: the pieces run one after another in the
calling thread and torch's own intra-op threads do what parallel work there is. The worker runs its
jobs on the CPU with its image pool's map (``gpu_worker.cpu_pool``), so that a single image is
spread over the cores without torch's threads, which stall each other when one core is busy; a
call from inside that pool runs the pieces inline, since its threads are busy with other images
already.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence, TypeVar

import torch

from kernels import context

T = TypeVar("T")
R = TypeVar("R")

#: Pieces a kernel cuts its work into when the context has a piece map: a few per core, so a core
#: that is busy elsewhere takes fewer of them.
PIECES = 4


def map_pieces(work: Callable[[T], R], pieces: Iterable[T]) -> list[R]:
    """``[work(piece) for piece in pieces]`` through the context's piece map, if any."""
    piece_map = context.current().piece_map
    if piece_map is None:
        return [work(piece) for piece in pieces]
    return piece_map(work, pieces)


def split(items: Sequence[T]) -> list[Sequence[T]]:
    """``items`` in contiguous runs: :data:`PIECES` of them when the context has a piece map,
    else one."""
    parts = PIECES if context.current().piece_map is not None else 1
    size = -(-len(items) // parts) if items else 1
    return [items[start : start + size] for start in range(0, len(items), size)]


def row_blocks(images: torch.Tensor, cpu_pixels: int, device_pixels: int) -> tuple[int, list[tuple[int, int]]]:
    """Blocks of whole rows of a ``(B, C, H, W)`` batch of about ``cpu_pixels`` (on the CPU) or
    ``device_pixels`` (elsewhere) pixels each: ``(rows per block, [(image, first row), ...])``,
    image by image, for :func:`map_pieces` over :func:`split` of the list."""
    batch, _, height, width = images.shape
    limit = cpu_pixels if images.device.type == "cpu" else device_pixels
    rows = max(1, min(height, limit // max(1, width)))
    return rows, [(i, r0) for i in range(batch) for r0 in range(0, height, rows)]
