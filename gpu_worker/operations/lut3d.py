"""``lut3d``: a colour look-up table, Pillow's ``ImageFilter.Color3DLUT`` (trilinear).

The table comes as the text of an Adobe/Resolve ``.cube`` file (``cube``) or as ``size`` and a flat
``table`` (red fastest, as Pillow takes it). It is parsed and checked here, when the job's
parameters are validated (a malformed ``.cube`` is refused with its line number), and prepared
(Pillow's int16 table, :class:`kernels.Lut3D`) once per parameters object.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Optional

from PIL import Image, ImageFilter
from pydantic import Field, PrivateAttr, field_validator, model_validator

import kernels
from gpu_worker.operations.base import ImageShape, OpParams, Operation, Step
from gpu_worker.operations.tone import on_colour_bands

#: Largest ``.cube`` text accepted, in characters (a 65-point table is about 2.5 MB).
MAX_CUBE_CHARS = 16_000_000
#: Largest absolute table value accepted (Pillow clamps beyond about ±2.008 anyway).
MAX_VALUE = 1_000_000.0
MIN_SIZE, MAX_SIZE = 2, 65

Value = Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE)]


def _number(word: str, n: int) -> float:
    try:
        value = float(word)
    except ValueError:
        raise ValueError(f"line {n}: {word[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > MAX_VALUE:
        raise ValueError(f"line {n}: {word[:40]!r} is not a finite number within ±{MAX_VALUE:g}")
    return value


@functools.lru_cache(maxsize=2)
def parse_cube(text: str) -> tuple[int, tuple[float, ...]]:
    """``(size, flat table)`` from the text of a ``.cube`` file: ``TITLE``, ``LUT_3D_SIZE`` (2-65),
    ``DOMAIN_MIN 0 0 0``, ``DOMAIN_MAX 1 1 1`` and ``LUT_3D_INPUT_RANGE 0 1`` (other domains are
    refused), ``#`` comments and blank lines, then ``size**3`` rows of three numbers, red fastest.
    Raises ValueError naming the line of the first problem."""
    size = None
    rows: list[float] = []
    last = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        last = n
        words = line.split()
        key = words[0].upper()
        if key[0].isalpha() and key not in ("NAN", "INF", "INFINITY"):
            if rows:
                raise ValueError(f"line {n}: keyword {words[0][:40]!r} after the table's rows")
            if key == "TITLE":
                continue
            if key == "LUT_3D_SIZE":
                if len(words) != 2 or not words[1].isdigit():
                    raise ValueError(f"line {n}: LUT_3D_SIZE needs one whole number")
                size = int(words[1])
                if not MIN_SIZE <= size <= MAX_SIZE:
                    raise ValueError(f"line {n}: LUT_3D_SIZE must be {MIN_SIZE} to {MAX_SIZE}, got {size}")
                continue
            expected = {"DOMAIN_MIN": (0.0, 0.0, 0.0), "DOMAIN_MAX": (1.0, 1.0, 1.0),
                        "LUT_3D_INPUT_RANGE": (0.0, 1.0)}.get(key)
            if expected is None:
                if key.startswith("LUT_1D"):
                    raise ValueError(f"line {n}: 1D tables ({words[0][:40]}) are not supported")
                raise ValueError(f"line {n}: unknown keyword {words[0][:40]!r}")
            values = tuple(_number(w, n) for w in words[1:])
            if values != expected:
                raise ValueError(f"line {n}: only {key} {' '.join(f'{v:g}' for v in expected)} is supported")
            continue
        if size is None:
            raise ValueError(f"line {n}: a table row before LUT_3D_SIZE")
        if len(words) != 3:
            raise ValueError(f"line {n}: a table row needs 3 numbers, got {len(words)}")
        if len(rows) == size ** 3 * 3:
            raise ValueError(f"line {n}: more than LUT_3D_SIZE**3 = {size ** 3} rows")
        rows.extend(_number(w, n) for w in words)
    if size is None:
        raise ValueError("no LUT_3D_SIZE line")
    if len(rows) != size ** 3 * 3:
        raise ValueError(f"line {last}: the file ends after {len(rows) // 3} rows; "
                         f"LUT_3D_SIZE {size} needs {size ** 3}")
    return size, tuple(rows)


class Lut3dParams(OpParams):
    """Either ``cube`` or both ``size`` and ``table``. Each pixel's colour indexes the table
    (trilinear); values are 0.0-1.0 for levels 0-255 (outside that, clipped after interpolation)."""

    cube: Optional[str] = Field(default=None, min_length=1, max_length=MAX_CUBE_CHARS,
                                description="the text of a .cube file: LUT_3D_SIZE 2-65, domain 0-1; or size and table")
    size: Optional[int] = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE, description="points per axis, with table")
    table: Optional[list[Value]] = Field(default=None, min_length=3 * MIN_SIZE ** 3, max_length=3 * MAX_SIZE ** 3,
                                         description="size**3 * 3 numbers: R, G, B per point, red fastest")

    _lut: kernels.Lut3D = PrivateAttr()

    @field_validator("cube")
    @classmethod
    def _parse(cls, text: Optional[str]) -> Optional[str]:
        if text is not None:
            parse_cube(text)
        return text

    @model_validator(mode="after")
    def _prepare(self):
        if self.cube is not None:
            if self.size is not None or self.table is not None:
                raise ValueError("give either cube, or size and table, not both")
            size, table = parse_cube(self.cube)
        else:
            if self.size is None or self.table is None:
                raise ValueError("give either cube, or both size and table")
            size, table = self.size, self.table
            if len(table) != size ** 3 * 3:
                raise ValueError(f"table must have size**3 * 3 = {size ** 3 * 3} numbers, got {len(table)}")
        self._lut = kernels.Lut3D.from_floats(size, table)
        return self

    @property
    def lut(self) -> kernels.Lut3D:
        """The prepared table."""
        return self._lut


def bind(p: Lut3dParams, shape: ImageShape) -> Optional[Step]:
    c, h, w = shape
    return Step("lut3d", shape, (4 if c % 2 == 0 else 3, h, w), functools.partial(kernels.lut3d, lut=p.lut))


def reference(image: Image.Image, p: Lut3dParams) -> Image.Image:
    """Pillow's ``Color3DLUT`` on the RGB part (L taken as RGB), alpha put back."""
    size, table = parse_cube(p.cube) if p.cube is not None else (p.size, p.table)
    lut = ImageFilter.Color3DLUT(size, table)
    return on_colour_bands(image, lambda im: im.convert("RGB").filter(lut))


def _table(size: int, f) -> list[float]:
    return [v for b in range(size) for g in range(size) for r in range(size)
            for v in f(r / (size - 1), g / (size - 1), b / (size - 1))]


_CUBE = """# a warm look
TITLE "warm"
LUT_3D_SIZE 2
DOMAIN_MIN 0 0 0
DOMAIN_MAX 1 1 1
0.05 0.02 0.0
1.0 0.1 0.0
0.0 0.9 0.05
1.0 1.0 0.1
0.1 0.0 0.8
1.0 0.0 0.9
0.0 0.95 0.85
1.0 0.97 0.9
"""

OPERATION = Operation(
    name="lut3d",
    summary=("`Image.filter(ImageFilter.Color3DLUT(size, table))` (trilinear, Pillow's fixed-point rounding) with "
             "`size` + `table` or the text of a `.cube` file; L is taken as RGB (L -> RGB, LA -> RGBA), alpha kept."),
    params_model=Lut3dParams,
    bind=bind,
    reference=reference,
    tolerance=0,
    examples=(
        {"size": 2, "table": _table(2, lambda r, g, b: (r, g, b))},
        {"size": 3, "table": _table(3, lambda r, g, b: (b, r, g))},
        {"size": 5, "table": _table(5, lambda r, g, b: tuple(
            round(min(1.2, max(-0.2, 0.5 + 1.6 * (v - 0.5))), 4) for v in (r, g, b)))},
        {"size": 4, "table": _table(4, lambda r, g, b: (0.3 * r + 0.59 * g + 0.11 * b, 0.9 * g, 1.0 - b))},
        {"cube": _CUBE},
    ),
)
