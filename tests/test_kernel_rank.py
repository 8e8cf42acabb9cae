"""kernels.rank against Pillow's MedianFilter/MinFilter/MaxFilter and ModeFilter: what the generic
tests do not cover (every size on tiny and odd images, images full of ties, tiny bands, the
sorting network, the bound on what a band holds)."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image, ImageFilter
from photos import max_abs_diff, pil_array, sample, to_array, to_tensor

from kernels import rank
from kernels.rank import RANK_SIZES, mode_filter, rank_filter

PILLOW = {"median": ImageFilter.MedianFilter, "min": ImageFilter.MinFilter, "max": ImageFilter.MaxFilter}
SIZES = ((23, 17), (1, 1), (2, 7), (11, 4))


def image(mode: str, size: tuple[int, int]) -> Image.Image:
    return sample("RGBA", size).convert("LA") if mode == "LA" else sample(mode, size)


@pytest.mark.parametrize("mode", ("L", "LA", "RGB", "RGBA"))
def test_every_size_equals_pillow(device, mode):
    for size in SIZES:
        im = image(mode, size)
        x = to_tensor(im, device)
        for k in RANK_SIZES:
            for kind, make in PILLOW.items():
                diff = max_abs_diff(to_array(rank_filter(x, kind, k)), pil_array(im.filter(make(k))))
                assert diff == 0, (kind, k, size)
            assert max_abs_diff(to_array(mode_filter(x, k)), pil_array(im.filter(ImageFilter.ModeFilter(k)))) == 0


def test_ties_and_tiny_bands(device, monkeypatch):
    """A posterized photo (few levels: long runs, ties between counts), in bands of one row."""
    im = sample("RGB", (30, 22)).point(lambda v: v // 48 * 48)
    x = to_tensor(im, device)
    monkeypatch.setattr(rank, "CPU_BAND_ELEMENTS", 1)
    monkeypatch.setattr(rank, "BAND_ELEMENTS", 1)
    for k in RANK_SIZES:
        assert max_abs_diff(to_array(mode_filter(x, k)), pil_array(im.filter(ImageFilter.ModeFilter(k)))) == 0
        assert max_abs_diff(to_array(rank_filter(x, "median", k)), pil_array(im.filter(ImageFilter.MedianFilter(k)))) == 0
        assert max_abs_diff(to_array(rank_filter(x, "max", k)), pil_array(im.filter(ImageFilter.MaxFilter(k)))) == 0


@pytest.mark.parametrize("n", [9, 25, 49, 81])
def test_the_network_sorts_and_its_pruned_median_is_the_middle(n):
    rng = random.Random(n)
    for _ in range(300):
        values = [rng.randint(0, 6) for _ in range(n)]
        items = list(values)
        for i, j in rank._batcher_pairs(n):
            items[i], items[j] = min(items[i], items[j]), max(items[i], items[j])
        assert items == sorted(values)
        items = list(values)
        for i, j in rank._network_for(n, n // 2):
            items[i], items[j] = min(items[i], items[j]), max(items[i], items[j])
        assert items[n // 2] == sorted(values)[n // 2]


def test_a_band_holds_a_bounded_number_of_taps():
    """The size * size sorted copies exist for one band of rows, not for the image: on a CUDA-sized
    budget a 16-image 1080p RGB stack is cut into bands."""
    planes, pieces = rank._bands(torch.empty(16, 3, 1080, 1920, dtype=torch.uint8, device="meta"), 9, 81)
    rows = pieces[0][2] - pieces[0][1]
    assert 48 * rows * 1920 * 81 <= rank.BAND_ELEMENTS and len(pieces) > 1


def test_bad_arguments():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    for size in (1, 4, 11, True, 3.0):
        with pytest.raises(ValueError):
            rank_filter(x, "median", size)
        with pytest.raises(ValueError):
            mode_filter(x, size)
    with pytest.raises(ValueError):
        rank_filter(x, "mean", 3)
