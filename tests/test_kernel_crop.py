"""kernels.crop against Pillow's Image.crop, on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from photos import COLOR_PHOTOS, MODES, max_abs_diff, pil_array, sample, to_array, to_tensor
from tolerances import PILLOW_ATOL

from kernels.crop import crop

SIZE = (97, 61)  # width, height


def boxes(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Boxes inside, across every edge and corner, around the whole image, and wholly outside."""
    return [
        (10, 7, 50, 40),  # inside
        (0, 0, w, h),  # the whole image
        (w - 1, h - 1, w, h),  # the last pixel
        (0, 0, 1, 1),  # the first pixel
        (-5, 10, 20, 30),  # across the left edge
        (10, -8, 30, 20),  # across the top edge
        (w - 10, 5, w + 7, 25),  # across the right edge
        (5, h - 3, 40, h + 9),  # across the bottom edge
        (-3, -4, 5, 6),  # across the top-left corner
        (w - 2, h - 2, w + 3, h + 3),  # across the bottom-right corner
        (-10, -10, w + 10, h + 10),  # around the whole image
        (w, 0, w + 5, 5),  # just right of the image
        (-7, -9, -1, -2),  # above-left, wholly outside
        (w + 100, h + 100, w + 103, h + 101),  # far away
    ]


@pytest.mark.parametrize("mode", MODES + ("LA",))
def test_parity_with_pillow(device, mode):
    for photo in COLOR_PHOTOS[:2]:
        im = sample("RGBA" if mode == "LA" else mode, SIZE, photo).convert(mode)
        x = to_tensor(im, device)
        for box in boxes(*SIZE):
            got = crop(x, box)
            expected = pil_array(im.crop(box))
            assert got.shape == (1, x.shape[1], box[3] - box[1], box[2] - box[0]), box
            assert max_abs_diff(to_array(got), expected) <= PILLOW_ATOL["crop"], (mode, box)


@pytest.mark.parametrize("size", ((1, 1), (2, 2), (3, 5)))
def test_tiny_images(device, size):
    im = sample("RGBA", size)
    x = to_tensor(im, device)
    for box in ((0, 0, 1, 1), (-1, -1, 2, 2), (1, 1, 4, 4), (-2, 0, 0, 1)):
        assert np.array_equal(to_array(crop(x, box)), pil_array(im.crop(box))), (size, box)


def test_outside_is_zero_in_every_channel(device):
    x = torch.full((2, 4, 6, 8), 200, dtype=torch.uint8, device=device)
    out = crop(x, (-2, -3, 10, 9))
    assert out.shape == (2, 4, 12, 12)
    assert int(out.sum()) == 2 * 4 * 6 * 8 * 200
    assert torch.equal(out[:, :, 3:9, 2:10], x)


def test_batched_equals_per_image(device):
    batch = torch.cat([to_tensor(sample("RGB", SIZE, p), device) for p in COLOR_PHOTOS])
    for box in boxes(*SIZE):
        out = crop(batch, box)
        for i in range(batch.shape[0]):
            assert torch.equal(out[i : i + 1], crop(batch[i : i + 1], box)), box


def test_whole_image_box_is_a_copy(device):
    x = to_tensor(sample("RGB", SIZE), device)
    out = crop(x, (0, 0, SIZE[0], SIZE[1]))
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize(
    "box",
    [(10, 10, 10, 20), (10, 10, 20, 10), (10, 10, 5, 20), (10, 10, 20, 5), (0, 0, -1, -1)],
    ids=str,
)
def test_empty_box_is_refused_naming_it(box):
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=str(box).replace("(", r"\(").replace(")", r"\)")):
        crop(x, box)


@pytest.mark.parametrize(
    "box", [(0, 0, 4), (0, 0, 4, 4, 4), (0.0, 0, 4, 4), ("0", 0, 4, 4), (True, 0, 4, 4), None]
)
def test_malformed_box_is_refused(box):
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="box"):
        crop(x, box)
