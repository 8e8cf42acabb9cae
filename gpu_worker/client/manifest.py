"""What is done, kept in DEST, so that running the same command again does only what is left.

Records are JSON lines, one per image whose result was written, appended after the result itself
was written (a crash between the two costs that one image again, never a lost result):
``{"source": <relative path>, "output": <path in DEST>, "ops": <JobSpec.digest>, "bytes_in": n,
"bytes_out": n, "at": <unix time>}``. An image is done when a record names it with the same
``ops`` digest: other operations in ops.json make every image new again.

* folder DEST: one append-only file, ``DEST/.gpu-worker-manifest.jsonl`` (flushed and fsync'ed
  after each batch's records); a torn last line (a crash mid-write) is skipped;
* ``s3://`` DEST: objects cannot be appended to, so each batch's records are one new object,
  ``<prefix>.gpu-worker-manifest/<run id>-<n>.jsonl``. Loading reads them all (several at once)
  and, when there are more than one, compacts them: one object with every record is written
  first, then the objects it was read from are deleted, so the next run reads one object. A crash
  in between leaves records twice, which is harmless; objects another run adds meanwhile are not
  among those deleted, and one deleted under this run's feet (another run compacting) is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from gpu_worker.client.s3 import S3Location

FILE_NAME = ".gpu-worker-manifest.jsonl"
S3_FOLDER = ".gpu-worker-manifest/"
#: Manifest objects read at once from a bucket.
S3_READERS = 16
#: Keys per DeleteObjects request (S3's limit).
S3_DELETE_BATCH = 1000


def record(source: str, output: str, digest: str, bytes_in: int, bytes_out: int) -> dict[str, Any]:
    return {"source": source, "output": output, "ops": digest, "bytes_in": bytes_in,
            "bytes_out": bytes_out, "at": round(time.time(), 3)}


def done_sources(records: Iterable[dict[str, Any]], digest: str) -> set[str]:
    """The sources that have a record with this ops digest."""
    return {r["source"] for r in records if r.get("ops") == digest and "source" in r}


def _parse_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line from a crash mid-write
        if isinstance(value, dict):
            out.append(value)
    return out


class FolderManifest:
    """``DEST/.gpu-worker-manifest.jsonl``."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / FILE_NAME
        self._lock = threading.Lock()

    def load(self) -> list[dict[str, Any]]:
        try:
            return _parse_lines(self.path.read_text())
        except FileNotFoundError:
            return []

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())


class S3Manifest:
    """``<prefix>.gpu-worker-manifest/*.jsonl`` objects."""

    def __init__(self, client: Any, where: S3Location) -> None:
        self.client, self.where = client, where
        self.folder = where.key(S3_FOLDER)
        self._run = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()

    def load(self) -> list[dict[str, Any]]:
        """Every record; compacts the objects into one when there are several (module docstring)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.where.bucket, Prefix=self.folder)
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        with ThreadPoolExecutor(max_workers=max(1, min(S3_READERS, len(keys)))) as readers:
            bodies = list(readers.map(self._read, keys))
        read = [key for key, body in zip(keys, bodies) if body is not None]
        out = [record for body in bodies if body is not None for record in _parse_lines(body)]
        if len(read) > 1:
            self._put(out, f"{self.folder}{self._run}-compacted.jsonl")
            for start in range(0, len(read), S3_DELETE_BATCH):
                self.client.delete_objects(Bucket=self.where.bucket, Delete={
                    "Objects": [{"Key": key} for key in read[start : start + S3_DELETE_BATCH]], "Quiet": True})
        return out

    def append(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._put(records, f"{self.folder}{self._run}-{next(self._seq):06d}.jsonl")

    def _read(self, key: str) -> str | None:
        """The object's text; None when it is gone (another run compacted it meanwhile)."""
        try:
            body = self.client.get_object(Bucket=self.where.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body.decode("utf-8", "replace")

    def _put(self, records: list[dict[str, Any]], key: str) -> None:
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        self.client.put_object(Bucket=self.where.bucket, Key=key, Body=body, ContentType="application/x-ndjson")
