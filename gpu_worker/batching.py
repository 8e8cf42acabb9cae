"""Stacking same-shaped images into one batch tensor and running a plan on each group.

Images of one shape are stacked into a ``(B, C, H, W)`` tensor and every op runs once on the whole
stack; mixed shapes are grouped by shape. A group larger than ``max_batch_pixels`` is cut into
chunks so one huge batch cannot exhaust device memory, and a chunk that still runs out of CUDA
memory is split in half and retried, down to one image, which then runs on the CPU.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Iterator, NamedTuple, Sequence

import torch

from gpu_worker.cpu_pool import map_images
from gpu_worker.plan import BoundPlan, Plan

log = logging.getLogger(__name__)


class Ran(NamedTuple):
    """Results of running a plan: one output per input, and how many images each was stacked with."""

    outputs: list[torch.Tensor]
    stacked: list[int]


def group_by_shape(images: Sequence[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Input positions grouped by image shape ``(C, H, W)``, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[tuple(image.shape)].append(index)
    return dict(groups)


def chunks(indices: list[int], pixels_per_image: int, max_batch_pixels: int | None) -> Iterator[list[int]]:
    """Split ``indices`` so each chunk holds at most ``max_batch_pixels`` pixels (at least 1 image)."""
    per_chunk = len(indices) if not max_batch_pixels else max(1, max_batch_pixels // max(1, pixels_per_image))
    for start in range(0, len(indices), max(1, per_chunk)):
        yield indices[start : start + per_chunk]


def run_stack(bound: BoundPlan, batch: torch.Tensor) -> torch.Tensor:
    """Run a bound plan on a ``(B, C, H, W)`` stack, surviving CUDA out-of-memory.

    On OOM the stack is split in half and each half retried; a single image that still does not
    fit runs on the CPU and its result is moved back. The device is left usable either way.

    On the CPU the stack runs one image at a time: there is no kernel launch to save, and one
    image's intermediates stay in cache from op to op (the reference job at 1080p measured 31 ms
    per image that way against 44 ms stacked, one thread; with two threads on a busy machine
    stacked ops were 100x slower still).
    """
    if batch.device.type == "cpu" and batch.shape[0] > 1:
        return torch.cat([bound(image) for image in batch.split(1)])
    try:
        return bound(batch)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if batch.shape[0] > 1:
            half = batch.shape[0] // 2
            log.warning("CUDA out of memory on a batch of %d: retrying as %d + %d", batch.shape[0], half,
                        batch.shape[0] - half)
            return torch.cat([run_stack(bound, batch[:half]), run_stack(bound, batch[half:])])
        log.warning("CUDA out of memory on one %s image: running it on the CPU", tuple(batch.shape[1:]))
        return bound(batch.cpu()).to(batch.device)


def run_images(bound: BoundPlan, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Run a bound plan on same-shaped uint8 ``(C, H, W)`` images; one output per image.

    On CUDA they are stacked and run as one ``(B, C, H, W)`` call (:func:`run_stack`). On the CPU
    each runs alone and nothing is stacked: stacking copies every decoded pixel (6.8 ms per 1080p
    image measured) to save kernel launches the CPU does not have; several images run at once
    when the worker set up :mod:`gpu_worker.cpu_pool`.
    """
    if images[0].device.type == "cpu":
        return map_images(lambda image: bound(image.unsqueeze(0))[0], images)
    stack = torch.stack(list(images)) if len(images) > 1 else images[0].unsqueeze(0)
    return list(run_stack(bound, stack).unbind(0))


def run_plan_counted(plan: Plan, images: Sequence[torch.Tensor], max_batch_pixels: int | None = None) -> Ran:
    """Run ``plan`` on images ``(C, H, W)`` uint8 (all on one device), batched by shape.

    Returns one uint8 ``(C', H', W')`` tensor per input, in input order, on the input's device
    (each a view into its batch's output), and the size of the stack each one ran in.
    """
    outputs: list[torch.Tensor | None] = [None] * len(images)
    stacked = [0] * len(images)
    for shape, indices in group_by_shape(images).items():
        bound = plan.bind(shape)
        for chunk in chunks(indices, shape[1] * shape[2], max_batch_pixels):
            for i, image in zip(chunk, run_images(bound, [images[i] for i in chunk])):
                outputs[i], stacked[i] = image, len(chunk)
    return Ran(outputs, stacked)  # type: ignore[arg-type]


def run_plan(plan: Plan, images: Sequence[torch.Tensor], max_batch_pixels: int | None = None) -> list[torch.Tensor]:
    """:func:`run_plan_counted` without the stack sizes."""
    return run_plan_counted(plan, images, max_batch_pixels).outputs
