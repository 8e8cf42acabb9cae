"""Decoding a batch job's next chunk while the current one runs.

A batch job goes to the device in chunks (``CHUNK_IMAGES`` images at most). While the job's
thread runs chunk n's operations and encode, a helper thread decodes chunk n+1. On CUDA the two
use different parts of the GPU: nvjpeg decodes baseline JPEGs on the hardware decode engines, the
operations and nvjpeg's encoder run on the SMs. The calls into torchvision's codecs and into the
CUDA driver let go of Python's interpreter lock while they wait.

On CUDA the decode runs on a stream of its own, so it never waits for, nor is waited for by, the
work queued on the job's stream. Each decoded tensor is then marked as used by the job's stream
(``record_stream``): the caching allocator hands its memory to a later decode only once the job's
kernels that read it have finished. That matters because nvjpeg's hardware decoder writes its
output without waiting for the work queued on its stream (pytorch/vision#9606): it must only ever
be given memory that no queued kernel still reads.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import torch

Chunk = TypeVar("Chunk")
#: Decodes one chunk in place; returns the device tensors it made (the chunk's decoded images).
Decode = Callable[[Chunk], Sequence[torch.Tensor]]


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
        pending = helper.submit(_decode_for, consumer, decode, chunks[0])
        for index, chunk in enumerate(chunks):
            decode_ms = pending.result()
            if index + 1 < len(chunks):
                pending = helper.submit(_decode_for, consumer, decode, chunks[index + 1])
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
