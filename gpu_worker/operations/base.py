"""What a registry entry is: :class:`Operation`, its parameters' base model, and :class:`Step`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

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
    """

    name: str
    in_shape: ImageShape
    out_shape: ImageShape
    kernel: Callable[[torch.Tensor], Any]
    data_dependent: bool = False


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
    """

    name: str
    summary: str
    params_model: type[OpParams]
    bind: Callable[[Any, ImageShape], Optional[Step]]
    reference: Callable[[Image.Image, Any], Image.Image]
    tolerance: int
    examples: tuple[dict[str, Any], ...]

    @property
    def parameter_names(self) -> list[str]:
        return sorted(self.params_model.model_fields)
