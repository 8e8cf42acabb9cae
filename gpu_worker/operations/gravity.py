"""Gravity parameters: where an image goes inside a larger one (or which part of it is kept).

A gravity is one of the names below or ``[x, y]``, fractions 0..1 of the room left over (0: the
left or top edge, 1: the right or bottom edge), as Pillow's ``centering``. This module defines no
``OPERATION``; the entries that take a gravity import it.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import PlainValidator

#: Each named gravity's ``(x, y)`` centering.
GRAVITIES: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "north": (0.5, 0.0), "south": (0.5, 1.0), "east": (1.0, 0.5), "west": (0.0, 0.5),
    "northeast": (1.0, 0.0), "northwest": (0.0, 0.0), "southeast": (1.0, 1.0), "southwest": (0.0, 1.0),
}


def _validator(extra_names: tuple[str, ...]):
    def validate(value: Any) -> Union[str, list[float]]:
        """A name, or ``[x, y]`` as two floats 0..1 (so equal gravities give equal plan keys)."""
        if isinstance(value, str) and (value in GRAVITIES or value in extra_names):
            return value
        if (isinstance(value, list) and len(value) == 2
                and all(type(v) in (int, float) and 0 <= v <= 1 for v in value)):
            return [float(v) for v in value]
        raise ValueError(f"a gravity is one of {', '.join([*GRAVITIES, *extra_names])} or [x, y], two fractions 0-1")
    return validate


def gravity_type(extra_names: tuple[str, ...] = ()) -> Any:
    """A gravity parameter's type (JSON: a string or an array of two numbers) that also takes
    ``extra_names`` (``fit``'s smart crops), which :func:`centering` leaves to the entry."""
    return Annotated[Union[str, list[float]],
                     PlainValidator(_validator(extra_names), json_schema_input_type=Union[str, list[float]])]


#: A gravity parameter: a name of :data:`GRAVITIES` or ``[x, y]``.
Gravity = gravity_type()


def centering(gravity: Union[str, list[float]]) -> tuple[float, float]:
    """A validated gravity as ``(x, y)`` fractions.

    >>> centering("southeast"), centering([0.25, 1.0])
    ((1.0, 1.0), (0.25, 1.0))
    """
    return GRAVITIES[gravity] if isinstance(gravity, str) else (gravity[0], gravity[1])
