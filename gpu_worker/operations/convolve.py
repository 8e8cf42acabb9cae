"""``convolve``: a user's 3x3 or 5x5 kernel, as Pillow's ``ImageFilter.Kernel`` applies it."""

from __future__ import annotations

import functools
from typing import Annotated, Literal, Optional

from PIL import Image, ImageFilter
from pydantic import Field, model_validator

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step

#: Largest absolute kernel value, scale and offset accepted.
MAX_WEIGHT = 1000.0
MAX_SCALE = 1_000_000.0
MIN_SCALE = 0.001
MAX_OFFSET = 10_000.0

Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]


class ConvolveParams(OpParams):
    """A kernel of ``size * size`` numbers, row by row (Pillow flips it vertically: the first row
    weighs the row below the pixel); each value is ``sum(pixel * weight) / scale + offset``,
    rounded and clipped; the outer ``size // 2`` pixels are kept."""

    size: Optional[Literal[3, 5]] = Field(default=None, description="default: from the kernel's length")
    kernel: list[Weight] = Field(min_length=9, max_length=25, description="9 or 25 numbers, -1,000 to 1,000")
    scale: Optional[float] = Field(default=None, ge=-MAX_SCALE, le=MAX_SCALE,
                                   description="default: the kernel's sum, or 1 if that is 0; not 0")
    offset: float = Field(default=0.0, ge=-MAX_OFFSET, le=MAX_OFFSET)

    @model_validator(mode="after")
    def _consistent(self):
        size = self.size or {9: 3, 25: 5}.get(len(self.kernel))
        if size is None or len(self.kernel) != size * size:
            raise ValueError(f"kernel must have 9 (size 3) or 25 (size 5) numbers"
                             f"{'' if self.size is None else f' (size {self.size}: {self.size ** 2})'}, "
                             f"got {len(self.kernel)}")
        if self.scale is not None and abs(self.scale) < MIN_SCALE:
            raise ValueError(f"scale must be at least {MIN_SCALE} from 0, got {self.scale}")
        return self

    @property
    def kernel_size(self) -> int:
        return 3 if len(self.kernel) == 9 else 5

    @property
    def divisor(self) -> float:
        return (sum(self.kernel) or 1) if self.scale is None else self.scale


def bind(p: ConvolveParams, shape: ImageShape) -> Optional[Step]:
    kernel = functools.partial(kernels.convolve, size=p.kernel_size, kernel=tuple(p.kernel), scale=p.divisor,
                               offset=p.offset)
    return Step("convolve", shape, shape, kernel)


def reference(image: Image.Image, p: ConvolveParams) -> Image.Image:
    size = p.kernel_size
    return image.filter(ImageFilter.Kernel((size, size), p.kernel, p.divisor, p.offset))


OPERATION = Operation(
    name="convolve",
    summary=("`Image.filter(ImageFilter.Kernel((size, size), kernel, scale, offset))`: Pillow's float32 "
             "arithmetic and rounding, the kernel flipped vertically, the border kept, every channel "
             "(alpha too)."),
    params_model=ConvolveParams,
    bind=bind,
    reference=reference,
    tolerance=1,
    examples=(
        {"kernel": [1, 2, 1, 2, 4, 2, 1, 2, 1]},
        {"size": 3, "kernel": [-1, -1, 0, -1, 0, 1, 0, 1, 1], "offset": 128},
        {"size": 5, "kernel": [0.5, 1, 1, 1, 0.5] * 5, "scale": 21.5},
        {"kernel": [-2, -2, -2, -2, 32, -2, -2, -2, -2], "scale": 16},
        {"kernel": [0.1, -0.25, 0.3, 0.7, 1.1, -0.2, 0.05, 0.33, -0.9], "scale": 1.3, "offset": -7.5},
        {"kernel": [1, -1, 0, 0, 0, 0, 0, 0, 0]},
    ),
)
