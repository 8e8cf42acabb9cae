"""What a registry entry is: :class:`Operation`, its parameters' base model, :class:`Step`, and
:class:`PerSample` (how a step runs on a stack whose images have their own parameter values)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict

#: (channels, height, width) of one image.
ImageShape = tuple[int, int, int]


class OpParams(BaseModel):
    """Base of every op's parameters: unknown names refused, JSON types strict, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Step:
    """One op bound to an input shape: ``kernel(batch)`` maps ``(B, *in_shape)`` to ``(B, *out_shape)``.

    A step whose output size depends on the pixels (``trim``) is marked ``data_dependent``: its
    kernel maps ``(B, *in_shape)`` to a list of B uint8 ``(C', H_i, W_i)`` tensors, one per image,
    and ``out_shape`` is the largest any of them can be (what the limits checked before decoding
    see). The plan binds the operations after such a step again for each image's shape, once it
    has run (gpu_worker.plan, gpu_worker.stacking).

    A step of an operation that declares per-sample parameters (:attr:`Operation.per_sample`)
    carries ``per_sample``: the same kernel call written as a kernel, its fixed arguments and this
    image's own values, so that images whose values differ can run as one stack
    (gpu_worker.per_sample). Make such a step with :func:`per_sample_step`.
    """

    name: str
    in_shape: ImageShape
    out_shape: ImageShape
    kernel: Callable[[torch.Tensor], Any]
    data_dependent: bool = False
    per_sample: Optional["PerSample"] = None


#: One image's value of a per-sample kernel argument: a number, or a tuple of k numbers.
SampleValue = Union[int, float, tuple[Union[int, float], ...]]


@dataclass(frozen=True)
class PerSample:
    """A step's kernel call split into what a stack shares and what each image has of its own.

    ``kernel(batch, **dict(fixed), **dict(values))`` is the step on one image (its
    :attr:`Step.kernel`). On a stack of B images whose steps have the same ``kernel``, equal
    ``fixed`` and the same value names, ``kernel(batch, **dict(fixed), **{name: tensor})`` runs
    every image with its own values in one call: each tensor is on the host, of shape ``(B,)``
    (numbers) or ``(B, k)`` (tuples of k numbers), float64 for floats and int64 for ints, row i
    image i's value. The kernel gives each image the same arithmetic as the call with numbers.

    Attributes:
        kernel: the batched kernel (a module-level function: steps are merged only when their
            kernels are equal).
        fixed: keyword arguments the stack shares, as ``(name, value)`` pairs (hashable: compared
            by ``==`` and hashed into the cross-job batcher's bucket keys).
        values: this image's per-sample keyword arguments, as ``(name, value)`` pairs.
    """

    kernel: Callable[..., torch.Tensor]
    fixed: tuple[tuple[str, Any], ...]
    values: tuple[tuple[str, SampleValue], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The per-sample arguments' names, in order."""
        return tuple(name for name, _ in self.values)


def per_sample_step(name: str, in_shape: ImageShape, out_shape: ImageShape, kernel: Callable[..., torch.Tensor],
                    values: Mapping[str, SampleValue], fixed: Mapping[str, Any] | None = None) -> Step:
    """A :class:`Step` running ``kernel(batch, **fixed, **values)`` whose ``values`` may differ
    from image to image within a stack (see :class:`PerSample`)."""
    fixed = dict(fixed or {})
    sample = PerSample(kernel, tuple(sorted(fixed.items())), tuple(sorted(values.items())))
    return Step(name, in_shape, out_shape, functools.partial(kernel, **fixed, **values), per_sample=sample)


@dataclass(frozen=True)
class Operation:
    """A registry entry: everything about one operation.

    Attributes:
        name: the job's ``type``.
        summary: what it does, in Pillow's terms (the README's operation table shows it).
        params_model: validates the job's ``params`` (a subclass of :class:`OpParams`).
        bind: ``(params, (C, H, W)) -> Step``, or None when the op leaves that shape as it is;
            raises ``InvalidInput`` when the params cannot apply to the shape. A Step marked
            ``data_dependent`` has an output size known only after it runs (see :class:`Step`).
        reference: ``(PIL image, params) -> PIL image`` with Pillow: the oracle the worker's
            pixels are held to (tests, benchmarks' Pillow peer).
        tolerance: largest difference from ``reference`` allowed per pixel, in levels (rtol 0).
        examples: ``params`` dicts that between them cover the op's variants; the generic tests
            run each on real photos in every mode, on every device, batched and alone.
        per_sample: the parameters whose values may differ between the images of one stack (a
            brightness factor; not a blur radius, on which the kernel's shapes depend). Plans
            that differ only in these share a :attr:`~gpu_worker.plan.Plan.stack_key`; ``bind``
            must then return steps made by :func:`per_sample_step`, and the kernel takes each
            such argument as a per-image tensor (:class:`PerSample`). The examples include at
            least two that differ only in these and bind to the same steps.
    """

    name: str
    summary: str
    params_model: type[OpParams]
    bind: Callable[[Any, ImageShape], Optional[Step]]
    reference: Callable[[Image.Image, Any], Image.Image]
    tolerance: int
    examples: tuple[dict[str, Any], ...]
    per_sample: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.per_sample) - set(self.params_model.model_fields))
        if unknown:
            raise ValueError(f"operation {self.name!r}: per_sample names {unknown}, which are not its parameters")

    @property
    def parameter_names(self) -> list[str]:
        return sorted(self.params_model.model_fields)
