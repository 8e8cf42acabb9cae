"""One source, a stack of F frames: the stages' hooks for an animation that is kept.

An item whose animation is kept (gpu_worker.codecs.animation: an animated GIF, WebP or APNG
with GIF or WebP out) is marked at probe (`plan_frames`: its ``info`` becomes the stack's, 4
channels, decoder ``ANIMATION_DECODER``, after the frame and pixel limits). From then on:

- decode (`decode`): every frame, ``item.source`` uint8 ``(F, 4, H, W)``, ``item.timing``;
- operations (`flatten`, `gather`): its F frames go to the executor as F images of one shape,
  so on CUDA each operation runs once over them (stacked with other items of that shape and
  plan, as any images are); back come F results of one shape, ``item.result`` ``(F, C, H', W')``;
- encode (`gpu_worker.stages.output.encode_results` with its ``timing``): one animated file, with
  the kept metadata and profile and the size budget as a still image's;
- analysis (of the source or the result) reads the first frame.
"""

from __future__ import annotations

from typing import Any

import torch

from gpu_worker.codecs import animation
from gpu_worker.codecs.probe import SourceInfo
from gpu_worker.config import Settings
from gpu_worker.errors import InvalidInput, JobError
from gpu_worker.stacking import Ran
from gpu_worker.stages.item import Item, describe_failure


def is_stack(item: Item) -> bool:
    """Whether the item's source is read as a stack of all its frames."""
    return item.info is not None and item.info.decoder == animation.ANIMATION_DECODER


def decoded_pixels(info: SourceInfo) -> int:
    """Pixels the item's decode makes: frames x width x height for a kept animation."""
    frames = info.frames if info.decoder == animation.ANIMATION_DECODER else 1
    return frames * info.width * info.height


def plan_frames(item: Item, settings: Settings) -> None:
    """At probe: when the item's animation is kept, check its limits from the header
    (MAX_ANIMATION_FRAMES, frames x pixels against MAX_DECODED_PIXELS) and make ``item.info``
    the stack's."""
    if animation.kept(item.info, item.spec.output.format):
        animation.check_limits(item.info, settings.max_animation_frames, settings.max_decoded_pixels)
        item.info = animation.stacked_info(item.info)


def check_shape_known(item: Item, shape_known: bool) -> None:
    """An animation's frames must keep one size: an operation whose size depends on each
    frame's pixels (``trim``) is refused for a kept animation, before decoding."""
    if is_stack(item) and not shape_known:
        raise InvalidInput(
            "operations: an operation whose output size depends on the pixels (trim) would give each frame "
            f"its own size, and the frames of an animation share one; the {item.info.frames}-frame animation is "
            f"kept because output.format is {item.spec.output.format} (ask for JPEG or PNG to get the first frame)")


def decode(item: Item, device: torch.device) -> None:
    """Every frame of the item's animation -> ``item.source`` ``(F, 4, H, W)`` on ``device`` and
    ``item.timing``; a failure fails the item."""
    try:
        item.source, item.timing = animation.decode_frames(item.data, item.info, device)
    except Exception as exc:  # noqa: BLE001 - one item's failure must not end the others
        item.fail(item.named(describe_failure("decoding an animation", exc)))


def flatten(group: list[Item]) -> tuple[list[torch.Tensor], list[slice]]:
    """The group's images for the executor, a kept animation as its F frames; and the span of
    each item's images in that list."""
    images: list[torch.Tensor] = []
    spans: list[slice] = []
    for item in group:
        start = len(images)
        if is_stack(item):
            images.extend(item.source.unbind(0))
        else:
            images.append(item.source)
        spans.append(slice(start, len(images)))
    return images, spans


def gather(group: list[Item], ran: Ran, spans: list[slice]) -> Ran:
    """The executor's per-image results back to one per item: a kept animation's frames stacked
    into ``(F, C, H, W)``, how many images its largest stack held, or the error of its first
    refused frame (frames of different sizes are refused too)."""
    outputs: list[Any] = []
    stacked: list[int] = []
    for item, span in zip(group, spans):
        outs, counts = ran.outputs[span], ran.stacked[span]
        if not is_stack(item):
            outputs.append(outs[0])
            stacked.append(counts[0])
            continue
        error = next((out for out in outs if isinstance(out, JobError)), None)
        if error is None and len({tuple(out.shape) for out in outs}) > 1:
            error = JobError("the operations gave the frames of the animation different sizes")
        outputs.append(error if error is not None else torch.stack(outs))
        stacked.append(max(counts))
    return Ran(outputs, stacked)


def metadata(item: Item) -> dict[str, Any]:
    """For the response: ``frames`` (in the result) and, for an animated source, ``animation``:
    "kept" or "first frame"."""
    if not animation.is_animation(item.info):
        return {"frames": 1}
    if is_stack(item):  # the frames written (the encoders merge a frame equal to the one before it)
        return {"frames": item.encoded_meta.get("frames", item.info.frames), "animation": "kept"}
    return {"frames": 1, "animation": "first frame"}
