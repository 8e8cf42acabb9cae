"""``ops.json``: the operations and output settings every image gets, checked before anything is
listed, read or sent.

The file holds either a list of operations (``[{"type": "resize", "params": {...}}, ...]``) or an
object with a batch job's defaults: ``{"operations": [...], "output": {"format": "PNG"},
"analysis": ...}`` (README, "Batch jobs"). It is validated by the worker's own schema and plan
compiler, so a bad parameter is refused here with the worker's message.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gpu_worker.client.s3 import ClientError
from gpu_worker.schema import BATCH_DEFAULT_FIELDS


@dataclass(frozen=True)
class JobSpec:
    """What every item's job carries.

    Attributes:
        defaults: the batch job's fields beside ``images`` (operations, output, analysis).
        extension: the output format's file extension, without the dot ("jpg").
        mime: the output format's MIME type ("image/jpeg").
        digest: a hash of ``defaults``: the manifest's records hold it, so a rerun with other
            operations does not take old results for done.
    """

    defaults: dict[str, Any]
    extension: str
    mime: str
    digest: str

    def output_path(self, relative: str) -> str:
        """Where an item's result goes, relative to DEST: its path with the format's extension."""
        path = PurePosixPath(relative)
        return str(path.with_suffix(f".{self.extension}") if path.suffix else f"{path}.{self.extension}")


def load_spec(path: str) -> JobSpec:
    """Read and validate ``ops.json``; ClientError names the file and the problem."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ClientError(f"--ops {path}: cannot read it: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ClientError(f"--ops {path}: not JSON: {exc}") from None
    return spec_from(data, f"--ops {path}")


def spec_from(data: Any, where: str = "ops") -> JobSpec:
    """A JobSpec from a list of operations or an object of batch defaults; ClientError if bad."""
    from gpu_worker.errors import JobError
    from gpu_worker.formats import output_format
    from gpu_worker.plan import compile_plan
    from gpu_worker.schema import parse_item

    if isinstance(data, list):
        data = {"operations": data}
    if not isinstance(data, dict):
        raise ClientError(f"{where}: must be a list of operations or an object with 'operations', "
                          f"'output', 'analysis'; got {type(data).__name__}")
    extra = sorted(set(data) - set(BATCH_DEFAULT_FIELDS))
    if extra:
        raise ClientError(f"{where}: unknown field {extra[0]!r}; allowed: {', '.join(BATCH_DEFAULT_FIELDS)}")
    try:
        item = parse_item({"image": {"url": "https://example.invalid/a.jpg"}, **data})
        compile_plan(item.operations)
    except JobError as exc:
        raise ClientError(f"{where}: {exc}") from None
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    fmt = output_format(item.output.format)
    return JobSpec(dict(data), fmt.extension, fmt.mime, digest)
