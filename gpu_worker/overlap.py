"""A batch job's chunks through decode, operations and encode, with the stages overlapped.

A batch job goes to the device in chunks (``CHUNK_IMAGES`` images at most). While the job's
thread runs chunk n's operations, a helper thread decodes chunk n+1 and, when chunk n-1's files
are encoded on the host, another helper encodes them. On CUDA these use different parts of the
machine: nvjpeg decodes baseline JPEGs on the GPU's hardware decode engines, the operations run on
the SMs, and host encodes (libjpeg-turbo, PNG, WebP) on the CPU's cores. The calls into
torchvision's codecs, Pillow's encoders and the CUDA driver let go of Python's interpreter lock
while they work or wait.

On CUDA the decode runs on a stream of its own, so it neither waits for nor delays the work
queued on the job's stream. Each decoded tensor is then marked as used by the job's stream
(``record_stream``): the caching allocator hands its memory to a later decode only once the job's
kernels that read it have finished. That matters because nvjpeg's hardware decoder writes its
output without waiting for the work queued on its stream (pytorch/vision#9606): it must only ever
be given memory that no queued kernel still reads. Encodes on the GPU (nvjpeg) stay in the job's
thread: torchvision's nvjpeg encoder has a history of corrupt files when called beside other
threads' kernels (pytorch/vision#8587, #9060).

The helpers run their work in a copy of the calling thread's context, so the kernels they call
(the ICC conversion at decode) run as the job's (:mod:`kernels.context`).
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Hashable, Iterator, Sequence, TypeVar

import torch

from gpu_worker.stacking import chunks

Chunk = TypeVar("Chunk")
Item = TypeVar("Item")
#: Decodes one chunk in place; returns the device tensors it made (the chunk's decoded images).
Decode = Callable[[Chunk], Sequence[torch.Tensor]]
#: Runs one stage on one chunk in place.
Stage = Callable[[Chunk], None]


def split_into_chunks(items: Sequence[Item], stack_key: Callable[[Item], Hashable], pixels: Callable[[Item], int],
                      chunk_images: int, max_pixels: int | None) -> list[list[Item]]:
    """``items`` in chunks of at most ``chunk_images`` (0: no limit) and ``max_pixels`` pixels,
    those with equal ``stack_key`` (same operations, same decoded shape) next to each other, so
    that they share chunks and run as few, large stacks."""
    largest = max((pixels(item) for item in items), default=1)
    per_chunk = chunk_images or len(items)
    ordered = sorted(items, key=stack_key)
    return [[ordered[i] for i in indices[start : start + per_chunk]]
            for indices in chunks(list(range(len(ordered))), largest, max_pixels)
            for start in range(0, len(indices), per_chunk)]


def run_chunks(chunks: Sequence[Chunk], decode: Decode, run: Stage, encode: Stage, device: torch.device,
               encode_behind: Callable[[Chunk], bool], done: Stage = lambda chunk: None) -> dict[str, float]:
    """Decode, ``run`` and encode every chunk; returns the ms each stage took, summed over chunks.

    Chunk n+1 decodes on a helper thread while ``run`` works on chunk n in the calling thread
    (:func:`decoded_ahead`). A chunk for which ``encode_behind(chunk)`` is true (its encode works
    on the host only; ``run`` has left its results there) is encoded on a second helper while
    ``run`` works on the next chunk; otherwise the calling thread encodes it right after ``run``.
    ``done(chunk)`` is called in the calling thread, in order, once a chunk is encoded. An
    exception raised by a stage reaches the caller once the stages already started have finished.
    """
    totals = {"decode": 0.0, "ops": 0.0, "encode": 0.0}
    with ThreadPoolExecutor(1, thread_name_prefix="encode-behind") as encoder:
        behind: tuple[Chunk, Future[float]] | None = None

        def catch_up() -> None:  # the encode running behind: wait for it, then report its chunk
            nonlocal behind
            if behind is not None:
                chunk, encoding = behind
                behind = None
                totals["encode"] += encoding.result()
                done(chunk)

        for chunk, decode_ms in decoded_ahead(chunks, decode, device):
            totals["decode"] += decode_ms
            totals["ops"] += _timed(run, chunk)
            catch_up()
            if encode_behind(chunk) and len(chunks) > 1:
                behind = (chunk, _submit(encoder, _timed, encode, chunk))
            else:
                totals["encode"] += _timed(encode, chunk)
                done(chunk)
        catch_up()
    return totals


def decoded_ahead(chunks: Sequence[Chunk], decode: Decode, device: torch.device) -> Iterator[tuple[Chunk, float]]:
    """Yield ``(chunk, decode ms)`` in order, each once ``decode(chunk)`` has finished; while the
    caller works on one chunk, the next one is decoded on a helper thread.

    A lone chunk is decoded in the calling thread (there is nothing to overlap). An exception
    raised by ``decode`` reaches the caller at the chunk it was raised for. On CUDA the tensors
    ``decode`` returns are ready to use on the caller's current stream.
    """
    consumer = torch.cuda.current_stream(device) if device.type == "cuda" else None
    if len(chunks) <= 1:
        for chunk in chunks:
            yield chunk, _decode_for(consumer, decode, chunk)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="decode-ahead") as helper:
        pending = _submit(helper, _decode_for, consumer, decode, chunks[0])
        for index, chunk in enumerate(chunks):
            decode_ms = pending.result()
            if index + 1 < len(chunks):
                pending = _submit(helper, _decode_for, consumer, decode, chunks[index + 1])
            yield chunk, decode_ms


def _decode_for(consumer: torch.cuda.Stream | None, decode: Decode, chunk: Chunk) -> float:
    """``decode(chunk)`` made ready for ``consumer`` (None: not CUDA); returns the ms it took."""
    started = time.perf_counter()
    if consumer is None:
        decode(chunk)
    else:
        side = torch.cuda.Stream(consumer.device)
        with torch.cuda.stream(side):
            made = decode(chunk)
        side.synchronize()  # the chunk is complete before the caller's kernels read it
        for tensor in made:
            tensor.record_stream(consumer)
    return (time.perf_counter() - started) * 1000


def _submit(executor: ThreadPoolExecutor, work: Callable[..., float], *args) -> Future[float]:
    """``executor.submit(work, *args)``, run in a copy of this thread's context."""
    return executor.submit(contextvars.copy_context().run, work, *args)


def _timed(stage: Stage, chunk: Chunk) -> float:
    started = time.perf_counter()
    stage(chunk)
    return (time.perf_counter() - started) * 1000
