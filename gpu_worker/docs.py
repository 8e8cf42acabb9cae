"""The README's tables that are made from the code: operations (from the registry), and the
formats read and written (from the formats table).

    python -m gpu_worker.docs          # print the tables
    python -m gpu_worker.docs --write  # replace them in README.md

tests/test_docs.py checks that the README holds exactly these tables.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Literal, Optional, get_args, get_origin

from gpu_worker.formats import OUTPUT_FORMATS, QUALITY_RANGE, REFUSED_SOURCES, SOURCE_FORMATS
from gpu_worker.operations import REGISTRY

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
    """One row per registered operation."""
    rows = ["| type | params | meaning (Pillow's) |\n", "| --- | --- | --- |\n"]
    for name, entry in REGISTRY.items():
        params = ", ".join(_describe_field(n, f) for n, f in entry.params_model.model_fields.items())
        rows.append(f"| `{name}` | {params} | {entry.summary} |\n")
    return "".join(rows)


def formats_table() -> str:
    """One row per output format."""
    rows = ["| format | also accepted | MIME type | extension | largest side | alpha | `quality` | `lossless` | "
            "`speed` | `keep_metadata` keeps | `icc: \"keep\"` embeds | `max_bytes` | animation | encoder |\n",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"]
    low, high = QUALITY_RANGE
    for f in OUTPUT_FORMATS.values():
        aliases = ", ".join(f"`{a}`" for a in f.aliases) or "–"
        speed = f"{f.speed[0]}-{f.speed[1]} (default {f.speed[2]})" if f.speed else "–"
        kept = ", ".join(name.upper() for name in f.metadata) or "nothing"
        rows.append(f"| `{f.name}` | {aliases} | `{f.mime}` | `.{f.extension}` | {f.max_side:,} | {f.alpha} | "
                    f"{f'{low}-{high}' if f.quality else '–'} | {'yes' if f.lossless else '–'} | {speed} | {kept} | "
                    f"{'yes' if f.icc else 'no'} | {'yes' if f.budget else '–'} | {'yes' if f.animation else 'no'} | {f.encoder_notes} |\n")
    return "".join(rows)


def sources_table() -> str:
    """One row per source format read, then one per source refused by name."""
    rows = ["| source | extensions | read | decoder |\n", "| --- | --- | --- | --- |\n"]
    for f in SOURCE_FORMATS:
        extensions = ", ".join(f"`.{e}`" for e in f.extensions)
        rows.append(f"| {f.name} | {extensions} | {f.reads} | {f.decoder} |\n")
    for r in REFUSED_SOURCES:
        rows.append(f"| {r.name} | – | refused, recognised by {r.signature}: {r.reason} | – |\n")
    return "".join(rows)


#: Each generated table, found in the README by its header line.
TABLES: tuple[Callable[[], str], ...] = (operations_table, formats_table, sources_table)


def find_table(text: str, table: str) -> Optional[re.Match]:
    """Where the README holds the table whose header is ``table``'s first line."""
    header = re.escape(table.splitlines()[0])
    return re.search(rf"^{header}\n(?:\|.*\|\n)+", text, re.MULTILINE)


def main() -> None:
    parser = argparse.ArgumentParser(description="The README's generated tables.")
    parser.add_argument("--write", action="store_true", help="replace the tables in README.md")
    tables = [make() for make in TABLES]
    if not parser.parse_args().write:
        sys.stdout.write("\n".join(tables))
        return
    text = README.read_text()
    for table in tables:
        found = find_table(text, table)
        if found is None:
            sys.exit(f"README.md has no table with the header {table.splitlines()[0]!r}")
        text = text[: found.start()] + table + text[found.end():]
    README.write_text(text)


if __name__ == "__main__":
    main()
