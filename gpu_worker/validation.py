"""Turning pydantic's validation errors into one clear message that names the field."""

from __future__ import annotations

import reprlib

from pydantic import ValidationError


def field_path(prefix: str, loc: tuple) -> str:
    """'operations[2].params' + ('width',) -> 'operations[2].params.width'."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "input"


def describe(error: ValidationError, prefix: str = "", allowed: dict[str, list[str]] | None = None) -> str:
    """One line per problem: '<field>: <what is wrong> (got <value>)'.

    ``allowed`` maps a field path to the names allowed there, added to "extra field" errors so the
    message lists what would have been accepted.
    """
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        if kind == "extra_forbidden":
            parent = field_path(prefix, loc[:-1])
            msg = f"{parent}: unknown field {short(loc[-1])}"
            names = (allowed or {}).get(parent)
            if names:
                msg += f"; allowed: {', '.join(names)}"
        else:
            # Union members add their type name to the location ("function-after[...]"): drop those.
            loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
            text = item["msg"].removeprefix("Value error, ")
            msg = f"{field_path(prefix, loc)}: {text}"
            if kind != "missing" and "input" in item:
                msg += f" (got {short(item['input'])})"
        lines.append(msg)
    return "; ".join(lines)


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 60, 60, 4, 4


def short(value) -> str:
    """repr of a value, cut so that a huge or deeply nested input cannot flood the error message."""
    return _REPR.repr(value)
