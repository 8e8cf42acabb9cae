"""How a CPU kernel spreads independent pieces of its work over threads: a plain loop by default.

A kernel cut into pieces that write disjoint parts of its output hands them to
:func:`map_pieces`. Unless a caller installed a map with :func:`set_piece_map`, the pieces run one
after another in the calling thread and torch's own intra-op threads do what parallel work there
is. The worker installs its CPU image pool (``gpu_worker.cpu_pool.map_images``), so that a single
image is spread over the cores without torch's threads, which stall each other when one core is
busy; a call from inside that pool runs the pieces inline, since its threads are busy with other
images already.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

#: Pieces a kernel cuts its work into when a map is installed: a few per core, so a core that is
#: busy elsewhere takes fewer of them.
PIECES = 4

_piece_map: Callable[[Callable[[T], R], Iterable[T]], list[R]] | None = None


def set_piece_map(map_fn: Callable[[Callable[[T], R], Iterable[T]], list[R]] | None) -> None:
    """Install ``map_fn(work, items) -> [work(item) ...]`` (in order) for kernels; None: a loop."""
    global _piece_map
    _piece_map = map_fn


def map_pieces(work: Callable[[T], R], pieces: Iterable[T]) -> list[R]:
    """``[work(piece) for piece in pieces]`` through the installed map, if any."""
    if _piece_map is None:
        return [work(piece) for piece in pieces]
    return _piece_map(work, pieces)


def split(items: Sequence[T]) -> list[Sequence[T]]:
    """``items`` in contiguous runs: :data:`PIECES` of them with a map installed, else one."""
    parts = PIECES if _piece_map is not None else 1
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
