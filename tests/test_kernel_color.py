"""kernels.color against Pillow's convert("L") and ImageEnhance, on real photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from photos import COLOR_PHOTOS, SIZES, max_abs_diff, pil_array, sample, to_array, to_tensor
from tolerances import PILLOW_ATOL

from kernels.color import _blend, _float32, adjust, grayscale

MODES = ("RGB", "L", "RGBA", "LA")
FACTORS = (0, 0.5, 1, 1.2, 2, 3.7)
#: (brightness, contrast, saturation): each alone at every factor, then combinations.
ADJUSTMENTS = (
    [(f, None, None) for f in FACTORS]
    + [(None, f, None) for f in FACTORS]
    + [(None, None, f) for f in FACTORS]
    + [(1.2, 0.5, 2), (0.5, 3.7, 0), (2, 2, 2), (3.7, 1.2, 0.5), (0, 2, 3.7), (1, 1, 1)]
    + [(0.7, None, 1.6)]
)


def image(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    if mode == "LA":
        return sample("RGBA", size, name).convert("LA")
    return sample(mode, size, name)


def pillow_adjust(im: Image.Image, brightness, contrast, saturation) -> Image.Image:
    if brightness is not None:
        im = ImageEnhance.Brightness(im).enhance(brightness)
    if contrast is not None:
        im = ImageEnhance.Contrast(im).enhance(contrast)
    if saturation is not None:
        im = ImageEnhance.Color(im).enhance(saturation)
    return im


@pytest.mark.parametrize("mode", MODES)
def test_grayscale_parity(device, mode):
    for size in SIZES:
        for photo in COLOR_PHOTOS:
            im = image(mode, size, photo)
            got = grayscale(to_tensor(im, device))
            assert got.shape == (1, 1, size[1], size[0])
            expected = pil_array(im.convert("L"))
            diff = max_abs_diff(to_array(got), expected)
            assert diff <= PILLOW_ATOL["grayscale"], (mode, size, photo, diff)
            if mode in ("RGB", "RGBA"):  # ImageOps.grayscale is convert("L")
                assert np.array_equal(pil_array(ImageOps.grayscale(im)), expected)


def test_grayscale_every_level_and_primaries(device):
    """Gray pixels keep their level; the primaries give Pillow's fixed-point values."""
    levels = torch.arange(256, dtype=torch.uint8, device=device).view(1, 1, 16, 16)
    levels = levels.expand(1, 3, 16, 16)
    assert torch.equal(grayscale(levels)[0, 0], levels[0, 0])
    colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]]
    rgb = torch.tensor(colors, dtype=torch.uint8, device=device)
    got = grayscale(rgb.T.reshape(1, 3, 1, 4)).flatten().tolist()
    expected = [Image.new("RGB", (1, 1), tuple(c)).convert("L").getpixel((0, 0)) for c in colors]
    assert got == expected


@pytest.mark.parametrize("factor", (0, 0.5, 1, 1.2, 2, 3.7, -0.3, 0.1, 0.333, 0.9999))
def test_blend_matches_blend_c_on_every_pair(factor):
    """Image.blend on all 65536 (degenerate, image) level pairs, in and outside [0, 1]."""
    a = np.repeat(np.arange(256, dtype=np.uint8), 256).reshape(256, 256)
    b = np.ascontiguousarray(a.T)
    expected = np.asarray(Image.blend(Image.fromarray(a), Image.fromarray(b), factor))
    got = _blend(torch.from_numpy(a).float(), torch.from_numpy(b).float(), _float32(factor))
    assert np.array_equal(got.to(torch.uint8).numpy(), expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("factors", ADJUSTMENTS, ids=str)
def test_adjust_parity(device, mode, factors):
    for i, size in enumerate(SIZES):  # each size from another photo
        photo = COLOR_PHOTOS[i % len(COLOR_PHOTOS)]
        im = image(mode, size, photo)
        got = adjust(to_tensor(im, device), *factors)
        expected = pil_array(pillow_adjust(im, *factors))
        assert max_abs_diff(to_array(got), expected) <= PILLOW_ATOL["adjust"], (mode, size, photo)


@pytest.mark.parametrize("mode", ("RGBA", "LA"))
def test_adjust_keeps_alpha(device, mode):
    x = to_tensor(image(mode, (61, 43)), device)
    out = adjust(x, brightness=0.3, contrast=3.7, saturation=0)
    assert torch.equal(out[:, -1], x[:, -1])


def test_adjust_saturation_is_identity_on_l(device):
    for mode in ("L", "LA"):
        x = to_tensor(image(mode, (61, 43)), device)
        assert torch.equal(adjust(x, saturation=3.7), x)


@pytest.mark.parametrize("mode", MODES)
def test_batched_equals_per_image(device, mode):
    """Each image gets its own contrast mean: photos with different means in one batch."""
    size = (61, 43)
    batch = torch.cat([to_tensor(image(mode, size, p), device) for p in COLOR_PHOTOS])
    for factors in ((1.2, 0.5, 2), (None, 3.7, None), (0.5, None, 0)):
        out = adjust(batch, *factors)
        gray = grayscale(batch)
        for i in range(batch.shape[0]):
            assert torch.equal(out[i : i + 1], adjust(batch[i : i + 1], *factors)), (factors, i)
            assert torch.equal(gray[i : i + 1], grayscale(batch[i : i + 1]))


@pytest.mark.parametrize("name", ("brightness", "contrast", "saturation"))
@pytest.mark.parametrize("bad", (math.nan, math.inf, -math.inf, 1e39, "1", True, [1.0]), ids=repr)
def test_adjust_refuses_bad_factors(name, bad):
    x = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=name):
        adjust(x, **{name: bad})


def test_adjust_with_no_factor_is_a_copy(device):
    x = to_tensor(image("RGB", (5, 3)), device)
    out = adjust(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("width", [1, 800, 65792, 65793, 70001])  # 65792 * 255 < 2**24 <= 65793 * 255
def test_contrast_mean_is_exact_for_any_width(width):
    """The mean level Contrast blends with: ImageStat's exact integer sum divided as a double,
    rounded half up; float32 row sums are used only where they are exact."""
    from kernels.color import _luma_total, _mean_level

    generator = torch.Generator().manual_seed(width)
    luma = torch.randint(0, 256, (2, 1, 3, width), generator=generator).to(torch.float32)
    luma[1] = 255.0  # the largest row sums
    totals = _luma_total(luma)
    means = _mean_level(totals, 3 * width)
    for b in range(2):
        total = int(luma[b].to(torch.int64).sum())
        assert totals[b].item() == total
        assert means[b].item() == math.floor(total / (3 * width) + 0.5)


def test_saturation_in_pieces_equals_the_whole_image(monkeypatch):
    """On the CPU, adjust with saturation runs a few rows at a time (kernels.color.CPU_PIECE_PIXELS):
    the result equals one piece holding the whole image, for a batch whose rows do not divide
    evenly into pieces, with and without brightness and contrast before it."""
    import kernels.color as color

    batch = torch.cat([to_tensor(sample("RGB", (301, 203), name)) for name in COLOR_PHOTOS[:2]])
    monkeypatch.setattr(color, "CPU_PIECE_PIXELS", 301 * 10)  # 21 pieces per image, the last of 3 rows
    for factors in [(None, None, 1.6), (1.2, 0.7, 0.4), (None, 1.3, 2.0)]:
        pieces = adjust(batch, *factors)
        monkeypatch.setattr(color, "CPU_PIECE_PIXELS", 1 << 30)
        whole = adjust(batch, *factors)
        monkeypatch.setattr(color, "CPU_PIECE_PIXELS", 301 * 10)
        assert torch.equal(pieces, whole), factors
        for i, name in enumerate(COLOR_PHOTOS[:2]):
            expected = pil_array(pillow_adjust(sample("RGB", (301, 203), name), *factors))
            assert max_abs_diff(to_array(pieces[i : i + 1]), expected) <= PILLOW_ATOL["adjust"], (factors, name)
