"""The op compiler: a job's list of operations -> a validated :class:`Plan`.

Compiling validates every operation once (a bad one is refused with a message that names it and
lists what is allowed). A plan is shape-independent; :meth:`Plan.bind` fixes it to an input shape
``(C, H, W)`` and gives the kernels to run and the output shape, before any pixel is touched.
Bound plans are cached per shape, so a batch of same-shaped images binds once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from pydantic import ValidationError

from gpu_worker.errors import InvalidInput, LimitExceeded
from gpu_worker.operations import REGISTRY, ImageShape, OpParams, Operation, Step
from gpu_worker.validation import describe, short


@dataclass(frozen=True)
class BoundPlan:
    """A plan fixed to one input shape: run it on ``(B, *in_shape)`` uint8 batches."""

    in_shape: ImageShape
    out_shape: ImageShape
    steps: tuple[Step, ...]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Run every step on the whole batch: one kernel call per op.

        Args:
            batch: uint8 ``(B, *in_shape)`` on any device.
        Returns:
            uint8 ``(B, *out_shape)`` on the same device.
        """
        if tuple(batch.shape[1:]) != self.in_shape:
            raise ValueError(f"plan was bound to shape {self.in_shape}, got a batch of {tuple(batch.shape[1:])}")
        for step in self.steps:
            batch = step.kernel(batch)
        return batch


class Plan:
    """Validated operations, ready to bind to input shapes.

    >>> plan = compile_plan([{"type": "resize", "params": {"width": 800}}])
    >>> plan.output_shape((3, 1080, 1920))
    (3, 450, 800)
    """

    def __init__(self, ops: Sequence[tuple[Operation, OpParams]]):
        self.ops = tuple(ops)
        self._bind = functools.lru_cache(maxsize=64)(self._bind_uncached)

    def bind(self, shape: ImageShape) -> BoundPlan:
        """The plan's steps for an input of ``shape`` = (C, H, W). Raises InvalidInput when an op
        cannot apply to that shape (a crop box with no area, say)."""
        return self._bind(tuple(int(v) for v in shape))

    def output_shape(self, shape: ImageShape) -> ImageShape:
        """(C, H, W) of the result for an input of ``shape``, computed without touching pixels."""
        return self.bind(shape).out_shape

    @functools.cached_property
    def key(self) -> str:
        """Canonical JSON of the operations with defaults filled in: equal keys, equal results."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def to_json(self) -> list[dict[str, Any]]:
        return [{"type": op.name, "params": params.model_dump()} for op, params in self.ops]

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"Plan({self.key})"

    def _bind_uncached(self, shape: ImageShape) -> BoundPlan:
        steps = []
        current = shape
        for index, (op, params) in enumerate(self.ops):
            try:
                step = op.bind(params, current)
            except InvalidInput as exc:
                raise InvalidInput(f"operations[{index}] ({op.name}): {exc}") from None
            if step is not None:
                steps.append(step)
                current = step.out_shape
        return BoundPlan(shape, current, tuple(steps))


def compile_plan(operations: Iterable[Any], max_operations: int | None = None) -> Plan:
    """Validate a job's ``operations`` (JSON form) into a :class:`Plan`.

    Each item is ``{"type": <op name>, "params": {...}}``; ``params`` may be left out when the op
    needs none. Raises :class:`InvalidInput` naming the first bad operation and what is allowed,
    or :class:`LimitExceeded` when there are more than ``max_operations``.
    """
    if isinstance(operations, (str, bytes, dict)) or not isinstance(operations, Iterable):
        raise InvalidInput(f"operations must be a list of {{'type': ..., 'params': {{...}}}}, got {type(operations).__name__}")
    operations = list(operations)
    if max_operations is not None and len(operations) > max_operations:
        raise LimitExceeded(
            f"operations: {len(operations)} operations is over the limit MAX_OPERATIONS={max_operations} per job"
        )
    return Plan([_compile_one(index, item) for index, item in enumerate(operations)])


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
