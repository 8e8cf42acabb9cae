"""One image of a job as it moves through the stages, and how a stage runs over a job's items.

A stage is a function of one :class:`Item` (or of a list of them, for work done together). Each
stage sets the fields the next ones read (see :class:`Item`); an item that fails keeps its error
and is skipped by every later stage, and no exception of one item's stage reaches the others.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from gpu_worker.codecs import SourceInfo
from gpu_worker.color_management import SourceProfile
from gpu_worker.codecs.animation import Timing
from gpu_worker.errors import JobError
from gpu_worker.plan import Plan
from gpu_worker.schema import ImageJob

log = logging.getLogger(__name__)

#: URL downloads and bucket uploads run on this many threads at once per job.
IO_THREADS = 8


@dataclass
class Item:
    """One image of a job. Fields are filled stage by stage; each is valid for the stages after
    the one named beside it, as long as ``error`` is None."""

    index: int
    where: str  # "input" for a single job, "images[i]" in a batch
    raw: Any  # the item's JSON
    spec: Optional[ImageJob] = None  # validate
    plan: Optional[Plan] = None  # validate
    data: Optional[bytes] = None  # fetch: the encoded source
    fetch_ms: float = 0.0  # fetch
    digest: str = ""  # fetch, when the cache is on: SHA-256 of data (hex), the cache key's first part
    info: Optional[SourceInfo] = None  # probe
    profile: Optional[SourceProfile] = None  # probe: the source's ICC profile, when it has one for its colours
    cached: bool = False  # cache lookup: encoded and analysis came from the cache
    source: Optional[torch.Tensor] = None  # decode, until the operations have run: uint8 (C, H, W); (F, 4, H, W) for a kept animation (stages.frames)
    result: Optional[torch.Tensor] = None  # operations, until encoded: uint8 (C, H, W); (F, C, H, W) for a kept animation
    timing: Optional[Timing] = None  # decode, kept animations only: durations, loop, disposal
    stacked: int = 0  # operations: images batched with this one (one stacked kernel call per op on CUDA)
    result_size: Optional[tuple[int, int]] = None  # operations (or cache lookup): (width, height) of the result
    encoded: Optional[bytes] = None  # encode (or cache lookup)
    encoded_meta: dict = field(default_factory=dict)  # encode (or cache lookup): stages.output.Encoded.metadata
    url: Optional[str] = None  # deliver: presigned bucket URL, when the result was uploaded
    analysis: dict = field(default_factory=dict)  # decode ("source") and operations ("result")
    error: Optional[str] = None  # the message the item failed with

    def fail(self, message: str) -> None:
        self.error = message
        self.source = self.result = None  # free device memory early

    def wants_analysis(self, target: str) -> bool:
        """Still alive and asked for analysis of ``target`` ("source" or "result")."""
        return self.error is None and target in self.spec.analysis_targets

    def named(self, message: str) -> str:
        """``message`` prefixed with the item's place in a batch (a single job's are not)."""
        return message if self.where == "input" else f"{self.where}: {message}"


def live(items: list[Item]) -> list[Item]:
    """The items that have not failed."""
    return [item for item in items if item.error is None]


def describe_failure(stage: str, exc: Exception) -> str:
    """A JobError's own message; anything else is logged with its traceback and summarised."""
    if isinstance(exc, JobError):
        return str(exc)
    log.exception("unexpected error while %s", stage)
    return f"internal error while {stage}: {type(exc).__name__}: {str(exc)[:200]}"


def catching(stage: str, work: Callable[..., None], *args: Any) -> Callable[[Item], Optional[str]]:
    """Wrap a per-item stage, ``work(item, *args)``: returns None, or the message the item fails
    with: a JobError's own, or for any other exception (a bug, logged with its traceback) one
    naming the ``stage``."""

    def run(item: Item) -> Optional[str]:
        try:
            work(item, *args)
        except JobError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - one item's failure must not end the others
            return item.named(describe_failure(f"the {stage} stage", exc))
        return None

    return run


def each(items: list[Item], stage: str, work: Callable[..., None], *args: Any) -> None:
    """Run ``work(item, *args)`` on every live item, in this thread; any exception fails that
    item only."""
    run = catching(stage, work, *args)
    for item in live(items):
        error = run(item)
        if error is not None:
            item.fail(error)


def each_threaded(items: list[Item], stage: str, work: Callable[..., None], *args: Any) -> None:
    """Like :func:`each`, with I/O-bound ``work`` run on up to IO_THREADS threads."""
    items = live(items)
    if len(items) <= 1:
        each(items, stage, work, *args)
        return
    with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(items))) as pool:
        for item, error in zip(items, pool.map(catching(stage, work, *args), items)):
            if error is not None:
                item.fail(error)


def fail_all(items: list[Item], stage: str, exc: Exception) -> None:
    """Fail ``items`` together after work they shared raised ``exc`` in ``stage``."""
    message = describe_failure(stage, exc)
    for item in items:
        item.fail(item.named(message))
