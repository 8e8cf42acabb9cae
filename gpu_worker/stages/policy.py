"""Where a job's work runs (which codec where, on which host threads, how the kernels run),
decided once from the settings and the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu_worker.config import Settings
from gpu_worker.cpu_pool import ImagePool, available_cores, shared_pool
from gpu_worker.formats import OUTPUT_FORMATS
from gpu_worker.stages.item import Item, live
from kernels.context import KernelContext


@dataclass(frozen=True)
class DevicePolicy:
    """Where a job's decodes, operations and encodes run. What is stacked follows the device
    (``gpu_worker.stacking.runs_stacked``: CUDA runs stacks, the CPU one image per pool thread).

    Attributes:
        device: where decode, operations and encode put their tensors.
        pool: the host's threads (``CPU_THREADS``, default: every core this process may use):
            images run on them one per thread (gpu_worker.cpu_pool). On the CPU they run the
            operations and the codecs; on CUDA, the codecs that run on the host.
        kernels: how the kernels run (kernels.context), entered around each job: on the CPU, a
            lone image's kernel is spread over ``pool`` in pieces; on CUDA the resize passes
            are compiled unless ``CUDA_COMPILE=0``.
        decodes_on_host: decode one image per call on the host's threads (``pool``):
            on the CPU, and on CUDA with ``CUDA_JPEG_CODEC=libjpeg``. Otherwise the JPEGs of a
            chunk go to nvjpeg in one batched call.
        nvjpeg_encodes: results in a format with a GPU encoder (the formats table's
            ``gpu_encoder``: JPEG, by nvjpeg) are encoded on the GPU, batched
            (``CUDA_JPEG_CODEC=nvjpeg``); every other result is encoded on the host's threads.
    """

    device: torch.device
    pool: ImagePool
    kernels: KernelContext
    decodes_on_host: bool
    nvjpeg_encodes: bool

    @classmethod
    def decide(cls, settings: Settings, device: torch.device) -> "DevicePolicy":
        cuda = device.type == "cuda"
        pool = shared_pool(settings.cpu_threads or available_cores())
        spread = not cuda and pool.threads > 1  # a lone image's pieces over the pool's threads
        return cls(device=device, pool=pool,
                   kernels=KernelContext(piece_map=pool.map if spread else None,
                                         compiled_resize=bool(settings.cuda_compile)),
                   decodes_on_host=not cuda or settings.cuda_jpeg_codec == "libjpeg",
                   nvjpeg_encodes=cuda and settings.cuda_jpeg_codec == "nvjpeg")

    def encodes_on_gpu(self, item: Item) -> bool:
        """Whether this item's result is encoded on the GPU (a format with a GPU encoder, JPEG's
        nvjpeg, and ``CUDA_JPEG_CODEC=nvjpeg``)."""
        return self.nvjpeg_encodes and OUTPUT_FORMATS[item.spec.output.format].gpu_encoder

    def encodes_on_host(self, chunk: list[Item]) -> bool:
        """Whether all of the chunk's encodes run on the host (so they can run behind the next
        chunk's operations, gpu_worker.overlap)."""
        return not any(self.encodes_on_gpu(item) for item in live(chunk))

    def sync(self) -> None:
        """Wait for the work this thread queued on the device, so stage timings measure the stage
        (CUDA is asynchronous). Only this thread's stream: the decode of the next chunk, on its
        own stream (gpu_worker.overlap), goes on meanwhile."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
