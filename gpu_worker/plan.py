"""The op compiler: a job's list of operations -> a validated :class:`Plan`.

Compiling validates every operation once (a bad one is refused with a message that names it and
lists what is allowed). A plan is shape-independent; :meth:`Plan.bind` fixes it to an input shape
``(C, H, W)`` and gives the kernels to run and the output shape, before any pixel is touched.
Bound plans are cached per shape, so a batch of same-shaped images binds once.

An operation whose output size depends on the pixels (``trim``) ends the bound plan: the
operations after it bind again to each image's shape once it has run, and the output-pixel limit
is checked at every bind, those later ones included.

Plans that differ only in per-sample parameters (:attr:`Operation.per_sample`: brightness 1.1 and
1.2) share a :attr:`Plan.stack_key`; gpu_worker.per_sample merges their bound plans into one that
runs a stack of such images in one call per step.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from pydantic import ValidationError

from gpu_worker.errors import InvalidInput, LimitExceeded
from gpu_worker.operations import REGISTRY, ImageShape, OpParams, Operation, Step
from gpu_worker.operations.resources import ImageResource, LoadedImage
from gpu_worker.validation import describe, short


@dataclass(frozen=True)
class BoundPlan:
    """A plan fixed to one input shape: run it on ``(B, *in_shape)`` uint8 batches.

    When an operation's output size depends on the pixels (a ``data_dependent`` step, such as
    ``trim``), binding stops after it: that step is the last of ``steps``, ``out_shape`` is the
    largest its results can be, and ``rest`` holds the operations after it, to be bound to each
    result's shape once it has run (:mod:`gpu_worker.stacking` does that, stacking equal shapes
    again). Otherwise ``rest`` is None and ``out_shape`` is the result's shape.

    A plan bound for a stack of images with their own per-sample values
    (:func:`gpu_worker.per_sample.merge`) holds each image's own bound plan in ``parts``, in
    stack order: its steps take exactly ``len(parts)`` images, and image i's operations after a
    data-dependent step are ``parts[i].rest``. ``origins`` gives, for each step, the position in
    the plan of the operation it comes from.
    """

    in_shape: ImageShape
    out_shape: ImageShape
    steps: tuple[Step, ...]
    rest: Optional["Plan"] = None
    origins: tuple[int, ...] = ()
    parts: tuple["BoundPlan", ...] = ()

    @property
    def shape_known(self) -> bool:
        """Whether ``out_shape`` is the result's shape (no data-dependent step)."""
        return self.rest is None

    @property
    def fixed_shape(self) -> ImageShape:
        """(C, H, W) of :meth:`run_fixed`'s result: ``out_shape``, or what the data-dependent step receives."""
        return self.out_shape if self.rest is None else self.steps[-1].in_shape

    def run_fixed(self, batch: torch.Tensor) -> torch.Tensor:
        """Every step but a data-dependent last one, on the whole batch: one kernel call per op.

        Args:
            batch: uint8 ``(B, *in_shape)`` on any device.
        Returns:
            uint8 ``(B, C', H', W')`` on the same device: the result when :attr:`shape_known`,
            else what the data-dependent step receives.
        """
        if tuple(batch.shape[1:]) != self.in_shape:
            raise ValueError(f"plan was bound to shape {self.in_shape}, got a batch of {tuple(batch.shape[1:])}")
        if self.parts and batch.shape[0] != len(self.parts):
            raise ValueError(f"plan was bound to a stack of {len(self.parts)} images with their own parameters, "
                             f"got a batch of {batch.shape[0]}")
        for step in self.steps if self.rest is None else self.steps[:-1]:
            batch = step.kernel(batch)
        return batch

    def split(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """The data-dependent last step on :meth:`run_fixed`'s result: B uint8 ``(C', H_i, W_i)``."""
        return list(self.steps[-1].kernel(batch))

    def __call__(self, batch: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        """Run the plan on a ``(B, *in_shape)`` uint8 batch.

        Returns:
            uint8 ``(B, *out_shape)`` when :attr:`shape_known`; else a list of B uint8
            ``(C, H_i, W_i)`` results, the operations after the data-dependent step run image by
            image (:func:`gpu_worker.stacking.run_plan` stacks equal shapes instead).
        """
        out = self.run_fixed(batch)
        if self.rest is None:
            return out
        return [rest.bind(tuple(piece.shape))(piece.unsqueeze(0))[0]
                for rest, piece in zip(self.rests(len(out)), self.split(out))]

    def rests(self, count: int) -> list["Plan"]:
        """The operations after the data-dependent step for each of ``count`` images of a stack."""
        return [part.rest for part in self.parts] if self.parts else [self.rest] * count


class Plan:
    """Validated operations, ready to bind to input shapes.

    >>> plan = compile_plan([{"type": "resize", "params": {"width": 800}}])
    >>> plan.output_shape((3, 1080, 1920))
    (3, 450, 800)
    """

    def __init__(self, ops: Sequence[tuple[Operation, OpParams]], max_output_pixels: int | None = None,
                 first_index: int = 0):
        """``max_output_pixels``: the most pixels any step may make (None: no limit), checked at
        every bind; ``first_index``: the position of ``ops[0]`` in the job's list (messages name
        it; the operations after a data-dependent step are a plan of their own)."""
        self.ops = tuple(ops)
        self.max_output_pixels = max_output_pixels
        self.first_index = first_index
        self._bind = functools.lru_cache(maxsize=64)(self._bind_uncached)

    def bind(self, shape: ImageShape) -> BoundPlan:
        """The plan's steps for an input of ``shape`` = (C, H, W). Raises InvalidInput when an op
        cannot apply to that shape (a crop box with no area, say), and LimitExceeded when a step
        would make more than ``max_output_pixels`` pixels."""
        return self._bind(tuple(int(v) for v in shape))

    def output_shape(self, shape: ImageShape) -> ImageShape:
        """(C, H, W) of the result for an input of ``shape``, computed without touching pixels.
        Raises ValueError when the plan has a data-dependent operation (``trim``): its result's
        size is known only after it runs."""
        bound = self.bind(shape)
        if not bound.shape_known:
            raise ValueError(f"the result's size is known only after running the plan: operation "
                             f"{bound.steps[-1].name!r}'s output size depends on the pixels")
        return bound.out_shape

    def resources(self) -> list[tuple[str, ImageResource]]:
        """Every resource parameter (an image the intake fetches: overlay's ``image``) with the
        job field that names it, e.g. ``("operations[2] (overlay).params.image", resource)``."""
        return [(f"operations[{self.first_index + offset}] ({op.name}).params.{name}", value)
                for offset, (op, params) in enumerate(self.ops)
                for name in type(params).model_fields
                if isinstance(value := getattr(params, name), ImageResource)]

    def with_resources(self, loaded: Mapping[ImageResource, LoadedImage]) -> "Plan":
        """This plan with each resource parameter holding its decoded image from ``loaded``
        (keyed by the resource as the job gave it); its key names each image by its digest."""
        ops = []
        for op, params in self.ops:
            update = {name: value.loaded(loaded[value]) for name in type(params).model_fields
                      if isinstance(value := getattr(params, name), ImageResource)}
            ops.append((op, params.model_copy(update=update) if update else params))
        return Plan(ops, self.max_output_pixels, self.first_index)

    @functools.cached_property
    def key(self) -> str:
        """Canonical JSON of the operations with defaults filled in: equal keys, equal results."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def stack_key(self) -> str:
        """:attr:`key` with the value of each per-sample parameter (:attr:`Operation.per_sample`)
        that is set replaced by ``"*"`` (one left unset stays null): plans that differ only in
        such values have equal stack keys, and may run as one stack (gpu_worker.per_sample)."""
        ops = [{"type": op.name, "params": {name: "*" if name in op.per_sample and value is not None else value
                                            for name, value in params.model_dump().items()}}
               for op, params in self.ops]
        return json.dumps(ops, sort_keys=True, separators=(",", ":"))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"type": op.name, "params": params.model_dump()} for op, params in self.ops]

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Plan({self.key})"

    def _bind_uncached(self, shape: ImageShape) -> BoundPlan:
        steps, origins = [], []
        current = shape
        for offset, (op, params) in enumerate(self.ops):
            index = self.first_index + offset
            try:
                step = op.bind(params, current)
            except InvalidInput as exc:
                raise InvalidInput(f"operations[{index}] ({op.name}): {exc}") from None
            if step is None:
                continue
            if op.per_sample and step.per_sample is None:
                raise TypeError(f"operation {op.name!r} declares per-sample parameters {op.per_sample} but its bind "
                                f"returned a Step without per_sample (make it with per_sample_step)")
            self._check_pixels(step.out_shape)
            steps.append(step)
            origins.append(offset)
            current = step.out_shape
            if step.data_dependent:
                rest = Plan(self.ops[offset + 1 :], self.max_output_pixels, index + 1)
                return BoundPlan(shape, current, tuple(steps), rest, tuple(origins))
        return BoundPlan(shape, current, tuple(steps), origins=tuple(origins))

    def _check_pixels(self, shape: ImageShape) -> None:
        pixels = shape[1] * shape[2]
        if self.max_output_pixels is not None and pixels > self.max_output_pixels:
            raise LimitExceeded(
                f"the operations would make a {shape[2]}x{shape[1]} image ({pixels:,} pixels), over "
                f"the output-pixel limit MAX_OUTPUT_PIXELS={self.max_output_pixels:,}")


def compile_plan(operations: Iterable[Any], max_operations: int | None = None,
                 max_output_pixels: int | None = None) -> Plan:
    """Validate a job's ``operations`` (JSON form) into a :class:`Plan`.

    Each item is ``{"type": <op name>, "params": {...}}``; ``params`` may be left out when the op
    needs none. Raises :class:`InvalidInput` naming the first bad operation and what is allowed,
    or :class:`LimitExceeded` when there are more than ``max_operations``. ``max_output_pixels``
    is checked whenever the plan binds (:meth:`Plan.bind`).
    """
    if isinstance(operations, (str, bytes, dict)) or not isinstance(operations, Iterable):
        raise InvalidInput(f"operations must be a list of {{'type': ..., 'params': {{...}}}}, got {type(operations).__name__}")
    operations = list(operations)
    if max_operations is not None and len(operations) > max_operations:
        raise LimitExceeded(
            f"operations: {len(operations)} operations is over the limit MAX_OPERATIONS={max_operations} per job"
        )
    return Plan([_compile_one(index, item) for index, item in enumerate(operations)], max_output_pixels)


def _compile_one(index: int, item: Any) -> tuple[Operation, OpParams]:
    where = f"operations[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object like {{'type': 'resize', 'params': {{...}}}}, got {type(item).__name__}")
    extra = sorted(set(item) - {"type", "params"})
    if extra:
        raise InvalidInput(f"{where}: unknown field {short(extra[0])}; allowed: params, type")
    name = item.get("type")
    op = REGISTRY.get(name) if isinstance(name, str) else None
    if op is None:
        got = "missing" if name is None else short(name)
        raise InvalidInput(f"{where}.type: {got} is not an operation; allowed: {', '.join(sorted(REGISTRY))}")
    params = item.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(f"{where}.params must be an object, got {type(params).__name__}")
    try:
        return op, op.params_model.model_validate(params)
    except ValidationError as exc:
        prefix = f"{where} ({op.name}).params"
        raise InvalidInput(describe(exc, prefix, {prefix: op.parameter_names})) from None
