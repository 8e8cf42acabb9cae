"""The shared check every kernel passes: the package conventions of kernels/__init__.py.

Input not modified, a new uint8 tensor on the input's device, batched equal to per-image, an empty
batch handled, and a wrong dtype or shape refused (TypeError / ValueError), for every mode.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from photos import COLOR_PHOTOS, sample, to_tensor

from kernels.color import adjust, grayscale
from kernels.crop import crop
from kernels.filters import FILTERS, apply_filter
from kernels.resize import resize

Kernel = Callable[[torch.Tensor], torch.Tensor]

#: id -> the kernel with fixed arguments. Every public kernel appears here.
KERNELS: dict[str, Kernel] = {
    **{f"filter-{name}": (lambda x, name=name: apply_filter(x, name)) for name in FILTERS},
    "grayscale": grayscale,
    "adjust": lambda x: adjust(x, brightness=1.2, contrast=0.5, saturation=2.0),
    "adjust-contrast": lambda x: adjust(x, contrast=3.7),
    "crop-inside": lambda x: crop(x, (3, 2, 20, 15)),
    "crop-overlap": lambda x: crop(x, (-4, 10, 30, 40)),
    "resize-down-lanczos": lambda x: resize(x, size=(13, 17), filter="lanczos"),
    "resize-up-bicubic": lambda x: resize(x, size=(40, 50), filter="bicubic"),
    "resize-nearest": lambda x: resize(x, size=(20, 11), filter="nearest"),
}

#: Channel count -> mode of the test photos (LA is made from RGBA).
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
SIZE = (29, 23)  # width, height: small, odd, larger than every kernel


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
