"""The README's tables that are made from the code: the operation table, from the registry.

    python -m gpu_worker.docs          # print the table
    python -m gpu_worker.docs --write  # replace the table in README.md

tests/test_operations.py checks that the README holds exactly this table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Literal, Optional, get_args, get_origin

from gpu_worker.operations import REGISTRY

HEADER = "| type | params | meaning (Pillow's) |\n| --- | --- | --- |\n"
README = Path(__file__).resolve().parents[1] / "README.md"


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _number(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() and abs(value) >= 10_000 else f"{value:g}"


def _describe_field(name: str, field) -> str:
    """`` `name` (allowed values or range, default) `` for one parameter."""
    annotation, notes = field.annotation, []
    if get_origin(annotation) is Optional or type(None) in get_args(annotation):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        notes.append(", ".join(_value(v) for v in get_args(annotation)))
    bounds = {type(m).__name__: m for m in field.metadata}
    if "Ge" in bounds and "Le" in bounds:
        notes.append(f"{_number(bounds['Ge'].ge)} to {_number(bounds['Le'].le)}")
    if field.description:
        notes.append(field.description)
    if field.is_required():
        notes.append("required")
    elif field.default is not None:
        notes.append(f"default {_value(field.default)}")
    return f"`{name}`" + (f" ({'; '.join(notes)})" if notes else "")


def operations_table() -> str:
    """The markdown table: one row per registered operation."""
    rows = []
    for name, entry in REGISTRY.items():
        fields = entry.params_model.model_fields
        params = ", ".join(_describe_field(field_name, field) for field_name, field in fields.items())
        rows.append(f"| `{name}` | {params} | {entry.summary} |\n")
    return HEADER + "".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="The README's operation table, from the registry.")
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    if not parser.parse_args().write:
        sys.stdout.write(operations_table())
        return
    text = README.read_text()
    pattern = re.compile(re.escape(HEADER.splitlines()[0]) + r"\n(?:\|.*\|\n)+")
    if not pattern.search(text):
        sys.exit("README.md has no operation table to replace")
    README.write_text(pattern.sub(lambda _: operations_table(), text, count=1))


if __name__ == "__main__":
    main()
