"""Hypothesis strategies for an operation's parameters, from its registry entry alone.

``params(entry)`` draws dicts for ``entry.params_model``: two thirds of them one of the entry's
``examples`` with some values perturbed (a number moved, a hex colour's digits redrawn, a list's
numbers moved, a value redrawn from its field or left out), the other third every field drawn on
its own from its annotation (``field_values``). A new operation is drawn from without any change
here. Many draws are refused by the model; callers check which.

``field_values(entry, name)`` follows the field's type: its ``Literal`` choices, booleans,
numbers within its ``Ge``/``Gt``/``Le``/``Lt`` bounds (kept small, so a drawn job runs quickly)
and a few just outside, ``None`` where optional, each member of a union, lists of the lengths the
examples use, and for a field checked by a validator function (colours, gravities) the values
that any entry's examples give fields with that same validator, perturbed, and the shapes of the
validator's JSON input (a string, a list of numbers in the examples' range). Everything is seeded
from the registry: no operation or field is named here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import PlainValidator

from gpu_worker.operations import REGISTRY, Operation
from gpu_worker.operations.resources import ImageResource

#: Longest list drawn element by element; longer ones (a 3D LUT's table) are examples' lists with
#: every number moved by one drawn scale and shift.
LONG_LIST = 32
#: An image resource that is not an image (refused when loaded).
NOT_AN_IMAGE = {"base64": "bm90IGFuIGltYWdl"}
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]+")


# ---------------------------------------------------------------------------------------------
# what the registry's examples say


def _validator(metadata: list) -> Optional[PlainValidator]:
    return next((m for m in metadata if isinstance(m, PlainValidator)), None)


def _validator_id(validator: PlainValidator) -> tuple[str, str]:
    """Fields whose validators share a function (module and qualified name) take the same kind of
    value: colours share one, every gravity another."""
    return validator.func.__module__, validator.func.__qualname__


def _seen_by_validator() -> dict[tuple[str, str], list]:
    found: dict[tuple[str, str], list] = {}
    for entry in REGISTRY.values():
        for name, field in entry.params_model.model_fields.items():
            validator = _validator(field.metadata) or _inner_validator(field.annotation)
            if validator is not None:
                values = found.setdefault(_validator_id(validator), [])
                values += [ex[name] for ex in entry.examples if name in ex and ex[name] not in values]
    return found


def _inner_validator(annotation: Any) -> Optional[PlainValidator]:
    """The validator of an ``Optional[Annotated[..., PlainValidator]]`` field."""
    for arg in get_args(annotation) if get_origin(annotation) is Union else ():
        if get_origin(arg) is Annotated:
            validator = _validator(_annotated_metadata(arg))
            if validator is not None:
                return validator
    return None


def _annotated_metadata(annotation: Any) -> list:
    """The constraints of an ``Annotated[T, ...]``: a FieldInfo's metadata, or the items themselves."""
    found = []
    for extra in get_args(annotation)[1:]:
        found += list(getattr(extra, "metadata", None) or [extra])
    return found


SEEN_BY_VALIDATOR = _seen_by_validator()
#: The image resources the examples use, and one that is not an image.
RESOURCES = [NOT_AN_IMAGE] + [value for entry in REGISTRY.values() for ex in entry.examples
                              for value in ex.values() if isinstance(value, dict)]


# ---------------------------------------------------------------------------------------------
# one value


def _bounds(metadata: list) -> tuple[Optional[float], Optional[float], bool, bool]:
    """(low, high, low_open, high_open) from Ge/Gt/Le/Lt constraints."""
    low = high = None
    low_open = high_open = False
    for m in metadata:
        kind = type(m).__name__
        if kind == "Ge":
            low = m.ge
        elif kind == "Gt":
            low, low_open = m.gt, True
        elif kind == "Le":
            high = m.le
        elif kind == "Lt":
            high, high_open = m.lt, True
    return low, high, low_open, high_open


def _number(kind: type, metadata: list, seen: list) -> st.SearchStrategy:
    """Numbers within the bounds, kept small (the examples' own values too), and just outside."""
    low, high, low_open, high_open = _bounds(metadata)
    numbers = [v for v in seen if type(v) in (int, float)]
    if low is None:
        low = min(numbers, default=-100)
    if high is None:
        high = max(numbers, default=100)
    outside = [low - 1, high + 1]
    options = [st.sampled_from(outside)]
    if kind is int:
        lo = max(int(low) + low_open, -64)
        options.append(st.integers(lo, max(lo, min(int(high) - high_open, 64))))
    else:
        lo = max(low, -4.0)
        hi = max(min(high, 4.0), min(high, lo + 4.0))
        options.append(st.floats(lo, hi, exclude_min=low_open and lo == low, exclude_max=high_open and hi == high))
    if numbers:
        options.append(st.sampled_from(numbers))
    return st.one_of(options)


def _typed(annotation: Any, metadata: list, seen: list) -> st.SearchStrategy:
    """Values of ``annotation`` under ``metadata``'s constraints, seeded by ``seen`` values."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union and type(None) in args:  # optional: None, or a value
        rest = [a for a in args if a is not type(None)]
        return st.none() | _typed(rest[0] if len(rest) == 1 else Union[tuple(rest)], metadata, seen)
    if origin is Annotated:
        return _typed(args[0], metadata + _annotated_metadata(annotation), seen)
    validator = _validator(metadata)
    if validator is not None:  # a value checked by a function: its examples, and its JSON shapes
        pool = SEEN_BY_VALIDATOR.get(_validator_id(validator), []) + seen
        plain = [m for m in metadata if m is not validator]
        options = [_typed(validator.json_schema_input_type, plain, pool)]
        if pool:
            options.append(st.sampled_from(pool).flatmap(perturbed))
        return st.one_of(options)
    if origin is Union:
        return st.one_of([_typed(arg, metadata, [v for v in seen if _fits(v, arg)]) for arg in args])
    if origin is Literal:
        return st.sampled_from(args)
    if annotation is bool:
        return st.booleans()
    if annotation is ImageResource:
        return st.sampled_from(RESOURCES)
    if annotation in (int, float):
        return _number(annotation, metadata, seen)
    if annotation is str:
        strings = [v for v in seen if isinstance(v, str)]
        options = [st.text(max_size=8)]
        if strings:
            options.append(st.sampled_from(strings).flatmap(perturbed))
        return st.one_of(options)
    if origin is list:
        return _list(args[0], metadata, [v for v in seen if isinstance(v, list)])
    raise TypeError(f"no strategy for {annotation!r}: add one to tests/op_params.py")


def _fits(value: Any, annotation: Any) -> bool:
    """Whether an example's ``value`` is of the union member ``annotation`` (an int fits float)."""
    base = get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation
    base = get_origin(base) or base
    if base is float:
        return type(value) in (int, float)
    return isinstance(value, base) if isinstance(base, type) else True


def _list(item: Any, metadata: list, seen: list) -> st.SearchStrategy:
    """Lists of the lengths the examples use (and the shortest and longest allowed, when short),
    items drawn as ``item``; long examples' lists perturbed as a whole."""
    shortest = next((m.min_length for m in metadata if type(m).__name__ == "MinLen"), 0)
    longest = next((m.max_length for m in metadata if type(m).__name__ == "MaxLen"), 4)
    lengths = sorted({len(v) for v in seen if len(v) <= LONG_LIST}
                     | {n for n in (shortest, longest) if n <= LONG_LIST} or {shortest})
    pool = [x for v in seen for x in v]
    items = _typed(item, [], pool)  # an Annotated item brings its own bounds
    options = [st.sampled_from(lengths).flatmap(lambda n: st.lists(items, min_size=n, max_size=n))]
    if seen:
        options.append(st.sampled_from(seen).flatmap(perturbed))
    return st.one_of(options)


# ---------------------------------------------------------------------------------------------
# an example's value, moved a little


def perturbed(value: Any) -> st.SearchStrategy:
    """``value`` moved a little, keeping its type and shape: numbers by a few units or a fraction
    of themselves, a hex colour's digits redrawn, a list's numbers each (or, when long, all by one
    scale and shift); booleans either way; anything else as it is."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        spread = max(3, abs(value) // 2)
        return st.integers(value - spread, value + spread)
    if isinstance(value, float):
        return st.floats(0.5, 1.5).flatmap(lambda scale: st.floats(-0.5, 0.5).map(lambda shift: value * scale + shift))
    if isinstance(value, str) and _HEX_COLOUR.fullmatch(value):
        digits = len(value) - 1
        return st.text("0123456789abcdefABCDEF", min_size=digits, max_size=digits).map(lambda d: "#" + d)
    if isinstance(value, list) and value and all(type(v) in (int, float) for v in value):
        if len(value) > LONG_LIST:
            return st.tuples(st.floats(0.8, 1.2), st.floats(-0.1, 0.1)).map(
                lambda ab: [type(v)(v * ab[0] + ab[1]) if type(v) is float else round(v * ab[0]) for v in value])
        return st.tuples(*[st.just(v) | perturbed(v) for v in value]).map(list)
    return st.just(value)


# ---------------------------------------------------------------------------------------------
# whole parameter dicts


def field_values(entry: Operation, name: str) -> st.SearchStrategy:
    """Values for one field of ``entry``'s params model (see the module docstring)."""
    field = entry.params_model.model_fields[name]
    seen = [ex[name] for ex in entry.examples if name in ex]
    return _typed(field.annotation, list(field.metadata), seen)


def independent(entry: Operation) -> st.SearchStrategy:
    """Each field present or not, drawn on its own."""
    fields = entry.params_model.model_fields
    return st.fixed_dictionaries({}, optional={name: field_values(entry, name) for name in fields})


@st.composite
def from_example(draw, entry: Operation) -> dict:
    """One of the entry's examples, each value kept, perturbed, redrawn or left out, and now and
    then a field it leaves out added."""
    example = draw(st.sampled_from(entry.examples))
    params: dict = {}
    for name, value in example.items():
        action = draw(st.integers(0, 9))
        if action < 5:
            params[name] = value
        elif action < 8:
            params[name] = draw(perturbed(value))
        elif action == 8:
            params[name] = draw(field_values(entry, name))
    absent = [name for name in entry.params_model.model_fields if name not in example]
    if absent and draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(absent))
        params[name] = draw(field_values(entry, name))
    return params


def params(entry: Operation) -> st.SearchStrategy:
    """Parameter dicts for ``entry``: two thirds perturbed examples (fields that must agree, such
    as a LUT's size and table, mostly still do), one third independent fields."""
    return st.one_of(from_example(entry), from_example(entry), independent(entry))
