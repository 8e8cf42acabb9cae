"""The device stages of one chunk of items: decode (convert by the source's ICC profile, analyse
the sources), run the operations (and analyse the results), encode (with the kept metadata and
profile). gpu_worker.overlap runs them chunk by chunk."""

from __future__ import annotations

from typing import Protocol

import torch

from gpu_worker.analysis import analyze
from gpu_worker.stacking import Ran
from gpu_worker.codecs import decode_batch
from gpu_worker.errors import JobError
from gpu_worker.plan import Plan
from gpu_worker.stages.color import convert_sources, profile_to_keep
from gpu_worker.stages import frames
from gpu_worker.stages.item import Item, describe_failure, fail_all, live
from gpu_worker.stages.output import encode_results
from gpu_worker.stages.policy import DevicePolicy


class OpsExecutor(Protocol):
    """Runs plans on decoded images (one plan for all, or one per image); the cross-job batcher
    implements the same call."""

    def __call__(self, plan: Plan | list[Plan], images: list[torch.Tensor]) -> Ran: ...


def decode_chunk(items: list[Item], policy: DevicePolicy) -> list[torch.Tensor]:
    """Decode the live items' sources (and analyse them when asked); returns those tensors."""
    todo = live(items)
    if not todo:
        return []
    stills = [item for item in todo if not frames.is_stack(item)]
    policy.pool.map(lambda item: frames.decode(item, policy.device), [item for item in todo if frames.is_stack(item)])
    if policy.decodes_on_host:  # one image per call, several at once (policy.pool)
        decoded = policy.pool.map(lambda item: _decode([item], policy)[0], stills)
    else:  # one batched call (nvjpeg)
        decoded = _decode(stills, policy) if stills else []
    for item, image in zip(stills, decoded):
        if isinstance(image, Exception):
            item.fail(item.named(str(image)))
        else:
            item.source = image
    convert_sources(todo)
    analyze_items(todo, "source")
    policy.sync()
    return [item.source for item in todo if item.source is not None]


def _decode(items: list[Item], policy: DevicePolicy) -> list[torch.Tensor | JobError]:
    try:
        return decode_batch([item.data for item in items], policy.device, [item.info for item in items],
                            nvjpeg=not policy.decodes_on_host)
    except Exception as exc:  # noqa: BLE001 - decode_batch returns per-item errors; this is a bug
        return [JobError(describe_failure("decoding", exc))] * len(items)


def analyze_items(items: list[Item], target: str) -> None:
    """Add the analysis of each item's source or result, for the items that asked for it."""
    wanted = [item for item in items if item.wants_analysis(target)]
    if not wanted:
        return
    images = [item.source if target == "source" else item.result for item in wanted]
    images = [image[0] if image.dim() == 4 else image for image in images]  # an animation's first frame
    formats = [item.info.format if target == "source" else item.spec.output.format for item in wanted]
    try:
        for item, stats in zip(wanted, analyze(images, formats)):
            item.analysis[target] = stats
    except Exception as exc:  # noqa: BLE001
        fail_all(wanted, f"analysing the {target}", exc)


def run_operations(items: list[Item], executor: OpsExecutor, policy: DevicePolicy) -> None:
    """Run the operations once over each set of items whose plans may stack (equal, or differing
    only in per-sample parameters: gpu_worker.per_sample), stacked where shapes allow; analyse the
    results; on CUDA, copy the results that are encoded on the host off the GPU."""
    by_plan: dict[str, list[Item]] = {}
    for item in live(items):
        by_plan.setdefault(item.plan.stack_key, []).append(item)
    for group in by_plan.values():
        try:
            images, spans = frames.flatten(group)  # a kept animation as its frames
            plans = [item.plan for item, span in zip(group, spans) for _ in range(span.stop - span.start)]
            ran = frames.gather(group, executor(plans, images), spans)
        except Exception as exc:  # noqa: BLE001 - one group's failure must not end the others
            fail_all(group, "running the operations", exc)
            continue
        for item, out, stacked in zip(group, ran.outputs, ran.stacked):
            if isinstance(out, JobError):  # refused for its size after a data-dependent step
                item.fail(item.named(str(out)))
                continue
            item.result, item.source, item.stacked = out, None, stacked
            item.result_size = (out.shape[-1], out.shape[-2])
    analyze_items(items, "result")
    policy.sync()
    if policy.device.type == "cuda":
        _results_to_host([item for item in live(items) if not policy.encodes_on_gpu(item)], policy)


def _results_to_host(items: list[Item], policy: DevicePolicy) -> None:
    """Copy the results that are encoded on the host off the GPU: into pinned memory, every
    copy queued before one wait, so the encodes can run beside the next chunk's kernels."""
    for item in items:
        if item.result.device.type == "cuda":  # (one too large for the GPU is on the host already)
            host = torch.empty(item.result.shape, dtype=torch.uint8, pin_memory=True)
            item.result = host.copy_(item.result, non_blocking=True)
    policy.sync()


def encode_chunk(items: list[Item], policy: DevicePolicy) -> None:
    """Encode on the GPU with nvjpeg, batched, what is encoded there; everything else one image
    per call on the host, several at once (``policy.pool``)."""
    on_gpu: dict[tuple, list[Item]] = {}  # one batched call per output settings, shape and device
    on_host: list[Item] = []
    for item in live(items):  # (a result too large for the GPU stays on the host: gpu_worker.stacking)
        if policy.encodes_on_gpu(item):
            key = (item.spec.output, tuple(item.result.shape), item.result.device)
            on_gpu.setdefault(key, []).append(item)
        else:
            on_host.append(item)
    for group in on_gpu.values():
        _encode(group, nvjpeg=True)
    policy.pool.map(lambda item: _encode([item], nvjpeg=False), on_host)


def _encode(group: list[Item], nvjpeg: bool) -> None:
    """Encode items that share output settings and shape; a failure fails the group."""
    output = group[0].spec.output
    try:
        if frames.is_stack(group[0]):  # one animated file (never grouped: it is encoded on the host)
            batch, timing = group[0].result, group[0].timing
        else:
            batch = group[0].result.unsqueeze(0) if len(group) == 1 else torch.stack([i.result for i in group])
            timing = None
        encoded = encode_results(batch, output, [item.info.metadata for item in group], nvjpeg=nvjpeg,
                                 profiles=[profile_to_keep(item) for item in group], timing=timing)
    except Exception as exc:  # noqa: BLE001
        fail_all(group, f"encoding {output.format}", exc)
        return
    for item, result in zip(group, encoded):
        item.encoded, item.encoded_meta, item.result = result.data, result.metadata, None
