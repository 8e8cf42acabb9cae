"""Items into batch jobs that stay under RunPod's ``run`` body limit.

How each item travels:

* ``url``: a URL source, as its URL (the worker downloads it);
* ``base64``: a file or an S3 object, read by the client and sent inline, while its base64 fits
  in one job's body beside the rest;
* ``stage``: with a staging bucket (``--stage s3://...``), a file or object that does not fit in
  its job's body (its base64 alone, or beside what the job already holds), put in the bucket
  first and sent as a presigned URL, which the worker downloads.

A job holds at most ``batch`` items and, by the sizes the listing gave, at most ``max_body``
bytes of JSON. Without a staging bucket a job ends where the next file's base64 would not fit
(large files make small jobs) and a file whose base64 alone would not fit is refused (reported,
not sent); with one, every job is filled to ``batch`` items, the ones that fit inline and the
rest staged, so each job is a full batch for the worker whatever the files' sizes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from gpu_worker.client.sources import Item
from gpu_worker.server.config import RUN_BODY_LIMIT

#: JSON bytes an item adds besides its data: ``{"image": {"base64": ""}}, `` and the like.
ITEM_OVERHEAD = 64
#: JSON bytes a staged item's presigned URL takes (S3's are about 1 kB with a session token).
STAGED_BYTES = 2048
#: Bytes left free under the body limit for what the estimate does not see (headers are not
#: counted by the limit; this covers the request's own keys and any rounding).
BODY_MARGIN = 16 * 1024


@dataclass
class Batch:
    """One job's items and how each travels ("url", "base64" or "stage")."""

    entries: list[tuple[Item, str]] = field(default_factory=list)
    body_bytes: int = 0

    @property
    def items(self) -> list[Item]:
        return [item for item, _ in self.entries]


def base64_size(n: int) -> int:
    """Length of the base64 text of ``n`` bytes."""
    return 4 * ((n + 2) // 3)


def pack(items: list[Item], defaults: dict[str, Any], batch: int, max_body: int = RUN_BODY_LIMIT,
         can_stage: bool = False) -> tuple[list[Batch], list[tuple[Item, str]]]:
    """(batches, refused): items in order into jobs of at most ``batch`` items and ``max_body``
    bytes; ``refused`` holds (item, reason) for items that cannot be sent."""
    fixed = len(json.dumps({"input": {"images": [], **defaults}})) + BODY_MARGIN
    room = max_body - fixed
    batches: list[Batch] = []
    refused: list[tuple[Item, str]] = []
    current = Batch()
    for item in items:
        if item.kind != "url" and item.size == 0:
            refused.append((item, "the file is empty (0 bytes)"))
            continue
        how, cost = _travel(item, room, can_stage)
        if how is None:
            refused.append((item, f"{item.size:,} bytes is too large to send inline (its base64 would pass the "
                                  f"{max_body:,}-byte run body limit); give --stage s3://BUCKET/prefix, a bucket "
                                  "the worker can read, to send it as a URL"))
            continue
        if current.entries and len(current.entries) >= batch:
            batches.append(current)
            current = Batch()
        if current.body_bytes + cost > room:
            if can_stage and current.body_bytes + STAGED_BYTES + ITEM_OVERHEAD <= room:
                how, cost = "stage", STAGED_BYTES + ITEM_OVERHEAD  # the job stays a full batch
            else:
                batches.append(current)
                current = Batch()
        current.entries.append((item, how))
        current.body_bytes += cost
    if current.entries:
        batches.append(current)
    return batches, refused


def _travel(item: Item, room: int, can_stage: bool) -> tuple[Optional[str], int]:
    if item.kind == "url":
        return "url", len(json.dumps(item.location)) + ITEM_OVERHEAD
    inline = base64_size(item.size or 0) + ITEM_OVERHEAD
    if inline <= room:
        return "base64", inline
    if can_stage:
        return "stage", STAGED_BYTES + ITEM_OVERHEAD
    return None, 0


def image_field(item: Item, how: str, read: Callable[[Item], bytes],
                stage: Optional[Callable[[Item, bytes], str]]) -> tuple[dict[str, str], int]:
    """(the job item's ``image`` object, bytes read from the source; 0 for URLs)."""
    if how == "url":
        return {"url": item.location}, 0
    data = read(item)
    if not data:
        raise OSError("the file is empty (0 bytes)")
    if how == "base64":
        return {"base64": base64.b64encode(data).decode("ascii")}, len(data)
    assert stage is not None, "a staged item needs a staging bucket"
    return {"url": stage(item, data)}, len(data)
