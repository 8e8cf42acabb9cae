"""Stacking same-shaped images into one batch tensor and running a plan on each group.

Images of one shape are stacked into a ``(B, C, H, W)`` tensor and every op runs once on the whole
stack; mixed shapes are grouped by shape. A group larger than ``max_stack_pixels`` is cut into
chunks so one huge batch cannot exhaust device memory, and a chunk that still runs out of CUDA
memory runs again in halving pieces, down to one image, which then runs on the CPU.

After a data-dependent step (``trim``: gpu_worker.plan) each image has a size of its own: the
operations after it bind again per resulting shape (the output-pixel limit checked there), and
images whose results share a shape are stacked again. An image whose later operations are refused
for its new shape gets that error as its result; the others go on.

Images may each have their own plan: those whose plans differ only in per-sample parameters
(brightness 1.1 and 1.2) stack together, each per-sample step one call with every image's own
values (gpu_worker.per_sample); the CPU runs each image with its own plan.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Iterator, NamedTuple, Sequence, Union

import torch

from gpu_worker import per_sample
from gpu_worker.cpu_pool import ONE_BY_ONE, ImagePool
from gpu_worker.errors import JobError
from gpu_worker.plan import BoundPlan, Plan

#: One image's result: uint8 ``(C, H, W)``, or the error that refused it (only after a
#: data-dependent step: its later operations bound to its new shape).
Outcome = Union[torch.Tensor, JobError]

log = logging.getLogger(__name__)


class Ran(NamedTuple):
    """Results of running a plan: one output per input (a JobError for an image refused after a
    data-dependent step), and how many images each was stacked with."""

    outputs: list[Outcome]
    stacked: list[int]


def runs_stacked(device: torch.device) -> bool:
    """Whether images on ``device`` run as one stack, one kernel call per step (CUDA: a launch per
    image saved), or one image at a time (the CPU: no launch to save, and one image's
    intermediates stay in cache from step to step, faster than stacked: BENCHMARKS.md)."""
    return device.type != "cpu"


def group_by_shape(images: Sequence[torch.Tensor]) -> dict[tuple[int, ...], list[int]]:
    """Input positions grouped by image shape ``(C, H, W)``, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[tuple(image.shape)].append(index)
    return dict(groups)


def chunks(indices: list[int], pixels_per_image: int, max_stack_pixels: int | None) -> Iterator[list[int]]:
    """Split ``indices`` so each chunk holds at most ``max_stack_pixels`` pixels (at least 1 image)."""
    per_chunk = len(indices) if not max_stack_pixels else max(1, max_stack_pixels // max(1, pixels_per_image))
    for start in range(0, len(indices), max(1, per_chunk)):
        yield indices[start : start + per_chunk]


def run_stack(bound: BoundPlan, batch: torch.Tensor) -> torch.Tensor:
    """Run a bound plan's fixed part (:meth:`BoundPlan.run_fixed`: all of it unless it ends in a
    data-dependent step) on a ``(B, C, H, W)`` stack, surviving CUDA out-of-memory.

    On OOM the stack runs again in pieces of half its size, written into one output tensor, and
    the pieces halve again at each further OOM; a single image that still does not fit runs on
    the CPU and its result is copied back. The output is on the stack's device; only when even
    the result does not fit there does it stay on the host. The device is left usable either way.

    Where the device does not run stacks (:func:`runs_stacked`: the CPU) it runs one image at a time.
    """
    if not runs_stacked(batch.device) and batch.shape[0] > 1:
        return torch.cat([own.run_fixed(image) for own, image in zip(per_sample.each(bound, len(batch)),
                                                                         batch.split(1))])
    result = _unless_oom(lambda: bound.run_fixed(batch))
    if result is not None:
        return result
    count = batch.shape[0]
    if count == 1:
        return _on_the_cpu(bound, batch)
    out = _output(torch.Size((count, *bound.fixed_shape)), batch.device)
    size = count // 2
    log.warning("CUDA out of memory on a batch of %d: running it in pieces of %d", count, size)
    start = 0
    while start < count:
        piece = batch[start : start + size]
        piece_plan = per_sample.part(bound, start, start + len(piece))
        result = _unless_oom(lambda: piece_plan.run_fixed(piece))
        if result is None and size > 1:
            size //= 2
            log.warning("CUDA out of memory on a piece of %d: pieces of %d from image %d on", len(piece), size, start)
            continue
        if result is None:
            log.warning("CUDA out of memory on one %s image: running it on the CPU", tuple(piece.shape[1:]))
            result = piece_plan.run_fixed(piece.cpu())
        out[start : start + len(piece)] = result
        start += len(piece)
        del result
    return out


def _unless_oom(make: Callable[[], torch.Tensor]) -> torch.Tensor | None:
    """``make()``, or None when CUDA runs out of memory.

    The cache is emptied only after the except block: until then the exception's traceback holds
    the failed call's frames, and with them every intermediate tensor it had allocated.
    """
    try:
        return make()
    except torch.cuda.OutOfMemoryError:
        pass
    torch.cuda.empty_cache()
    return None


def _on_the_cpu(bound: BoundPlan, batch: torch.Tensor) -> torch.Tensor:
    """Run a one-image ``batch`` on the CPU; the result goes back to its device if it fits there."""
    log.warning("CUDA out of memory on one %s image: running it on the CPU", tuple(batch.shape[1:]))
    result = bound.run_fixed(batch.cpu())
    moved = _unless_oom(lambda: result.to(batch.device))
    if moved is None:
        log.warning("no room on %s for the %s result: it stays on the host", batch.device, tuple(result.shape))
    return result if moved is None else moved


def _output(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """An empty uint8 tensor on ``device``, or on the host when the device has no room for it."""
    out = _unless_oom(lambda: torch.empty(shape, dtype=torch.uint8, device=device))
    if out is None:
        log.warning("no room on %s for a %s result: it is gathered on the host", device, tuple(shape))
        return torch.empty(shape, dtype=torch.uint8)
    return out


def run_images(bound: BoundPlan, images: Sequence[torch.Tensor], max_stack_pixels: int | None = None,
               pool: ImagePool = ONE_BY_ONE) -> list[Outcome]:
    """Run a bound plan on same-shaped uint8 ``(C, H, W)`` images; one output per image.

    On CUDA they are stacked and run as one ``(B, C, H, W)`` call (:func:`run_stack`). On the CPU
    each runs alone and nothing is stacked: stacking copies every decoded pixel to save kernel
    launches the CPU does not have; several images run at once on ``pool``'s threads
    (:mod:`gpu_worker.cpu_pool`). When the plan ends in a data-dependent step, that step runs once
    on the whole stack and the operations after it run as their own plan (:func:`run_plan_counted`,
    ``max_stack_pixels`` per stack), so an output may be a JobError (see :data:`Outcome`).
    """
    if runs_stacked(images[0].device):
        return run_stacked(bound, images, max_stack_pixels, pool)
    own = per_sample.each(bound, len(images))  # each image's own plan: its values as numbers
    if bound.rest is None:
        return pool.map(lambda i: own[i].run_fixed(images[i].unsqueeze(0))[0], range(len(images)))
    pieces = pool.map(lambda i: own[i].split(own[i].run_fixed(images[i].unsqueeze(0)))[0], range(len(images)))
    return run_plan_counted(bound.rests(len(images)), pieces, max_stack_pixels, pool).outputs


def run_stacked(bound: BoundPlan, images: Sequence[torch.Tensor], max_stack_pixels: int | None = None,
                pool: ImagePool = ONE_BY_ONE) -> list[Outcome]:
    """:func:`run_images` as it runs on CUDA, on any device: the images stacked, one call per op
    (:func:`run_stack`), a data-dependent step once on the whole stack, equal shapes after it
    stacked again (on the CPU that second stage runs image by image)."""
    stack = torch.stack(list(images)) if len(images) > 1 else images[0].unsqueeze(0)
    out = run_stack(bound, stack)
    if bound.rest is None:
        return list(out.unbind(0))
    return run_plan_counted(bound.rests(len(images)), _split(bound, out), max_stack_pixels, pool).outputs


def _split(bound: BoundPlan, stack: torch.Tensor) -> list[torch.Tensor]:
    """The data-dependent step on a whole stack (one call); image by image when that runs out
    of CUDA memory."""
    pieces = _unless_oom(lambda: bound.split(stack))
    if pieces is not None:
        return pieces
    log.warning("CUDA out of memory in %s on a stack of %d: image by image", bound.steps[-1].name, len(stack))
    return [per_sample.part(bound, i, i + 1).split(image)[0] for i, image in enumerate(stack.split(1))]


def run_plan_counted(plan: Plan | Sequence[Plan], images: Sequence[torch.Tensor],
                     max_stack_pixels: int | None = None, pool: ImagePool = ONE_BY_ONE) -> Ran:
    """Run ``plan`` on images ``(C, H, W)`` uint8 (all on one device), batched by shape; on the
    CPU, image by image on ``pool``'s threads (:func:`run_images`).

    ``plan`` is one plan for every image, or one per image: images whose plans differ only in
    per-sample parameters stack together (gpu_worker.per_sample).

    Returns one uint8 ``(C', H', W')`` tensor per input, in input order, on the input's device
    (each a view into its batch's output), and the size of the stack each one ran in. A shape the
    plan cannot bind (a JobError: a crop box outside the image, over the output-pixel limit) gives
    that error as the output of each image of that shape.
    """
    plans = [plan] * len(images) if isinstance(plan, Plan) else list(plan)
    if len(plans) != len(images):
        raise ValueError(f"{len(plans)} plans for {len(images)} images")
    outputs: list[Outcome | None] = [None] * len(images)
    stacked = [0] * len(images)
    for shape, indices in group_by_shape(images).items():
        for members, bounds in per_sample.stackable(plans, indices, shape):
            if isinstance(bounds, JobError):
                for i in members:
                    outputs[i], stacked[i] = bounds, 1
                continue
            own = dict(zip(members, bounds))
            for chunk in chunks(members, shape[1] * shape[2], max_stack_pixels):
                bound = per_sample.merge([own[i] for i in chunk])
                for i, image in zip(chunk, run_images(bound, [images[i] for i in chunk], max_stack_pixels, pool)):
                    outputs[i], stacked[i] = image, len(chunk)
    return Ran(outputs, stacked)  # type: ignore[arg-type]


def run_plan(plan: Plan | Sequence[Plan], images: Sequence[torch.Tensor],
             max_stack_pixels: int | None = None) -> list[torch.Tensor]:
    """:func:`run_plan_counted` without the stack sizes; raises the first image's error, if any."""
    outputs = run_plan_counted(plan, images, max_stack_pixels).outputs
    for out in outputs:
        if isinstance(out, JobError):
            raise out
    return outputs  # type: ignore[return-value]
