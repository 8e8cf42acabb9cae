"""Which codec runs where, decided once from the settings and the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu_worker.config import Settings
from gpu_worker.stages.item import Item, live


@dataclass(frozen=True)
class DevicePolicy:
    """Where a job's decodes and encodes run.

    Attributes:
        device: where decode, operations and encode put their tensors.
        decodes_on_host: decode one image per call on the host's threads (gpu_worker.cpu_pool):
            on the CPU, and on CUDA with ``CUDA_JPEG_CODEC=libjpeg``. Otherwise the JPEGs of a
            chunk go to nvjpeg in one batched call.
        nvjpeg_encodes: JPEG results are encoded by nvjpeg on the GPU, batched
            (``CUDA_JPEG_CODEC=nvjpeg``); every other result is encoded on the host's threads.
    """

    device: torch.device
    decodes_on_host: bool
    nvjpeg_encodes: bool

    @classmethod
    def decide(cls, settings: Settings, device: torch.device) -> "DevicePolicy":
        cuda = device.type == "cuda"
        return cls(device=device,
                   decodes_on_host=not cuda or settings.cuda_jpeg_codec == "libjpeg",
                   nvjpeg_encodes=cuda and settings.cuda_jpeg_codec == "nvjpeg")

    def encodes_on_gpu(self, item: Item) -> bool:
        """Whether nvjpeg encodes this item's result (JPEG out, ``CUDA_JPEG_CODEC=nvjpeg``)."""
        return self.nvjpeg_encodes and item.spec.output.format == "JPEG"

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
