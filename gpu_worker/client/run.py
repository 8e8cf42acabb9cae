"""A whole run: list the sources, skip what the manifest has done, pack the rest into jobs, run
them ``concurrency`` at a time with retries, and write each job's results as it ends."""

from __future__ import annotations

import base64
import os
import re
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import requests

from gpu_worker.client import manifest as manifests
from gpu_worker.client.backends import RESULT_TOO_LARGE, LocalBackend, RemoteBackend
from gpu_worker.client.breaker import DEFAULT_THRESHOLD, Breaker
from gpu_worker.client.packing import Batch, image_field, pack
from gpu_worker.client.progress import Progress, Summary
from gpu_worker.client.s3 import ClientError, S3Location, is_s3, make_client, parse_s3
from gpu_worker.client.sinks import FolderSink, S3Sink
from gpu_worker.client.sources import Item, list_items
from gpu_worker.client.spec import JobSpec
from gpu_worker.client.submit import GaveUp, RetryPolicy, run_with_retries
from gpu_worker.server.config import RUN_BODY_LIMIT

#: The summary's ``stopped`` after an interrupt (the first Ctrl-C).
INTERRUPTED = "interrupted (Ctrl-C): the jobs in flight finished and were written; no new ones were sent"

#: Images per job by default. The job is the worker's unit of batching: it goes to the device in
#: chunks of CHUNK_IMAGES (16), and one chunk's operations overlap the next one's decode and the
#: last one's encode, so a job of one chunk has nothing to overlap; 64 is four chunks, and images of
#: one shape stack into one kernel call per chunk on a GPU. On the GPU the reference job runs
#: faster per image in 64-image jobs than in 16-image ones (BENCHMARKS.md, "CUDA"; larger jobs
#: not measured there). Larger jobs cost more when a try fails (the whole job runs again), spread
#: over fewer workers, and return more results at once (past UPLOAD_THRESHOLD_BYTES a worker
#: without a bucket fails the job, which the client then runs in halves); MAX_BATCH_ITEMS (256)
#: is the worker's cap. The run body limit makes jobs of large files smaller unless --stage is given.
DEFAULT_BATCH = 64
#: Jobs in flight at once by default.
DEFAULT_CONCURRENCY = 4


@dataclass
class Options:
    """A run's settings (the command line's, see :mod:`gpu_worker.client.cli`).

    ``endpoint``/``api_key``/``base_url`` select a RunPod(-API) endpoint, ``local`` the handler
    in-process. ``stage`` is an ``s3://`` prefix the worker can read, for files too large to send
    inline. ``max_body`` is the ``run`` body limit in bytes (RunPod's 10 MiB). ``give_up_after``
    jobs in a row failing the same transient way stop the run (:mod:`gpu_worker.client.breaker`;
    0: never)."""

    sources: list[str]
    spec: JobSpec
    dest: str
    endpoint: Optional[str] = None
    api_key: Optional[str] = None
    base_url: Optional[str] = None
    local: bool = False
    batch: int = DEFAULT_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    job_timeout_s: float = 900.0
    poll_s: float = 1.0
    s3_endpoint_url: Optional[str] = None
    stage: Optional[str] = None
    max_body: int = RUN_BODY_LIMIT
    progress: Optional[bool] = None
    give_up_after: int = DEFAULT_THRESHOLD


def process(options: Options, interrupt: Optional[threading.Event] = None) -> Summary:
    """Run ``options``; returns the summary. ClientError (before anything is sent) for bad
    arguments or sources. ``interrupt`` set (the command line's first Ctrl-C) ends the run early
    and gently: no new jobs are sent, the jobs in flight finish and are written and recorded, and
    the summary's ``stopped`` says so. KeyboardInterrupt raised (a second Ctrl-C) ends it at once:
    jobs in flight are cancelled, what was written stays recorded. When the endpoint looks down
    (the breaker) no new jobs are sent either; jobs in flight end (without further tries) and
    the summary's ``stopped`` says why. Images never sent are counted in ``not_attempted``."""
    interrupt = interrupt or threading.Event()
    started = time.monotonic()
    stop = threading.Event()  # set when the run ends on an exception: polling and new jobs end
    _check_options(options)
    uses_s3 = any(is_s3(s) for s in (*options.sources, options.dest, options.stage or ""))
    s3 = make_client(options.s3_endpoint_url) if uses_s3 else None
    items = list_items(options.sources, s3)
    outputs = _output_paths(items, options.spec)
    _refuse_dest_inside_sources(options)
    sink, manifest = _open_dest(options.dest, s3)

    done = manifests.done_sources(manifest.load(), options.spec.digest)
    todo = [item for item in items if item.relative not in done]
    summary = Summary(listed=len(items), skipped=len(items) - len(todo), dest=str(sink))
    stage = _stager(s3, parse_s3(options.stage)) if options.stage else None
    batches, refused = pack(todo, options.spec.defaults, options.batch, options.max_body, stage is not None)
    summary.failed += [{"source": item.relative, "error": reason} for item, reason in refused]

    backend = (LocalBackend() if options.local else
               RemoteBackend(options.endpoint, options.api_key, options.base_url, options.job_timeout_s,
                             options.poll_s, poll_backoff_s=options.retry.backoff_s, stop=stop))
    progress = Progress(len(todo), options.progress, initial_failed=len(refused))
    lock = threading.Lock()
    halt = threading.Event()  # no new jobs, no further tries: the breaker tripped, or `stop` was set
    breaker = Breaker(options.give_up_after)

    def one(batch: Batch) -> None:
        if halt.is_set() or stop.is_set():
            return
        result = _run_batch(batch, options, backend, s3, stage, outputs, sink, manifest, halt, progress)
        if result.transient is not None:
            if breaker.failed(*result.transient):
                halt.set()
                progress.note(f"gpu-worker-client: stopping: {breaker.reason}. No more jobs are sent; "
                              "run the same command again when the endpoint is back: it does only what is left")
        elif result.answered:
            breaker.answered()
        with lock:
            summary.done += result.done
            summary.failed += result.failed
            summary.bytes_in += result.bytes_in
            summary.bytes_out += result.bytes_out
        progress.advance(result.done, len(result.failed))

    try:
        _run_bounded(batches, one, options.concurrency, stop, halt, interrupt)
    finally:
        progress.close()
        summary.wall_s = time.monotonic() - started
    summary.not_attempted = len(todo) - summary.done - len(summary.failed)
    if breaker.reason:
        summary.stopped = breaker.reason
    elif interrupt.is_set() and summary.not_attempted:
        summary.stopped = INTERRUPTED
    return summary


def _run_bounded(batches: list[Batch], one, concurrency: int, stop: threading.Event,
                 halt: threading.Event, interrupt: threading.Event) -> None:
    """``one(batch)`` for each batch on ``concurrency`` threads, at most ``concurrency`` more
    queued than running (the rest wait here), until done or ``halt``; ``stop`` and ``interrupt``
    set ``halt`` (``interrupt`` lets the batches already running finish).
    A ClientError (refused key) or a bug from a batch ends the run: stop and halt are set,
    queued batches cancelled, the error raised."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="client")
    pending: set[Future] = set()
    try:
        queue = iter(batches)
        while True:
            if stop.is_set() or interrupt.is_set():
                halt.set()
            while len(pending) < 2 * max(1, concurrency) and not halt.is_set():
                batch = next(queue, None)
                if batch is None:
                    break
                pending.add(pool.submit(one, batch))
            if not pending:
                break
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
    except BaseException:
        stop.set()
        halt.set()
        raise
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


@dataclass
class _BatchResult:
    """One job's outcome. ``answered``: the endpoint answered the job (done, or refused for its
    input); ``transient``: (kind, error) when it failed transiently on every try instead."""

    done: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    answered: bool = False
    transient: Optional[tuple[str, str]] = None


def _run_batch(batch: Batch, options: Options, backend: Any, s3: Any, stage: Any, outputs: dict[str, str],
               sink: Any, manifest: Any, halt: threading.Event, progress: Progress) -> _BatchResult:
    """Send one job, write its results, record them; never raises for a failed job or image.
    A set ``halt`` ends the waiting between tries."""
    result = _BatchResult()
    sent: list[tuple[Item, int]] = []
    images = []
    for item, how in batch.entries:
        try:
            image, size = image_field(item, how, lambda it: _read(it, s3), stage)
        except (OSError, ClientError) as exc:
            result.failed.append({"source": item.relative, "error": f"cannot read it: {exc}"})
            continue
        except Exception as exc:  # noqa: BLE001 - botocore's errors: one object fails, not the run
            result.failed.append({"source": item.relative, "error": f"cannot read it: {type(exc).__name__}: {exc}"})
            continue
        images.append({"image": image})
        sent.append((item, size))
    if images:
        _run_job(sent, images, options, backend, outputs, sink, manifest, halt, progress, result)
    return result


def _run_job(sent: list[tuple[Item, int]], images: list[dict[str, Any]], options: Options, backend: Any,
             outputs: dict[str, str], sink: Any, manifest: Any, halt: threading.Event, progress: Progress,
             result: _BatchResult) -> None:
    """Run one job of ``images`` (``sent``: their items and bytes read), write and record its
    results into ``result``. A job whose results together are too large to come back inline
    (the worker has no bucket) is run again as two halves, down to single images."""
    job_input = {"images": images, **options.spec.defaults}
    try:
        output = run_with_retries(backend.run, job_input, options.retry, halt,
                                  on_retry=lambda n, error: progress.note(f"retry {n} of a job of {len(sent)} "
                                                                          f"images after: {error}"))
    except GaveUp as exc:
        if not exc.transient and len(sent) > 1 and RESULT_TOO_LARGE in str(exc):
            half = len(sent) // 2
            for part in (slice(None, half), slice(half, None)):
                _run_job(sent[part], images[part], options, backend, outputs, sink, manifest, halt, progress, result)
            return
        result.failed += [{"source": item.relative, "error": str(exc)} for item, _ in sent]
        if exc.transient and not exc.halted:
            result.transient = (exc.kind or str(exc), str(exc))
        result.answered = result.answered or not exc.transient
        return
    result.answered = True
    results = output.get("results")
    if not isinstance(results, list) or len(results) != len(sent):
        error = f"the job answered {len(results) if isinstance(results, list) else 'no'} results for {len(sent)} images"
        result.failed += [{"source": item.relative, "error": error} for item, _ in sent]
        return
    records = []
    for (item, size), answer in zip(sent, results):
        try:
            if not answer.get("success"):  # the job's index of the item means nothing to the user
                raise ValueError(re.sub(r"^images\[\d+\][.:]\s*", "", str(answer.get("error") or "failed, no error given")))
            data = _result_bytes(answer)
            sink.write(outputs[item.relative], data, options.spec.mime)
        except Exception as exc:  # noqa: BLE001 - one image fails, the batch goes on
            result.failed.append({"source": item.relative, "error": str(exc)})
            continue
        size = size or int(((answer.get("metadata") or {}).get("source") or {}).get("bytes") or 0)
        records.append(manifests.record(item.relative, outputs[item.relative], options.spec.digest, size, len(data)))
        result.done += 1
        result.bytes_in += size
        result.bytes_out += len(data)
    manifest.append(records)


def _read(item: Item, s3: Any) -> bytes:
    if item.kind == "file":
        return Path(item.location).read_bytes()
    if item.kind == "s3":
        return s3.get_object(Bucket=item.bucket, Key=item.location)["Body"].read()
    raise ClientError(f"{item.location}: a {item.kind} item is not read by the client")


def _result_bytes(answer: dict[str, Any]) -> bytes:
    """The encoded result of one image: its data URI decoded, or its uploaded file downloaded."""
    if "processed_image" in answer:
        return base64.b64decode(answer["processed_image"].split("base64,", 1)[-1])
    if "processed_image_url" in answer:
        response = requests.get(answer["processed_image_url"], timeout=60)
        response.raise_for_status()
        return response.content
    raise ValueError("the result has neither processed_image nor processed_image_url")


def _stager(s3: Any, where: S3Location):
    """A function that puts one item's bytes under the staging prefix and returns a presigned
    URL (1 day) the worker downloads."""
    run = uuid.uuid4().hex[:12]

    def stage(item: Item, data: bytes) -> str:
        key = where.key(f"{run}/{item.relative}")
        s3.put_object(Bucket=where.bucket, Key=key, Body=data)
        return s3.generate_presigned_url("get_object", Params={"Bucket": where.bucket, "Key": key}, ExpiresIn=86400)

    return stage


def _check_options(options: Options) -> None:
    if options.local == bool(options.endpoint):
        raise ClientError("give --endpoint ID (with RUNPOD_API_KEY; --base-url for a server other than "
                          "RunPod) or --local, one of them")
    if options.endpoint and not options.api_key:
        raise ClientError("--endpoint needs an API key: set RUNPOD_API_KEY (any value for a local server "
                          "without API_KEY)")
    if not 1 <= options.batch <= 256:
        raise ClientError(f"--batch {options.batch}: must be 1 to 256 (the worker's MAX_BATCH_ITEMS default)")
    if not 1 <= options.concurrency <= 256:
        raise ClientError(f"--concurrency {options.concurrency}: must be 1 to 256")
    if options.stage and not is_s3(options.stage):
        raise ClientError(f"--stage {options.stage!r}: must be an s3:// prefix")
    if not options.sources:
        raise ClientError("give at least one SOURCE")


def _output_paths(items: list[Item], spec: JobSpec) -> dict[str, str]:
    """Source relative path -> result path in DEST; ClientError when two share one (a.png and
    a.jpg both become a.jpg)."""
    outputs: dict[str, str] = {}
    owners: dict[str, str] = {}
    for item in items:
        out = spec.output_path(item.relative)
        if out in owners:
            raise ClientError(f"{owners[out]!r} and {item.relative!r} would both be written to {out!r}; "
                              "rename one or process them separately")
        owners[out] = item.relative
        outputs[item.relative] = out
    return outputs


def _refuse_dest_inside_sources(options: Options) -> None:
    if is_s3(options.dest):
        return
    dest = Path(options.dest).resolve()
    for source in options.sources:
        if not is_s3(source) and os.path.isdir(source):
            root = Path(source).resolve()
            if dest == root or root in dest.parents:
                raise ClientError(f"--out {options.dest!r} is inside the source folder {source!r}: a rerun "
                                  "would take the results for sources; give a folder outside it")


def _open_dest(dest: str, s3: Any) -> tuple[Any, Any]:
    if is_s3(dest):
        where = parse_s3(dest)
        return S3Sink(s3, where), manifests.S3Manifest(s3, where)
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise ClientError(f"--out {dest!r} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    return FolderSink(root), manifests.FolderManifest(root)
