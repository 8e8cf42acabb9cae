"""Running a job: validate, fetch, probe, decode, run the ops stacked, encode, respond.

Single-image and batch jobs take the same path: a single job is a batch of one whose messages
name fields from the input's root (``image.url``), while batch items are named ``images[3]...``.
Every stage works on the items still alive; an item that fails leaves the others running, and
each stage does its device work for all items at once: on CUDA JPEG decode batched (nvjpeg), ops
stacked by ``(plan, shape)`` and nvjpeg's JPEG encode batched; on the CPU, and for what is encoded
on the host, each image alone, several at once on the threads of :mod:`gpu_worker.cpu_pool`.
Batch jobs go to the device in chunks whose decode, ops and encode overlap
(:mod:`gpu_worker.overlap`).

Everything before decode is cheap and refuses a job that would fail: schema, operations, limits
on bytes, header pixels and inferred output pixels.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import pybase64
import torch

from gpu_worker import upload
from gpu_worker.analysis import analyze
from gpu_worker.batching import Ran, chunks, run_plan_counted
from gpu_worker.cache import ResultCache
from gpu_worker.codecs import SourceInfo, check_pixels, decode_batch, encode, probe
from gpu_worker.config import Settings
from gpu_worker.cpu_pool import map_images
from gpu_worker.crash_journal import NO_JOURNAL, CrashJournal, NullJournal
from gpu_worker.errors import InvalidInput, JobError, LimitExceeded
from gpu_worker.fetch import fetch_source
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.overlap import run_chunks
from gpu_worker.plan import Plan, compile_plan
from gpu_worker.schema import ImageJob, parse_item, split_batch

log = logging.getLogger(__name__)

#: URL downloads and bucket uploads run on this many threads at once per job.
IO_THREADS = 8

#: Called with (images done, images in all) after each chunk of a batch job.
Progress = Callable[[int, int], None]


class OpsExecutor(Protocol):
    """Runs a plan on decoded images; the cross-job batcher implements the same call."""

    def __call__(self, plan: Plan, images: list[torch.Tensor]) -> Ran: ...


@dataclass
class Item:
    """One image of a job as it moves through the stages."""

    index: int
    where: str  # "input" for a single job, "images[i]" in a batch
    raw: Any
    spec: Optional[ImageJob] = None
    plan: Optional[Plan] = None
    data: Optional[bytes] = None
    digest: str = ""  # SHA-256 of data (hex), the cache key's first part; set after fetching
    info: Optional[SourceInfo] = None
    source: Optional[torch.Tensor] = None
    result: Optional[torch.Tensor] = None
    encoded: Optional[bytes] = None
    url: Optional[str] = None  # presigned bucket URL, when the result was uploaded
    cached: bool = False
    stacked: int = 0  # images batched with this one (one stacked kernel call per op on CUDA)
    error: Optional[str] = None
    fetch_ms: float = 0.0
    analysis: dict = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.error = message
        self.source = self.result = None  # free device memory early

    def wants_analysis(self, target: str) -> bool:
        """Still alive and asked for analysis of ``target`` ("source" or "result")."""
        return self.error is None and target in self.spec.analysis_targets


class JobRunner:
    """Processes job inputs on one device with one set of limits.

    Args:
        settings: limits and output settings (see gpu_worker.config).
        device: where decode, ops and encode run.
        executor: runs plans on decoded tensors; default: shape-grouped batches in this thread.
        cache: result cache; default: one of ``settings.cache_max_bytes`` (none when 0).
        journal: where each job's stages are recorded for a supervising process
            (gpu_worker.crash_journal); default: nowhere.
    """

    def __init__(self, settings: Settings, device: torch.device, executor: OpsExecutor | None = None,
                 cache: ResultCache | None = None, journal: CrashJournal | NullJournal = NO_JOURNAL):
        self.settings = settings
        self.device = device
        self.executor = executor or (lambda plan, images: run_plan_counted(plan, images, settings.batch_max_pixels))
        if cache is None and settings.cache_max_bytes > 0:
            cache = ResultCache(settings.cache_max_bytes)
        self.cache = cache
        self.journal = journal

    # --- entry point ------------------------------------------------------------------------

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
            with self.journal.job(job_id):
                timings = self._run_items(items, job_id, progress)
        except JobError as exc:
            return error_response(str(exc))
        timings["total"] = _ms_since(started)
        if "images" not in job_input:
            return self._item_response(items[0], timings)
        results = [self._item_response(item, timings) for item in items]
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

    # --- stages -------------------------------------------------------------------------------

    def _run_items(self, items: list[Item], job_id: str, progress: Progress | None) -> dict[str, float]:
        timings = dict.fromkeys(("fetch", "decode", "ops", "encode", "upload"), 0.0)
        staged = functools.partial(self.journal.staged, job_id)
        self._stage(items, self._validate)
        timings["fetch"] = self._timed(staged("fetch", self._fetch_all), items)
        self._stage(items, staged("probe", self._probe))
        self._check_batch_pixels(items)
        self._stage(items, self._lookup_cache)
        # Device work goes chunk by chunk, so a large batch never holds all its pixels at once;
        # the next chunk decodes, and the last one's host encodes run, beside this one's operations.
        todo = [item for item in self._live(items) if not item.cached]
        done = len(items) - len(todo)

        def report(chunk: list[Item]) -> None:
            nonlocal done
            done += len(chunk)
            if progress is not None and len(items) > 1:
                progress(done, len(items))

        stage_ms = run_chunks(self._chunks(todo), staged("decode", self._decode_all), staged("ops", self._ops_all),
                              staged("encode", self._encode_all), self.device, encode_behind=self._encodes_on_host,
                              done=report)
        for stage, ms in stage_ms.items():
            timings[stage] += ms
        self._stage(items, self._store_cache)
        timings["upload"] = self._timed(staged("upload", functools.partial(self._upload_all, job_id=job_id)), items)
        return {name: round(value, 3) for name, value in timings.items()}

    def _chunks(self, todo: list[Item]) -> list[list[Item]]:
        """``todo`` in chunks of at most CHUNK_IMAGES images and BATCH_MAX_PIXELS pixels, the items
        that stack together (same operations, same decoded shape) next to each other, so that
        they share chunks and run as few, large stacks."""
        pixels = max((item.info.width * item.info.height for item in todo), default=1)
        per_chunk = self.settings.chunk_images or len(todo)
        todo = sorted(todo, key=lambda item: (item.plan.key, item.info.channels, item.info.height, item.info.width))
        return [[todo[i] for i in indices[start : start + per_chunk]]
                for indices in chunks(list(range(len(todo))), pixels, self.settings.batch_max_pixels)
                for start in range(0, len(indices), per_chunk)]

    def _stage(self, items: list[Item], work: Callable[[Item], None]) -> None:
        """Run ``work`` on every live item; any exception fails that item only."""
        for item in self._live(items):
            error = _catching(work)(item)
            if error is not None:
                item.fail(error)

    def _validate(self, item: Item) -> None:
        item.spec = parse_item(item.raw, item.where)
        try:
            item.plan = compile_plan(item.spec.operations, self.settings.max_operations)
        except JobError as exc:
            # compile_plan's messages start with "operations...": name the item before it.
            raise type(exc)(str(exc) if item.where == "input" else f"{item.where}.{exc}") from None

    def _fetch_all(self, items: list[Item]) -> None:
        live = self._live(items)
        # Decoding base64 text takes microseconds, less than handing it to a thread (64 1080p
        # JPEGs: 3.8 ms here against 11.9 ms on the I/O threads); downloads wait on the network.
        self._stage([item for item in live if item.spec.image.url is None], self._fetch)
        self._threaded_stage([item for item in live if item.spec.image.url is not None], self._fetch)
        if self.cache is not None:  # SHA-256 lets go of the interpreter lock: on the pool's threads
            map_images(self._digest, self._live(items))

    def _threaded_stage(self, items: list[Item], work: Callable[[Item], None]) -> None:
        """Like :meth:`_stage`, with I/O-bound ``work`` run on up to IO_THREADS threads."""
        if len(items) <= 1:
            self._stage(items, work)
            return
        with ThreadPoolExecutor(max_workers=min(IO_THREADS, len(items))) as pool:
            for item, error in zip(items, pool.map(_catching(work), items)):
                if error is not None:
                    item.fail(error)

    def _fetch(self, item: Item) -> None:
        started = time.perf_counter()
        source = item.spec.image
        try:
            item.data = fetch_source(source.model_dump(exclude_none=True), max_bytes=self.settings.max_source_bytes,
                                     timeout_s=self.settings.fetch_timeout_s)
        except JobError as exc:
            raise type(exc)(_prefixed(item, str(exc))) from None
        item.fetch_ms = _ms_since(started)

    @staticmethod
    def _digest(item: Item) -> None:
        item.digest = hashlib.sha256(item.data).hexdigest()

    def _probe(self, item: Item) -> None:
        try:
            item.info = probe(item.data)
            check_pixels(item.info, self.settings.max_decoded_pixels)
            self._check_plan_sizes(item)
        except JobError as exc:
            raise type(exc)(_prefixed(item, str(exc))) from None

    def _check_plan_sizes(self, item: Item) -> None:
        """Infer every intermediate size from the header: a plan that would blow up, or a result
        the output format cannot store, is refused here, before decoding."""
        shape = (item.info.channels, item.info.height, item.info.width)
        bound = item.plan.bind(shape)
        largest = max((s.out_shape for s in bound.steps), key=lambda s: s[1] * s[2], default=shape)
        pixels = largest[1] * largest[2]
        if pixels > self.settings.max_output_pixels:
            raise LimitExceeded(
                f"the operations would make a {largest[2]}x{largest[1]} image ({pixels:,} pixels), over "
                f"the output-pixel limit MAX_OUTPUT_PIXELS={self.settings.max_output_pixels:,}")
        fmt = OUTPUT_FORMATS[item.spec.output.format]
        _, h, w = bound.out_shape
        if max(h, w) > fmt.max_side:
            raise InvalidInput(f"output.format: {fmt.name} stores at most {fmt.max_side} pixels a side, "
                               f"and the result would be {w}x{h}")

    def _check_batch_pixels(self, items: list[Item]) -> None:
        total = sum(item.info.width * item.info.height for item in self._live(items))
        if total > self.settings.max_batch_pixels:
            raise LimitExceeded(
                f"the batch's images hold {total:,} pixels in all, over the per-batch limit "
                f"MAX_BATCH_PIXELS={self.settings.max_batch_pixels:,}")

    def _lookup_cache(self, item: Item) -> None:
        if self.cache is None:
            return
        hit = self.cache.get(self._cache_key(item))
        if hit is not None:
            item.encoded, analysis = hit
            item.analysis = dict(analysis)
            item.cached = True

    def _store_cache(self, item: Item) -> None:
        if self.cache is not None and not item.cached:
            self.cache.put(self._cache_key(item), (item.encoded, dict(item.analysis)), len(item.encoded))

    def _cache_key(self, item: Item) -> str:
        spec = item.spec
        settings = f"{spec.output.format}:{spec.output.quality}:{','.join(spec.analysis_targets)}"
        return f"{item.digest}|{item.plan.key}|{settings}"

    def _decode_all(self, items: list[Item]) -> list[torch.Tensor]:
        """Decode the live items' sources (and analyse them when asked); returns those tensors."""
        todo = self._live(items)
        if not todo:
            return []
        if self._decodes_on_host:  # one image per call, several at once (gpu_worker.cpu_pool)
            decoded = map_images(lambda item: self._decode([item])[0], todo)
        else:  # one batched call (nvjpeg)
            decoded = self._decode(todo)
        for item, image in zip(todo, decoded):
            if isinstance(image, Exception):
                item.fail(_prefixed(item, str(image)))
            else:
                item.source = image
        self._analyze(todo, "source")
        self._sync()
        return [item.source for item in todo if item.source is not None]

    def _decode(self, items: list[Item]) -> list[torch.Tensor | JobError]:
        try:
            return decode_batch([item.data for item in items], self.device, [item.info for item in items],
                                nvjpeg=not self._decodes_on_host)
        except Exception as exc:  # noqa: BLE001 - decode_batch returns per-item errors; this is a bug
            return [JobError(_describe_failure("decoding", exc))] * len(items)

    def _analyze(self, items: list[Item], target: str) -> None:
        """Add the analysis of each item's source or result, for the items that asked for it."""
        wanted = [item for item in items if item.wants_analysis(target)]
        if not wanted:
            return
        images = [item.source if target == "source" else item.result for item in wanted]
        formats = [item.info.format if target == "source" else item.spec.output.format for item in wanted]
        try:
            for item, stats in zip(wanted, analyze(images, formats)):
                item.analysis[target] = stats
        except Exception as exc:  # noqa: BLE001
            message = _describe_failure(f"analysing the {target}", exc)
            for item in wanted:
                item.fail(_prefixed(item, message))

    def _ops_all(self, items: list[Item]) -> None:
        by_plan: dict[str, list[Item]] = {}
        for item in self._live(items):
            by_plan.setdefault(item.plan.key, []).append(item)
        for group in by_plan.values():
            try:
                ran = self.executor(group[0].plan, [item.source for item in group])
            except Exception as exc:  # noqa: BLE001 - one group's failure must not end the others
                message = _describe_failure("running the operations", exc)
                for item in group:
                    item.fail(_prefixed(item, message))
                continue
            for item, out, stacked in zip(group, ran.outputs, ran.stacked):
                item.result, item.source, item.stacked = out, None, stacked
        self._analyze(items, "result")
        self._sync()
        if self.device.type == "cuda":
            self._results_to_host([item for item in self._live(items) if not self._encodes_on_gpu(item)])

    def _results_to_host(self, items: list[Item]) -> None:
        """Copy the results that are encoded on the host off the GPU: into pinned memory, every
        copy queued before one wait, so the encodes can run beside the next chunk's kernels."""
        for item in items:
            if item.result.device.type == "cuda":  # (one too large for the GPU is on the host already)
                host = torch.empty(item.result.shape, dtype=torch.uint8, pin_memory=True)
                item.result = host.copy_(item.result, non_blocking=True)
        self._sync()

    def _encode_all(self, items: list[Item]) -> None:
        """Encode on the GPU with nvjpeg, batched, what is encoded there; everything else one image
        per call on the host, several at once (gpu_worker.cpu_pool)."""
        on_gpu: dict[tuple, list[Item]] = {}  # one batched call per quality, shape and device
        on_host: list[Item] = []
        for item in self._live(items):  # (a result too large for the GPU stays on the host: gpu_worker.batching)
            if self._encodes_on_gpu(item):
                key = (item.spec.output.quality, tuple(item.result.shape), item.result.device)
                on_gpu.setdefault(key, []).append(item)
            else:
                on_host.append(item)
        for group in on_gpu.values():
            self._encode(group, nvjpeg=True)
        map_images(lambda item: self._encode([item], nvjpeg=False), on_host)

    def _encode(self, group: list[Item], nvjpeg: bool) -> None:
        """Encode items that share output format, quality and shape; a failure fails the group."""
        fmt, quality = group[0].spec.output.format, group[0].spec.output.quality
        try:
            batch = group[0].result.unsqueeze(0) if len(group) == 1 else torch.stack([i.result for i in group])
            encoded = encode(batch, fmt, quality, nvjpeg=nvjpeg)
        except Exception as exc:  # noqa: BLE001
            message = _describe_failure(f"encoding {fmt}", exc)
            for item in group:
                item.fail(_prefixed(item, message))
            return
        for item, data in zip(group, encoded):
            item.encoded, item.result = data, None

    def _upload_all(self, items: list[Item], job_id: str) -> None:
        """Send results to the bucket when the job asks, or when inline base64 would be too large."""
        live = self._live(items)
        inline_bytes = sum(_base64_size(len(item.encoded)) for item in live)
        too_large = inline_bytes > self.settings.upload_threshold_bytes
        targets = live if too_large else [item for item in live if item.spec.output.upload]
        if not targets:
            return
        if too_large and not upload.bucket_configured():
            raise LimitExceeded(
                f"the result is {inline_bytes / 1e6:.1f} MB as base64, over the inline limit of "
                f"{self.settings.upload_threshold_bytes / 1e6:.1f} MB (UPLOAD_THRESHOLD_BYTES); results this "
                f"large are returned as bucket URLs, but {upload.not_configured_message()}")

        def send(item: Item) -> None:
            item.url = upload.upload_image(item.encoded, key_prefix=job_id, bucket_name=self.settings.bucket_name,
                                           extension=OUTPUT_FORMATS[item.spec.output.format].extension)

        self._threaded_stage(targets, send)

    # --- responses ----------------------------------------------------------------------------

    def _item_response(self, item: Item, timings: dict[str, float]) -> dict[str, Any]:
        if item.error is not None:
            return error_response(item.error)
        out = item.spec.output
        _, h, w = item.plan.output_shape((item.info.channels, item.info.height, item.info.width))
        response: dict[str, Any] = {"success": True}
        if item.url is not None:
            response["processed_image_url"] = item.url
        else:
            encoded = pybase64.b64encode(item.encoded).decode("ascii")
            response["processed_image"] = f"data:{OUTPUT_FORMATS[out.format].mime};base64,{encoded}"
        response["metadata"] = {
            "width": w,
            "height": h,
            "format": out.format,
            "quality": out.quality,
            "bytes": len(item.encoded),
            "source": {"format": item.info.format, "width": item.info.width, "height": item.info.height,
                       "mode": item.info.mode, "bytes": len(item.data)},
            "device": str(self.device),
            "cached": item.cached,
            "stacked": item.stacked,
            "timings_ms": dict(timings, fetch=round(item.fetch_ms, 3)),
        }
        if item.analysis:
            response["analysis"] = dict(item.analysis)
        return response

    # --- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _live(items: list[Item]) -> list[Item]:
        return [item for item in items if item.error is None]

    def _timed(self, work: Callable[[list[Item]], None], items: list[Item]) -> float:
        started = time.perf_counter()
        work(items)
        return _ms_since(started)

    @property
    def _decodes_on_host(self) -> bool:
        """Decode one image per call on the host's threads: on the CPU, and on CUDA when JPEGs go
        through libjpeg-turbo (CUDA_JPEG_CODEC=libjpeg). Otherwise JPEGs go to nvjpeg batched."""
        return self.device.type == "cpu" or self.settings.cuda_jpeg_codec == "libjpeg"

    def _encodes_on_gpu(self, item: Item) -> bool:
        """Whether nvjpeg encodes this item's result on CUDA (JPEG out, CUDA_JPEG_CODEC=nvjpeg).
        Every other result is encoded on the host's threads: PNG and WebP always."""
        return (self.device.type == "cuda" and self.settings.cuda_jpeg_codec == "nvjpeg"
                and item.spec.output.format == "JPEG")

    def _encodes_on_host(self, chunk: list[Item]) -> bool:
        """Whether all of the chunk's encodes run on the host (so they can run behind the next
        chunk's operations, gpu_worker.overlap)."""
        return not any(self._encodes_on_gpu(item) for item in self._live(chunk))

    def _sync(self) -> None:
        """Wait for the work this thread queued on the device, so stage timings measure the stage
        (CUDA is asynchronous). Only this thread's stream: the decode of the next chunk, on its
        own stream (gpu_worker.overlap), goes on meanwhile."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()


def error_response(message: str) -> dict[str, Any]:
    """The tutorial's failure shape."""
    return {"success": False, "error": message}


def _describe_failure(stage: str, exc: Exception) -> str:
    """A JobError's own message; anything else is logged with its traceback and summarised."""
    if isinstance(exc, JobError):
        return str(exc)
    log.exception("unexpected error while %s", stage)
    return f"internal error while {stage}: {type(exc).__name__}: {str(exc)[:200]}"


def _prefixed(item: Item, message: str) -> str:
    return message if item.where == "input" else f"{item.where}: {message}"


def _catching(work: Callable[[Item], None]) -> Callable[[Item], Optional[str]]:
    """Wrap a per-item stage: returns None, or the message the item fails with: a JobError's own,
    or for any other exception (a bug, logged with its traceback) one naming the stage."""

    def run(item: Item) -> Optional[str]:
        try:
            work(item)
        except JobError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - one item's failure must not end the others
            return _prefixed(item, _describe_failure(f"the {work.__name__.strip('_')} stage", exc))
        return None

    return run


def _base64_size(n_bytes: int) -> int:
    """Characters of base64 for ``n_bytes`` bytes, plus the data URI's prefix."""
    return 4 * ((n_bytes + 2) // 3) + 32


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
