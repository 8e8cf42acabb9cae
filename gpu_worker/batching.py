"""Stacking same-shaped images into one batch tensor and running a plan on each group.

Images of one shape are stacked into a ``(B, C, H, W)`` tensor and every op runs once on the whole
stack; mixed shapes are grouped by shape. A group larger than ``max_batch_pixels`` is cut into
chunks so one huge batch cannot exhaust device memory. Results come back in input order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import torch

from gpu_worker.plan import Plan


def group_by_shape(images: Sequence[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Input positions grouped by image shape ``(C, H, W)``, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[tuple(image.shape)].append(index)
    return dict(groups)


def chunks(indices: list[int], pixels_per_image: int, max_batch_pixels: int | None) -> Iterator[list[int]]:
    """Split ``indices`` so each chunk holds at most ``max_batch_pixels`` pixels (at least 1 image)."""
    if not max_batch_pixels:
        yield indices
        return
    per_chunk = max(1, max_batch_pixels // max(1, pixels_per_image))
    for start in range(0, len(indices), per_chunk):
        yield indices[start : start + per_chunk]


def run_plan(plan: Plan, images: Sequence[torch.Tensor], max_batch_pixels: int | None = None) -> list[torch.Tensor]:
    """Run ``plan`` on images ``(C, H, W)`` uint8 (all on one device), batched by shape.

    Returns one uint8 ``(C', H', W')`` tensor per input, in input order, on the input's device.
    Each result is a view into its batch's output; clone it if you keep only a few of many.
    """
    results: list[torch.Tensor | None] = [None] * len(images)
    for shape, indices in group_by_shape(images).items():
        bound = plan.bind(shape)
        for chunk in chunks(indices, shape[1] * shape[2], max_batch_pixels):
            batch = torch.stack([images[i] for i in chunk]) if len(chunk) > 1 else images[chunk[0]].unsqueeze(0)
            out = bound(batch)
            for i, image in zip(chunk, out.unbind(0)):
                results[i] = image
    return results  # type: ignore[return-value]
