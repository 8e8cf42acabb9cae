"""The stages before any pixel: validate, the resources (images that operation parameters name:
fetched and decoded once per job, before any source), fetch, probe (with the limits the header
allows checking), and the result-cache lookup. Each refuses what would fail later, cheaply."""

from __future__ import annotations

import hashlib
import time

import torch

from gpu_worker.cache import ResultCache
from gpu_worker.codecs import check_pixels, probe
from gpu_worker.color_management import profile_for
from gpu_worker.config import Settings
from gpu_worker.cpu_pool import ImagePool
from gpu_worker.errors import InvalidInput, JobError, LimitExceeded
from gpu_worker.fetch import fetch_source
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.operations.resources import ImageResource, LoadedImage
from gpu_worker.plan import compile_plan
from gpu_worker.resources import load_image
from gpu_worker.schema import parse_item
from gpu_worker.stages import frames
from gpu_worker.stages.item import Item, describe_failure, each, each_threaded, live


def validate(item: Item, settings: Settings) -> None:
    """The item's JSON -> ``spec`` and ``plan``."""
    item.spec = parse_item(item.raw, item.where)
    try:
        item.plan = compile_plan(item.spec.operations, settings.max_operations, settings.max_output_pixels)
    except JobError as exc:
        # compile_plan's messages start with "operations...": name the item before it.
        raise type(exc)(str(exc) if item.where == "input" else f"{item.where}.{exc}") from None


def load_item_resources(items: list[Item], settings: Settings, device: torch.device) -> None:
    """Fetch, probe and decode onto ``device`` every distinct resource the live items' operations
    name (overlay's ``image``), once for the job, with a source's limits (MAX_SOURCE_BYTES,
    FETCH_TIMEOUT_S, MAX_DECODED_PIXELS); each item's plan then holds the decoded images. A
    resource that fails fails the items that use it, with a message naming their field."""
    uses: dict[ImageResource, list[tuple[Item, str]]] = {}
    for item in live(items):
        for field, resource in item.plan.resources():
            uses.setdefault(resource, []).append((item, field))
    loaded: dict[ImageResource, LoadedImage] = {}
    for resource, users in uses.items():
        first = users[0][1]
        try:
            loaded[resource] = load_image(resource, device, field=first, max_bytes=settings.max_source_bytes,
                                          timeout_s=settings.fetch_timeout_s, max_pixels=settings.max_decoded_pixels)
        except Exception as exc:  # noqa: BLE001 - its users fail; the job's other items go on
            message = describe_failure(f"loading {first}", exc)
            for item, field in users:
                item.fail(item.named(message.replace(first, field, 1)))
    for item in live(items):
        if item.plan.resources():
            item.plan = item.plan.with_resources(loaded)


def fetch_all(items: list[Item], settings: Settings, digests: bool, pool: ImagePool) -> None:
    """Every live item's source bytes -> ``data`` (and ``digest`` when ``digests``, on ``pool``'s
    threads)."""
    # Decoding base64 text takes microseconds, less than handing it to a thread; downloads wait
    # on the network.
    each([item for item in items if item.spec.image.url is None], "fetch", fetch, settings)
    each_threaded([item for item in items if item.spec.image.url is not None], "fetch", fetch, settings)
    if digests:  # SHA-256 lets go of the interpreter lock: on the pool's threads
        pool.map(_digest, live(items))


def fetch(item: Item, settings: Settings) -> None:
    started = time.perf_counter()
    source = item.spec.image
    try:
        item.data = fetch_source(source.model_dump(exclude_none=True), max_bytes=settings.max_source_bytes,
                                 timeout_s=settings.fetch_timeout_s)
    except JobError as exc:
        raise type(exc)(item.named(str(exc))) from None
    item.fetch_ms = round((time.perf_counter() - started) * 1000, 3)


def _digest(item: Item) -> None:
    item.digest = hashlib.sha256(item.data).hexdigest()


def probe_item(item: Item, settings: Settings) -> None:
    """The header -> ``info``; refuses images over the pixel limits before decoding."""
    try:
        item.info = probe(item.data)
        item.profile = profile_for(item.info.icc_profile, item.info.mode, item.info.channels)
        check_pixels(item.info, settings.max_decoded_pixels)
        frames.plan_frames(item, settings)  # an animation kept: its frame limits, the stack's info
        check_plan_sizes(item, settings)
    except JobError as exc:
        raise type(exc)(item.named(str(exc))) from None


def check_plan_sizes(item: Item, settings: Settings) -> None:
    """Infer every intermediate size from the header: a plan that would blow up, or a result
    the output format cannot store, is refused here, before decoding. After a data-dependent
    operation (``trim``) sizes are known only once it has run: the plan checks the output-pixel
    limit when the operations after it bind (gpu_worker.plan), the encoder the format's sides."""
    shape = (item.info.channels, item.info.height, item.info.width)
    bound = item.plan.bind(shape)  # (raises LimitExceeded for a step over max_output_pixels)
    frames.check_shape_known(item, bound.shape_known)
    largest = max((s.out_shape for s in bound.steps), key=lambda s: s[1] * s[2], default=shape)
    pixels = largest[1] * largest[2]
    if pixels > settings.max_output_pixels:
        raise LimitExceeded(
            f"the operations would make a {largest[2]}x{largest[1]} image ({pixels:,} pixels), over "
            f"the output-pixel limit MAX_OUTPUT_PIXELS={settings.max_output_pixels:,}")
    fmt = OUTPUT_FORMATS[item.spec.output.format]
    _, h, w = bound.out_shape
    if bound.shape_known and max(h, w) > fmt.max_side:
        raise InvalidInput(f"output.format: {fmt.name} stores at most {fmt.max_side} pixels a side, "
                           f"and the result would be {w}x{h}")


def check_batch_pixels(items: list[Item], settings: Settings) -> None:
    """Refuse the whole job when its images together hold more than MAX_JOB_PIXELS: the
    sources, and each distinct resource image (loaded once) once."""
    resources = {resource.model_dump()["sha256"]: resource.image.shape[1] * resource.image.shape[2]
                 for item in live(items) for _, resource in item.plan.resources()}
    total = sum(frames.decoded_pixels(item.info) for item in live(items)) + sum(resources.values())
    if total > settings.max_job_pixels:
        raise LimitExceeded(
            f"the batch's images hold {total:,} pixels in all, over the per-batch limit "
            f"MAX_JOB_PIXELS={settings.max_job_pixels:,}")


def cache_key(item: Item) -> str:
    """Equal keys, equal responses: the source's digest, the plan, the output and analysis."""
    spec = item.spec
    output = spec.output.model_dump_json(exclude={"upload"})  # every setting that changes the file
    settings = f"{output}:{','.join(spec.analysis_targets)}"
    return f"{item.digest}|{item.plan.key}|{settings}"


def lookup_cache(item: Item, cache: ResultCache) -> None:
    hit = cache.get(cache_key(item))
    if hit is not None:
        item.encoded, analysis, item.result_size, encoded_meta = hit
        item.analysis = dict(analysis)
        item.encoded_meta = dict(encoded_meta)
        item.cached = True
