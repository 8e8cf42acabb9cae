"""The shared check every kernel passes: the package conventions of kernels/__init__.py.

Input not modified, a new uint8 tensor on the input's device, batched equal to per-image, an empty
batch handled, and a wrong dtype or shape refused (TypeError / ValueError), for every mode.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from photos import COLOR_PHOTOS, sample, to_tensor

from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan
from gpu_worker.resources import load_resources

Kernel = Callable[[torch.Tensor], torch.Tensor]

#: Channel count -> mode of the test photos (LA is made from RGBA).
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
SIZE = (29, 23)  # width, height: small, odd, larger than every kernel


def _kernels() -> dict[str, Kernel]:
    """id -> kernel with fixed arguments: every registered operation's examples, bound to SIZE
    (the kernel of each step; an example that leaves the image as it is has none). A data-dependent
    step's kernel returns one tensor per image (tests/test_trim_overlay.py's
    test_trim_kernel_conventions holds it to the same rules)."""
    found = {}
    for name, entry in REGISTRY.items():
        for i, params in enumerate(entry.examples):
            loaded = load_resources(compile_plan([{"type": name, "params": params}])).ops[0][1]  # overlay's image
            step = entry.bind(loaded, (3, SIZE[1], SIZE[0]))
            if step is not None and not step.data_dependent:
                found[f"{name}-{i}"] = step.kernel
    return found


#: id -> the kernel with fixed arguments. Every registered operation's kernels appear here.
KERNELS: dict[str, Kernel] = _kernels()


def batch(channels: int, device: torch.device, n: int = 3) -> torch.Tensor:
    """n different real photos of one mode, stacked into (n, C, H, W)."""
    mode = MODES[channels]
    ims = [sample("RGBA" if mode == "LA" else mode, SIZE, p) for p in COLOR_PHOTOS[:n]]
    return torch.cat([to_tensor(im.convert(mode), device) for im in ims])


@pytest.fixture(params=list(KERNELS), ids=list(KERNELS))
def kernel(request) -> Kernel:
    return KERNELS[request.param]


@pytest.mark.parametrize("channels", MODES, ids=MODES.values())
def test_contract(device, kernel, channels):
    x = batch(channels, device)
    before = x.clone()
    out = kernel(x)
    assert torch.equal(x, before), "the input was modified"
    assert out.dtype == torch.uint8
    assert out.device == x.device
    assert out.ndim == 4 and out.shape[0] == x.shape[0]
    assert out.data_ptr() != x.data_ptr(), "the result must be a new tensor"
    for i in range(x.shape[0]):
        assert torch.equal(out[i : i + 1], kernel(x[i : i + 1])), f"batched != per-image at {i}"
    # Writing into the result leaves the input alone (no shared storage).
    out.fill_(7)
    assert torch.equal(x, before)


@pytest.mark.parametrize("channels", MODES, ids=MODES.values())
def test_empty_batch(device, kernel, channels):
    x = batch(channels, device, n=1)
    expected = kernel(x).shape[1:]
    out = kernel(x[:0])
    assert out.shape == (0, *expected)
    assert out.dtype == torch.uint8 and out.device == x.device


def test_wrong_input_refused(kernel):
    x = batch(3, torch.device("cpu"), n=1)
    with pytest.raises(TypeError):
        kernel(x.to(torch.float32))
    with pytest.raises(TypeError):
        kernel(x.to(torch.int16))
    with pytest.raises(TypeError):
        kernel(x.numpy())
    with pytest.raises(ValueError):
        kernel(x[0])  # (C, H, W)
    with pytest.raises(ValueError):
        kernel(x.unsqueeze(0))  # 5-D
    with pytest.raises(ValueError):
        kernel(torch.zeros(1, 5, 8, 8, dtype=torch.uint8))  # 5 channels
