"""Per-sample parameters: images whose plans differ only in them run as one stack.

An operation names the parameters whose values may differ within a stack
(:attr:`~gpu_worker.operations.Operation.per_sample`: ``adjust``'s factors, ``gamma``'s value, a
crop box's position). Plans that differ only in those have equal
:attr:`~gpu_worker.plan.Plan.stack_key`\\ s; bound to one shape, they can run as one stack when
their steps also line up: the same steps from the same operations, with the same shapes, and
each per-sample step with the same kernel and fixed arguments (:func:`signature`). Then
:func:`merge` makes one :class:`~gpu_worker.plan.BoundPlan` for the stack whose per-sample steps
take each image's values as a ``(B,)`` or ``(B, k)`` tensor, as Kornia's batched factors do: one
kernel call per step, each image with the arithmetic it gets alone.

Values that make a step the identity (``gamma`` 1, ``posterize`` 8 bits, a crop of the whole
image) bind to no step at all; such an image's steps do not line up with the others' and it runs
in a stack of its own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Hashable, Sequence, Union

import torch

from gpu_worker.errors import JobError
from gpu_worker.operations import ImageShape, Step
from gpu_worker.plan import BoundPlan, Plan

#: Images (positions in the caller's list) that may share stacks, with their bound plans, in the
#: same order; or the error that refused their plan for that shape.
Stackable = tuple[list[int], Union[list[BoundPlan], JobError]]


def signature(plan: Plan, bound: BoundPlan) -> Hashable:
    """What must be equal for bound plans to run as one stack: the plan's stack key, the input
    shape, and each step's origin, name, shapes and per-sample kernel, fixed arguments and value
    names. (Two plans with equal stack keys have equal non-per-sample parameters, so steps with
    the same origin and input shape and no per-sample values are the same call.)"""
    steps = tuple(
        (origin, step.name, step.in_shape, step.out_shape, step.data_dependent,
         None if step.per_sample is None else (step.per_sample.kernel, step.per_sample.fixed, step.per_sample.names))
        for origin, step in zip(bound.origins, bound.steps))
    return plan.stack_key, bound.in_shape, bound.out_shape, steps


def stackable(plans: Sequence[Plan], indices: Sequence[int], shape: ImageShape) -> list[Stackable]:
    """``indices`` (images of ``shape``; image i's plan is ``plans[i]``) grouped into the sets
    that may run as one stack, in first-seen order. A plan that cannot bind to ``shape`` (a
    JobError: a crop box outside the image, over the output-pixel limit) gives its images that
    error instead; images of one such plan share it."""
    groups: dict[Hashable, Stackable] = {}
    for i in indices:
        plan = plans[i]
        try:
            bound = plan.bind(shape)
        except JobError as exc:
            groups.setdefault(("refused", plan.key), ([], exc))[0].append(i)
            continue
        found = groups.setdefault(signature(plan, bound), ([], []))
        found[0].append(i)
        found[1].append(bound)  # type: ignore[union-attr]
    return list(groups.values())


def merge(bounds: Sequence[BoundPlan]) -> BoundPlan:
    """One bound plan for a stack of ``len(bounds)`` images, image i's own plan ``bounds[i]``.

    The bound plans must have equal :func:`signature`\\ s. When every per-sample value is the
    same for all (equal plans), that is ``bounds[0]`` itself; else each per-sample step becomes
    one call with the images' values as tensors, and the result keeps ``bounds`` as its
    ``parts`` (:func:`part` takes pieces of it again).
    """
    first = bounds[0]
    if len(bounds) == 1 or all(_same_values(b, first) for b in bounds[1:]):
        return first
    if any(len(b.steps) != len(first.steps) for b in bounds):
        raise ValueError("only bound plans with equal signatures merge")
    steps = tuple(_merge_steps([b.steps[i] for b in bounds]) for i in range(len(first.steps)))
    return dataclasses.replace(first, steps=steps, parts=tuple(bounds))


def part(bound: BoundPlan, start: int, stop: int) -> BoundPlan:
    """The bound plan for images ``start:stop`` of ``bound``'s stack (itself when it is the same
    for every image)."""
    return merge(bound.parts[start:stop]) if bound.parts else bound


def each(bound: BoundPlan, count: int) -> list[BoundPlan]:
    """Each of ``count`` images' own bound plan, in stack order (the CPU runs them one by one)."""
    return list(bound.parts) if bound.parts else [bound] * count


def _same_values(a: BoundPlan, b: BoundPlan) -> bool:
    return all(x is y or x.per_sample is None or x.per_sample.values == y.per_sample.values
               for x, y in zip(a.steps, b.steps))


def _merge_steps(steps: Sequence[Step]) -> Step:
    """One step running every image's own values (steps with equal signatures)."""
    first = steps[0]
    sample = first.per_sample
    if sample is None or all(s.per_sample.values == sample.values for s in steps[1:]):
        return first
    columns = {name: _column([dict(s.per_sample.values)[name] for s in steps]) for name in sample.names}
    return dataclasses.replace(first, kernel=functools.partial(sample.kernel, **dict(sample.fixed), **columns))


def _column(values: list) -> torch.Tensor:
    """B values (numbers, or tuples of k numbers) as a host tensor ``(B,)`` or ``(B, k)``: int64
    when all are ints, else float64 (a Python float's exact value)."""
    flat = [v for value in values for v in (value if isinstance(value, tuple) else (value,))]
    dtype = torch.int64 if all(isinstance(v, int) and not isinstance(v, bool) for v in flat) else torch.float64
    return torch.tensor(values, dtype=dtype)
