"""The operation registry: one :class:`Operation` entry per operation, one module each.

An operation in a job is JSON such as ``{"type": "resize", "params": {"width": 800}}``. Its
``params`` are validated by the entry's pydantic model (unknown names refused, types strict, NaN
and infinity refused). Binding the params to an input shape ``(C, H, W)`` gives a :class:`Step`:
the kernel with its arguments fixed, and the output shape, known before any pixel is touched.
Each entry also holds its Pillow reference, its tolerance and examples; the job schema, the
``Pipeline``, the generic tests (tests/test_operations.py) and the README's operation table all
follow from the entries.

Adding an operation: write its kernel in ``kernels/``, then one module here that defines
``OPERATION`` (see ``crop.py`` for a short one). Every module in this package that defines
``OPERATION`` is registered, in alphabetical order of its name.
"""

from __future__ import annotations

import importlib
import pkgutil

from gpu_worker.operations.base import ImageShape, OpParams, Operation, PerSample, Step, per_sample_step

__all__ = ["REGISTRY", "ImageShape", "OpParams", "Operation", "PerSample", "Step", "apply_reference",
           "per_sample_step"]


def _discover() -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for module in pkgutil.iter_modules(__path__):
        entry = getattr(importlib.import_module(f"{__name__}.{module.name}"), "OPERATION", None)
        if entry is not None:
            if entry.name in found:
                raise RuntimeError(f"two operations are named {entry.name!r}")
            found[entry.name] = entry
    return dict(sorted(found.items()))


#: op name -> registry entry. The compiler is a lookup in this table.
REGISTRY: dict[str, Operation] = _discover()


def apply_reference(image, operations: list[dict]):
    """A job's ``operations`` (JSON form) applied to a PIL image by each entry's Pillow reference,
    in order: the oracle for the worker's pixels. Resource parameters (overlay's image) are loaded
    as the worker loads them. Raises InvalidInput for operations the worker would refuse."""
    from gpu_worker.plan import compile_plan  # (the plan imports this package)
    from gpu_worker.resources import load_resources

    for op, params in load_resources(compile_plan(operations)).ops:
        image = op.reference(image, params)
    return image
