"""The Python API: ``Pipeline(operations)`` compiled once, called on tensors, PIL images or arrays."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from gpu_worker.stacking import run_plan, run_stack
from gpu_worker.device import select_device
from gpu_worker.interop import array_to_tensor, pil_to_tensor, tensor_to_array, tensor_to_pil
from gpu_worker.plan import Plan, compile_plan


class Pipeline:
    """A list of operations compiled once and run on batches on one device.

    Args:
        operations: the job's operations, e.g. ``[{"type": "resize", "params": {"width": 800}}]``,
            or an already compiled :class:`~gpu_worker.plan.Plan`.
        device: "cpu", "cuda", "cuda:N", a ``torch.device``, or None: ``$GPU_WORKER_DEVICE`` if
            set, else CUDA when available, else CPU.
        max_batch_pixels: cap on pixels stacked into one kernel call (None: no cap).

    Calling it:

    * a uint8 tensor ``(C, H, W)`` or ``(B, C, H, W)`` gives a uint8 tensor of the same rank on
      the same device (computed on the pipeline's device);
    * a PIL image, or a list of them (any mode; palette and others converted), gives PIL images
      of mode L, LA, RGB or RGBA (grayscale gives L);
    * a uint8 numpy array ``(H, W)``, ``(H, W, C)``, or a list of them, gives numpy arrays
      laid out the same way;
    * a list of tensors ``(C, H, W)`` of mixed shapes gives a list; same shapes run stacked.

    Example:

    >>> from gpu_worker import Pipeline
    >>> from PIL import Image
    >>> thumb = Pipeline([
    ...     {"type": "resize", "params": {"width": 64}},
    ...     {"type": "filter", "params": {"name": "sharpen"}},
    ... ], device="cpu")
    >>> thumb(Image.new("RGB", (256, 128), "teal")).size
    (64, 32)
    >>> thumb(torch.zeros(8, 3, 128, 256, dtype=torch.uint8)).shape
    torch.Size([8, 3, 32, 64])
    """

    def __init__(self, operations: Sequence[dict] | Plan, device: str | torch.device | None = None,
                 max_batch_pixels: int | None = None):
        self.plan = operations if isinstance(operations, Plan) else compile_plan(operations)
        self.device = select_device(device)
        self.max_batch_pixels = max_batch_pixels

    def __repr__(self) -> str:
        return f"Pipeline({self.plan.key}, device={self.device})"

    def output_size(self, width: int, height: int, channels: int = 3) -> tuple[int, int]:
        """(width, height) of the result for a ``width`` x ``height`` input, without running."""
        _, h, w = self.plan.output_shape((channels, height, width))
        return w, h

    def __call__(self, images: Any) -> Any:
        if isinstance(images, torch.Tensor):
            return self._run_tensor(images)
        if isinstance(images, Image.Image):
            return self.run_pil([images])[0]
        if isinstance(images, np.ndarray):
            return self._run_arrays([images])[0]
        if isinstance(images, (list, tuple)):
            if not images:
                return []
            first = images[0]
            if all(isinstance(im, Image.Image) for im in images):
                return self.run_pil(images)
            if all(isinstance(im, np.ndarray) for im in images):
                return self._run_arrays(images)
            if all(isinstance(im, torch.Tensor) and im.ndim == 3 for im in images):
                return self.run_tensors(images)
            raise TypeError(f"a list must hold only PIL images, only numpy arrays or only (C, H, W) tensors; "
                            f"got {type(first).__name__} first")
        raise TypeError(f"Pipeline takes a tensor, a PIL image, a numpy array or a list of them, "
                        f"got {type(images).__name__}")

    def run_tensors(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """uint8 ``(C, H, W)`` tensors of any shapes -> results, each on its input's device."""
        for i, image in enumerate(images):
            if image.dtype != torch.uint8 or image.ndim != 3:
                raise TypeError(f"images[{i}] must be a uint8 (C, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
        on_device = [image.to(self.device, non_blocking=True) for image in images]
        results = run_plan(self.plan, on_device, self.max_batch_pixels)
        return [out.to(src.device) for out, src in zip(results, images)]

    def run_pil(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """PIL images -> PIL images (L, LA, RGB or RGBA), same-sized ones run as one batch."""
        results = self.run_tensors([pil_to_tensor(im) for im in images])
        return [tensor_to_pil(out) for out in results]

    def _run_arrays(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        results = self.run_tensors([array_to_tensor(a) for a in arrays])
        return [tensor_to_array(out, squeeze_gray=a.ndim == 2) for out, a in zip(results, arrays)]

    def _run_tensor(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"tensors must be uint8, got {images.dtype}")
        if images.ndim == 3:
            return self.run_tensors([images])[0]
        if images.ndim != 4:
            raise ValueError(f"tensors must be (C, H, W) or (B, C, H, W), got shape {tuple(images.shape)}")
        bound = self.plan.bind(tuple(images.shape[1:]))
        if images.shape[0] == 0:
            return images.new_empty((0, *bound.out_shape))
        return run_stack(bound, images.to(self.device, non_blocking=True)).to(images.device)
