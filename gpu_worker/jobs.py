"""Running a job: validate, fetch, probe, decode, run the operations stacked, encode, deliver.

Single-image and batch jobs take the same path: a single job is a batch of one whose messages
name fields from the input's root (``image.url``), while batch items are named ``images[3]...``.
Each stage (gpu_worker.stages) works on the items still alive; an item that fails leaves the
others running, and each stage does its device work for all items at once: on CUDA JPEG decode
batched (nvjpeg), operations stacked by ``(plan, shape)`` (plans that differ only in per-sample
parameters, such as brightness, stack together: gpu_worker.per_sample) and nvjpeg's JPEG encode
batched; on the CPU, and for what is encoded on the host, each image alone, several at once on
the threads of :mod:`gpu_worker.cpu_pool`. Batch jobs go to the device in chunks whose decode, operations
and encode overlap (:mod:`gpu_worker.overlap`); which codec runs where, on which host threads, and
how the kernels run (:mod:`kernels.context`, entered around each job) is decided once, by
:class:`~gpu_worker.stages.policy.DevicePolicy`.

Everything before decode is cheap and refuses a job that would fail: schema, operations, limits
on bytes, header pixels and inferred output pixels. Images that operation parameters name
(overlay's ``image``) are fetched and decoded once per job before any source.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import torch

from gpu_worker.stacking import run_plan_counted
from gpu_worker.cache import ResultCache
from gpu_worker.config import Settings
from gpu_worker.crash_journal import NO_JOURNAL, CrashJournal, NullJournal
from gpu_worker.errors import InvalidInput, JobError
from gpu_worker.overlap import run_chunks, split_into_chunks
from gpu_worker.schema import split_batch
from gpu_worker.stages import deliver, device, frames, intake
from gpu_worker.stages.deliver import error_response
from gpu_worker.stages.device import OpsExecutor
from gpu_worker.stages.item import Item, each, live
from gpu_worker.stages.policy import DevicePolicy
from kernels import context as kernel_context

__all__ = ["JobRunner", "Progress", "error_response"]

#: Called with (images done, images in all) after each chunk of a batch job.
Progress = Callable[[int, int], None]


class JobRunner:
    """Processes job inputs on one device with one set of limits.

    Args:
        settings: limits and output settings (see gpu_worker.config).
        device: where decode, ops and encode run.
        executor: runs plans on decoded tensors; default: shape-grouped batches in this thread.
        cache: result cache; default: one of ``settings.cache_max_bytes`` (none when 0).
        journal: where each job's stages are recorded for a supervising process
            (gpu_worker.crash_journal); default: nowhere.
        policy: where the work runs; default: decided from ``settings`` and ``device``.
    """

    def __init__(self, settings: Settings, device: torch.device, executor: OpsExecutor | None = None,
                 cache: ResultCache | None = None, journal: CrashJournal | NullJournal = NO_JOURNAL,
                 policy: DevicePolicy | None = None):
        self.settings = settings
        self.device = device
        self.policy = policy = policy or DevicePolicy.decide(settings, device)
        self.executor = executor or (
            lambda plan, images: run_plan_counted(plan, images, settings.max_stack_pixels, policy.pool))
        if cache is None and settings.cache_max_bytes > 0:
            cache = ResultCache(settings.cache_max_bytes)
        self.cache = cache
        self.journal = journal

    def run(self, job_input: Any, job_id: str = "local", progress: Progress | None = None) -> dict[str, Any]:
        """A job's ``input`` -> the response dict. Never raises for bad input: errors are data.

        ``job_id`` names bucket objects; ``progress`` is told after each chunk of a batch job.
        """
        started = time.perf_counter()
        try:
            if not isinstance(job_input, dict):
                raise InvalidInput(f"input must be an object, got {type(job_input).__name__}")
            if "images" in job_input:
                raws = split_batch(job_input, self.settings.max_batch_items)
                items = [Item(i, f"images[{i}]", raw) for i, raw in enumerate(raws)]
            else:
                items = [Item(0, "input", job_input)]
            with self.journal.job(job_id), kernel_context.using(self.policy.kernels):
                timings = self._run_items(items, job_id, progress)
        except JobError as exc:
            return error_response(str(exc))
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        if "images" not in job_input:
            return deliver.item_response(items[0], timings, str(self.device))
        results = [deliver.item_response(item, timings, str(self.device)) for item in items]
        return {
            "success": True,
            "results": results,
            "metadata": {
                "count": len(items),
                "failed": sum(1 for r in results if not r["success"]),
                "device": str(self.device),
                "timings_ms": timings,
            },
        }

    def _run_items(self, items: list[Item], job_id: str, progress: Progress | None) -> dict[str, float]:
        """Every stage over ``items`` in order; returns the ms each stage took."""
        settings, staged = self.settings, functools.partial(self.journal.staged, job_id)
        timings = dict.fromkeys(("fetch", "decode", "ops", "encode", "upload"), 0.0)
        each(items, "validate", intake.validate, settings)
        timings["fetch"] = _timed(staged("fetch", intake.load_item_resources), items, settings, self.device)
        timings["fetch"] += _timed(staged("fetch", intake.fetch_all), live(items), settings, self.cache is not None,
                                   self.policy.pool)
        each(items, "probe", staged("probe", intake.probe_item), settings)
        intake.check_batch_pixels(items, settings)
        if self.cache is not None:
            each(items, "cache lookup", intake.lookup_cache, self.cache)
        # Device work goes chunk by chunk, so a large batch never holds all its pixels at once;
        # the next chunk decodes, and the last one's host encodes run, beside this one's operations.
        todo = [item for item in live(items) if not item.cached]
        stage_ms = run_chunks(self._chunks(todo),
                              staged("decode", functools.partial(device.decode_chunk, policy=self.policy)),
                              staged("ops", functools.partial(device.run_operations, executor=self.executor,
                                                              policy=self.policy)),
                              staged("encode", functools.partial(device.encode_chunk, policy=self.policy)),
                              self.device, encode_behind=self.policy.encodes_on_host,
                              done=_progress_reporter(progress, len(items), len(items) - len(todo)))
        for stage, ms in stage_ms.items():
            timings[stage] += ms
        if self.cache is not None:
            each(items, "cache store", deliver.store_cache, self.cache)
        timings["upload"] = _timed(staged("upload", deliver.upload_all), items, settings, job_id)
        return {name: round(value, 3) for name, value in timings.items()}

    def _chunks(self, todo: list[Item]) -> list[list[Item]]:
        return split_into_chunks(
            todo, stack_key=lambda item: (item.plan.stack_key, item.info.channels, item.info.height, item.info.width),
            pixels=lambda item: frames.decoded_pixels(item.info), chunk_images=self.settings.chunk_images,
            max_pixels=self.settings.max_stack_pixels)


def _progress_reporter(progress: Progress | None, total: int, done: int) -> Callable[[list[Item]], None]:
    """Called after each chunk: tells ``progress`` how many of ``total`` images are done (batch
    jobs only; ``done`` counts the cached ones)."""

    def report(chunk: list[Item]) -> None:
        nonlocal done
        done += len(chunk)
        if progress is not None and total > 1:
            progress(done, total)

    return report


def _timed(work: Callable[..., None], *args: Any) -> float:
    started = time.perf_counter()
    work(*args)
    return (time.perf_counter() - started) * 1000
