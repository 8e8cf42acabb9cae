"""The Python API: ``Pipeline(operations)`` compiled once, called on tensors, PIL images or arrays.

After its Pillow-exact operations a pipeline may run the caller's own torch or Kornia modules
(``then``): on the pipeline's device, on float32 ``(B, C, H, W)`` batches in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from gpu_worker.stacking import chunks, group_by_shape, run_plan, run_stack
from gpu_worker.device import select_device
from gpu_worker.interop import array_to_tensor, pil_to_tensor, tensor_to_array, tensor_to_pil
from gpu_worker.plan import Plan, compile_plan
from gpu_worker.resources import load_resources

#: A custom step: a ``torch.nn.Module`` (a Kornia module is one) or a function, float32
#: ``(B, C, H, W)`` in ``[0, 1]`` -> floating ``(B, C', H', W')``.
Step = Union[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]


class Pipeline:
    """A list of operations compiled once and run on batches on one device.

    Args:
        operations: the job's operations, e.g. ``[{"type": "resize", "params": {"width": 800}}]``,
            or an already compiled :class:`~gpu_worker.plan.Plan`.
        device: "cpu", "cuda", "cuda:N", a ``torch.device``, or None: ``$GPU_WORKER_DEVICE`` if
            set, else CUDA when available, else CPU.
        max_stack_pixels: cap on pixels stacked into one kernel call (None: no cap).
        then: custom steps run after the operations, in order (also :meth:`then`): each a
            ``torch.nn.Module`` (a Kornia module such as ``kornia.filters.GaussianBlur2d``, or your
            own) or a function on tensors. Not Pillow-exact: they are yours.

    Custom steps run on the pipeline's device, under ``torch.no_grad()``, on stacks of same-sized
    results. They follow Kornia's convention: the first step receives the Pillow-exact uint8 result
    as float32 ``(B, C, H, W)`` in ``[0, 1]`` (``x.float() / 255``); each step must return a
    floating ``(B, C', H', W')`` tensor with the same B and C' in 1..4 (L, LA, RGB, RGBA; it may
    change the size and the channels), which the next step receives as it is; the last step's result
    is brought back to uint8 by ``(y * 255).round().clamp(0, 255)``. Anything else (another type,
    an integer dtype, a wrong rank, batch size or channel count, NaN or infinity) raises an error
    naming the step. ``nn.Module`` steps are moved to the pipeline's device (``Module.to``, in
    place) when the pipeline is made. The job schema has no custom steps: they are a library
    feature. :meth:`output_size` covers the operations only and raises when there are custom
    steps.

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

    A custom step after the Pillow-exact ones (a Kornia module, or any function on tensors):

    >>> import kornia
    >>> soft = thumb.then(kornia.filters.GaussianBlur2d((5, 5), (1.5, 1.5)), lambda x: x ** 0.9)
    >>> soft(torch.zeros(2, 3, 128, 256, dtype=torch.uint8)).shape
    torch.Size([2, 3, 32, 64])
    """

    def __init__(self, operations: Sequence[dict] | Plan, device: str | torch.device | None = None,
                 max_stack_pixels: int | None = None, then: Sequence[Step] = ()):
        self.device = select_device(device)
        # Images that parameters name (overlay's image) are fetched and decoded once, here.
        self.plan = load_resources(operations if isinstance(operations, Plan) else compile_plan(operations), self.device)
        self.max_stack_pixels = max_stack_pixels
        self.steps: tuple[Step, ...] = tuple(then)
        for i, step in enumerate(self.steps):
            if not callable(step):
                raise TypeError(f"then[{i}] must be a torch.nn.Module or a function of a tensor, "
                                f"got {type(step).__name__}")
            if isinstance(step, torch.nn.Module):
                step.to(self.device)

    def then(self, *steps: Step) -> "Pipeline":
        """A new pipeline: this one's operations, device and custom steps, then ``steps``."""
        return Pipeline(self.plan, self.device, self.max_stack_pixels, then=(*self.steps, *steps))

    def __repr__(self) -> str:
        then = f", then={[_step_name(s) for s in self.steps]}" if self.steps else ""
        return f"Pipeline({self.plan.key}, device={self.device}{then})"

    def output_size(self, width: int, height: int, channels: int = 3) -> tuple[int, int]:
        """(width, height) of the result for a ``width`` x ``height`` input, without running.

        Raises ValueError when the pipeline has custom steps, whose sizes are known only by
        running them (``Pipeline(pipeline.plan).output_size(...)`` gives the size they receive),
        or an operation whose output size depends on the pixels (``trim``).
        """
        if self.steps:
            raise ValueError("output_size cannot predict custom steps (they may change the size); "
                             "Pipeline(pipeline.plan).output_size(...) gives the size the first one receives")
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
        results = run_plan(self.plan, on_device, self.max_stack_pixels)
        if self.steps:
            results = self._steps_on_groups(results)
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
        if not bound.shape_known:
            return self._stacked(self.run_tensors(list(images.unbind(0))), bound, images)
        if images.shape[0] == 0 and not self.steps:
            return images.new_empty((0, *bound.out_shape))
        if images.shape[0] == 0:
            out = self._run_steps(torch.empty((0, *bound.out_shape), dtype=torch.uint8, device=self.device))
        else:
            out = run_stack(bound, images.to(self.device, non_blocking=True))
            if self.steps:
                out = torch.cat([self._run_steps(out[i]) for i in self._chunks(out)])
        return out.to(images.device)

    @staticmethod
    def _stacked(results: list[torch.Tensor], bound, images: torch.Tensor) -> torch.Tensor:
        """Results of a data-dependent plan (``trim``) as one (B, C, H, W) tensor: ValueError when
        their sizes differ (a list of (C, H, W) tensors in gives a list out)."""
        if len({tuple(r.shape) for r in results}) > 1:
            raise ValueError(f"the results have different sizes ({bound.steps[-1].name} sizes each image by its "
                             f"pixels), so they cannot be one tensor: pass a list of (C, H, W) tensors instead")
        return torch.stack(results) if results else images.new_empty((0, *bound.out_shape))

    def _chunks(self, batch: torch.Tensor) -> list[list[int]]:
        """Index lists of at most ``max_stack_pixels`` pixels of ``batch`` (B, C, H, W)."""
        pixels = batch.shape[-2] * batch.shape[-1]
        return list(chunks(list(range(batch.shape[0])), pixels, self.max_stack_pixels))

    def _steps_on_groups(self, results: list[torch.Tensor]) -> list[torch.Tensor]:
        """The custom steps on same-shaped results stacked, in chunks; results in input order."""
        out: list[torch.Tensor] = list(results)
        for _, indices in group_by_shape(results).items():
            stack = torch.stack([results[i] for i in indices])
            for chunk in self._chunks(stack):
                for i, image in zip(chunk, self._run_steps(stack[chunk])):
                    out[indices[i]] = image
        return out

    def _run_steps(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) on the device -> the custom steps -> uint8 (B, C', H', W')."""
        x = batch.float().div_(255)
        with torch.no_grad():
            for i, step in enumerate(self.steps):
                x = _checked(step(x), i, step, batch.shape[0])
        return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def _step_name(step: Step) -> str:
    return type(step).__name__ if isinstance(step, torch.nn.Module) else getattr(step, "__name__", repr(step))


def _checked(y: Any, i: int, step: Step, batch: int) -> torch.Tensor:
    """A custom step's result, refused with a clear error unless a floating (B, C, H, W), C 1..4."""
    where = f"custom step then[{i}] ({_step_name(step)})"
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{where} must return a torch.Tensor, got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"{where} must return a floating tensor in [0, 1] (Kornia's convention), got {y.dtype}")
    if y.ndim != 4 or y.shape[0] != batch or not 1 <= y.shape[1] <= 4:
        raise ValueError(f"{where} must return (B, C, H, W) with B = {batch} and C in 1..4, "
                         f"got shape {tuple(y.shape)}")
    if y.numel() and not bool(torch.isfinite(y).all()):
        raise ValueError(f"{where} returned NaN or infinite values")
    return y
