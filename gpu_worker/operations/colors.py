"""Colour parameters: the :data:`Color` type of a params model, and its canonical forms.

A colour is ``"#rgb"``, ``"#rrggbb"``, ``"#rrggbbaa"`` or a list of 3 or 4 integers 0..255
(RGB or RGBA; alpha defaults to 255). For an image it means Pillow's
``ImageColor.getcolor(color, mode)``: alpha dropped for L and RGB, the colour's luma for L and LA
(the kernels derive that from ``(r, g, b, a)``: ``kernels.mode_color``). This module defines no
``OPERATION``; the entries that take a colour import it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Union

from pydantic import PlainValidator

#: ``"#rgb"``, ``"#rrggbb"`` or ``"#rrggbbaa"``, hex digits in either case.
HEX_PATTERN = r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"


def _validate(value: Any) -> str:
    """A colour in its canonical form ``"#rrggbbaa"`` (so equal colours give equal plan keys), or
    ValueError with one message for every wrong form (not one per branch of the union)."""
    if isinstance(value, str) and re.fullmatch(HEX_PATTERN, value):
        return to_hex(value)
    if (isinstance(value, list) and len(value) in (3, 4)
            and all(type(v) is int and 0 <= v <= 255 for v in value)):
        return to_hex(value)
    raise ValueError("a colour is '#rgb', '#rrggbb', '#rrggbbaa' or a list of 3 or 4 integers 0-255")


#: A colour parameter: a hex string or a list of 3 or 4 integers 0..255 (JSON: string or array);
#: validated to ``"#rrggbbaa"``.
Color = Annotated[Union[str, list[int]], PlainValidator(_validate, json_schema_input_type=Union[str, list[int]])]

#: The default of colour parameters that fill the area outside an image: transparent black.
TRANSPARENT = "#00000000"


def to_hex(color: str | list[int] | tuple[int, ...]) -> str:
    """A validated colour as ``"#rrggbbaa"`` (lower case; alpha ``ff`` when not given).

    >>> to_hex("#f80"), to_hex([1, 2, 3]), to_hex([255, 0, 0, 128])
    ('#ff8800ff', '#010203ff', '#ff000080')
    """
    if isinstance(color, str):
        digits = color[1:].lower()
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return "#" + (digits if len(digits) == 8 else digits + "ff")
    rgba = tuple(color) if len(color) == 4 else (*color, 255)
    return "#" + "".join(f"{v:02x}" for v in rgba)


def to_rgba(color: str | list[int] | tuple[int, ...]) -> tuple[int, int, int, int]:
    """A validated colour as ``(r, g, b, a)``, ints 0..255 (alpha 255 when not given); kernels
    take it in this form and derive each mode's value as ``ImageColor.getcolor`` does.

    >>> to_rgba("#ff000080"), to_rgba([9, 8, 7])
    ((255, 0, 0, 128), (9, 8, 7, 255))
    """
    digits = to_hex(color)[1:]
    return tuple(int(digits[i : i + 2], 16) for i in range(0, 8, 2))  # type: ignore[return-value]
