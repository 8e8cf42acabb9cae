"""kernels.convolve (a user's ImageFilter.Kernel) against Pillow: random real-valued kernels,
scales and offsets, both sizes, every mode; the named filters given as data; degenerate kernels."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image, ImageFilter
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor

from kernels.filters import FILTER_TABLE, apply_filter, convolve

MODES = ("L", "LA", "RGB", "RGBA")


def image(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    return sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)


def pillow(im: Image.Image, size: int, kernel, scale, offset) -> Image.Image:
    return im.filter(ImageFilter.Kernel((size, size), kernel, scale, offset))


@pytest.mark.parametrize("mode", MODES)
def test_random_kernels_equal_pillow(device, mode):
    rng = random.Random(15)
    im = image(mode, (45, 38), COLOR_PHOTOS[2])
    x = to_tensor(im, device)
    for case in range(24):
        size = (3, 5)[case % 2]
        if case % 3 == 0:  # integers, Pillow's default scale
            kernel = [rng.randint(-4, 9) for _ in range(size * size)]
            scale, offset = (sum(kernel) or 1), rng.choice((0, 128, -20))
        else:
            kernel = [round(rng.uniform(-3, 5), rng.choice((1, 3, 7))) for _ in range(size * size)]
            scale, offset = rng.choice((1, 7, 0.37, -2.5, sum(kernel) or 1)), rng.uniform(-50, 50)
        got = convolve(x, size, kernel, scale, offset)
        diff = max_abs_diff(to_array(got), pil_array(pillow(im, size, kernel, scale, offset)))
        assert diff == 0, (size, kernel, scale, offset, diff)  # measured: exact


def test_named_filters_as_data_equal_apply_filter(device):
    x = to_tensor(image("RGBA", (33, 27)), device)
    for name, spec in FILTER_TABLE.items():
        flat = [w for row in spec.weights for w in row]
        assert torch.equal(convolve(x, spec.size, flat, spec.scale, spec.offset), apply_filter(x, name)), name
        floats = [float(w) for w in flat]
        assert torch.equal(convolve(x, spec.size, floats, float(spec.scale), float(spec.offset)),
                           apply_filter(x, name)), name


def test_degenerate_kernels(device):
    im = image("RGB", (20, 16))
    x = to_tensor(im, device)
    zeros = [0] * 9
    expected = pil_array(pillow(im, 3, zeros, 1, 77.3))
    assert max_abs_diff(to_array(convolve(x, 3, zeros, None, 77.3)), expected) == 0
    # Sum 0: the default scale is 1.
    edge = [1, -1, 0, 0, 0, 0, 0, 0, 0]
    assert max_abs_diff(to_array(convolve(x, 3, edge)), pil_array(pillow(im, 3, edge, 1, 0))) == 0
    # Smaller than the kernel: a copy.
    small = to_tensor(image("RGB", (4, 9)), device)
    assert torch.equal(convolve(small, 5, [1] * 25), small)


def test_bad_arguments():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    for args in ((4, [1] * 16), (3, [1] * 8), (5, [1] * 9), (3, [1] * 8 + [float("nan")]), (True, [1] * 9)):
        with pytest.raises(ValueError):
            convolve(x, *args)
    with pytest.raises(ValueError):
        convolve(x, 3, [1] * 9, scale=0)
