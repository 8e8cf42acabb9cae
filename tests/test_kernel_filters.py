"""kernels.filters against Pillow's ImageFilter fixed filters, on real photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageFilter
from photos import COLOR_PHOTOS, SIZES, max_abs_diff, pil_array, sample, to_array, to_tensor
from tolerances import PILLOW_ATOL

from kernels.filters import FILTER_TABLE, FILTERS, apply_filter

ATOL = PILLOW_ATOL["filter"]
#: Modes tested: the photo modes, and LA (made from RGBA) since Pillow filters its alpha too.
MODES = ("RGB", "L", "RGBA", "LA")


def image(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    if mode == "LA":
        return sample("RGBA", size, name).convert("LA")
    return sample(mode, size, name)


def pillow_filter(im: Image.Image, name: str) -> Image.Image:
    return im.filter(getattr(ImageFilter, name.upper()))


def test_table_is_pillows():
    """Every entry's data is exactly Pillow's filterargs: size, scale, offset, weights in order."""
    assert set(FILTERS) == set(FILTER_TABLE)
    for name, spec in FILTER_TABLE.items():
        size, scale, offset, weights = getattr(ImageFilter, name.upper()).filterargs
        assert size == (spec.size, spec.size), name
        assert (scale, offset) == (spec.scale, spec.offset), name
        assert tuple(weights) == tuple(w for row in spec.weights for w in row), name
        assert all(len(row) == spec.size for row in spec.weights), name


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", FILTERS)
def test_parity_with_pillow(device, name, mode):
    for i, size in enumerate(SIZES):  # each size from another photo
        photo = COLOR_PHOTOS[i % len(COLOR_PHOTOS)]
        im = image(mode, size, photo)
        got = apply_filter(to_tensor(im, device), name)
        assert got.shape == (1, len(im.getbands()), size[1], size[0])
        diff = max_abs_diff(to_array(got), pil_array(pillow_filter(im, name)))
        assert diff <= ATOL, (name, mode, size, photo, diff)


@pytest.mark.parametrize("name", FILTERS)
def test_batched_equals_per_image(device, name):
    size = (61, 43)
    for mode in MODES:
        batch = torch.cat([to_tensor(image(mode, size, p), device) for p in COLOR_PHOTOS])
        out = apply_filter(batch, name)
        for i in range(batch.shape[0]):
            single = apply_filter(batch[i : i + 1], name)
            assert torch.equal(out[i : i + 1], single), (name, mode, i)


@pytest.mark.parametrize("name", FILTERS)
def test_border_is_source_and_small_images_unchanged(device, name):
    k = FILTER_TABLE[name].size
    r = k // 2
    x = to_tensor(image("RGBA", (40, 30)), device)
    out = apply_filter(x, name)
    assert torch.equal(out[..., :r, :], x[..., :r, :])
    assert torch.equal(out[..., -r:, :], x[..., -r:, :])
    assert torch.equal(out[..., :, :r], x[..., :, :r])
    assert torch.equal(out[..., :, -r:], x[..., :, -r:])
    # One side shorter than the kernel: Pillow returns a copy.
    for w, h in ((k - 1, 20), (20, k - 1), (1, 1)):
        small = to_tensor(image("RGB", (w, h)), device)
        assert torch.equal(apply_filter(small, name), small)


def test_emboss_is_flipped_vertically(device):
    """EMBOSS's -1 is at the grid's top-left, but Pillow applies it to the pixel below-left."""
    x = torch.zeros(1, 1, 3, 3, dtype=torch.uint8, device=device)
    x[0, 0, 2, 0] = 100  # below-left of the centre
    assert apply_filter(x, "emboss")[0, 0, 1, 1].item() == 128 - 100
    ref = pil_array(Image.fromarray(x[0, 0].cpu().numpy()).filter(ImageFilter.EMBOSS))
    assert ref[1, 1, 0] == 28


def test_unknown_name_lists_the_choices():
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="'gaussian'.*blur.*smooth_more"):
        apply_filter(x, "gaussian")
    with pytest.raises(ValueError, match="BLUR"):
        apply_filter(x, "BLUR")
