"""What to process: each SOURCE argument listed as items.

A source is one of:

* a folder: every image file under it (by extension, :data:`IMAGE_EXTENSIONS`; names starting with
  '.' are left out), relative paths from the folder;
* a glob (``photos/**/*.jpg``; ``**`` matches folders recursively): the files it matches, relative
  paths from the glob's folder part (``photos/``);
* an image file: that file, under its own name;
* a text file of URLs (any other file): one ``http(s)://`` URL a line, blank lines and lines
  starting with ``#`` skipped; relative path ``host/path`` of the URL (its query dropped);
* an ``s3://bucket/prefix``: every image object under the prefix, relative paths from the prefix.

An item's ``relative`` is where its result goes in DEST (with the output format's extension) and
its name in the manifest, so two items with the same one are refused before anything runs.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from gpu_worker.client.s3 import ClientError, is_s3, parse_s3
from gpu_worker.formats import SOURCE_EXTENSIONS

#: File extensions (lower case, with the dot) taken from folders and s3:// prefixes: those of
#: every format the worker reads (the formats table's ``extensions``).
IMAGE_EXTENSIONS = SOURCE_EXTENSIONS


@dataclass(frozen=True)
class Item:
    """One image to process.

    Attributes:
        relative: its path relative to its source, '/'-separated ("trips/a.jpg").
        kind: "file", "url" or "s3".
        location: the file's path, the URL, or the object's key.
        size: its size in bytes where listing tells it (files, objects), else None (URLs).
        bucket: the object's bucket (kind "s3").
    """

    relative: str
    kind: str
    location: str
    size: Optional[int] = None
    bucket: Optional[str] = None


def list_items(sources: Iterable[str], s3_client: Any = None) -> list[Item]:
    """Every item of every source, in order (each source's sorted). ClientError for a source that
    does not exist or lists nothing, a bad URL line, or two items with the same relative path."""
    items: list[Item] = []
    for source in sources:
        found = _list_one(source, s3_client)
        if not found:
            raise ClientError(f"source {source!r} has no images in it")
        items.extend(found)
    _refuse_duplicates(items, lambda item: item.relative, "relative path")
    return items


def _list_one(source: str, s3_client: Any) -> list[Item]:
    if is_s3(source):
        if s3_client is None:
            raise ClientError(f"source {source!r} needs an S3 client")
        return _list_s3(source, s3_client)
    if os.path.isdir(source):
        return _list_folder(Path(source))
    if glob.has_magic(source):
        return _list_glob(source)
    path = Path(source)
    if not path.is_file():
        raise ClientError(f"source {source!r} is not a folder, a file, a glob that matches or an s3:// prefix")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return [Item(path.name, "file", str(path), path.stat().st_size)]
    return _list_urls(path)


def _list_folder(root: Path) -> list[Item]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            items.append(Item(path.relative_to(root).as_posix(), "file", str(path), path.stat().st_size))
    return items


def _list_glob(pattern: str) -> list[Item]:
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
    base = Path(*fixed) if fixed else Path(".")
    items = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        path = Path(match)
        if path.is_file():
            items.append(Item(path.relative_to(base).as_posix(), "file", str(path), path.stat().st_size))
    return items


def _list_urls(path: Path) -> list[Item]:
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientError(f"{path}:{number}: {url[:80]!r} is not an http(s) URL "
                              "(a text source holds one URL a line)")
        relative = PurePosixPath(parts.netloc.replace(":", "_"), *[p for p in parts.path.split("/") if p not in ("", ".", "..")])
        if len(relative.parts) < 2:
            raise ClientError(f"{path}:{number}: {url[:80]!r} has no file name in its path")
        items.append(Item(relative.as_posix(), "url", url))
    return items


def _list_s3(source: str, s3_client: Any) -> list[Item]:
    where = parse_s3(source)
    items = []
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(where.prefix):]
            name = relative.rsplit("/", 1)[-1]
            if not name or name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if any(part.startswith(".") for part in relative.split("/")[:-1]):
                continue  # hidden folders (a manifest or staging folder under the prefix)
            items.append(Item(relative, "s3", obj["Key"], int(obj["Size"]), where.bucket))
    return sorted(items, key=lambda item: item.relative)


def _refuse_duplicates(items: list[Item], key, what: str) -> None:
    seen: dict[str, Item] = {}
    for item in items:
        k = key(item)
        if k in seen:
            raise ClientError(f"two sources give the same {what} {k!r}: {seen[k].location} and {item.location}; "
                              "their results would overwrite each other")
        seen[k] = item
