"""Results written to DEST: a folder (each file written to a temporary name beside it, then
renamed over, so a crash never leaves half a file under the real name) or an ``s3://`` prefix
(one ``put_object`` each, which S3 makes visible whole or not at all)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from gpu_worker.client.s3 import S3Location


class FolderSink:
    """Files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def write(self, relative: str, data: bytes, content_type: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def __str__(self) -> str:
        return str(self.root)


class S3Sink:
    """Objects under an ``s3://bucket/prefix``."""

    def __init__(self, client: Any, where: S3Location) -> None:
        self.client, self.where = client, where

    def write(self, relative: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.where.bucket, Key=self.where.key(relative), Body=data,
                               ContentType=content_type)

    def __str__(self) -> str:
        return str(self.where)
