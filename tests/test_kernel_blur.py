"""kernels.blur against Pillow's BoxBlur, GaussianBlur and UnsharpMask: what the generic tests do
not cover (many radii, radii larger than the image, tiny images, the float32 radius arithmetic,
the unsharp mask's threshold and rounding)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageFilter
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor

from kernels import blur
from kernels.blur import box_blur, gaussian_blur, unsharp_mask

MODES = ("L", "LA", "RGB", "RGBA")
RADII = (0.1, 0.5, 1, 1.3, 2, 3.75, 7, 16.2, 64, 100)
SIZES = ((37, 29), (1, 1), (2, 7), (9, 3))


def image(mode: str, size: tuple[int, int], name: str = "astronaut.png") -> Image.Image:
    return sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)


def assert_pillow(got: torch.Tensor, expected: Image.Image, what) -> None:
    assert max_abs_diff(to_array(got), pil_array(expected)) == 0, what  # measured: exact


@pytest.mark.parametrize("mode", MODES)
def test_box_and_gaussian_equal_pillow_at_many_radii(device, mode):
    for i, size in enumerate(SIZES):
        im = image(mode, size, COLOR_PHOTOS[i % len(COLOR_PHOTOS)])
        x = to_tensor(im, device)
        for radius in RADII:
            assert_pillow(box_blur(x, radius), im.filter(ImageFilter.BoxBlur(radius)), ("box", size, radius))
            assert_pillow(gaussian_blur(x, radius), im.filter(ImageFilter.GaussianBlur(radius)),
                          ("gaussian", size, radius))


@pytest.mark.parametrize("mode", ("L", "RGBA"))
def test_unsharp_mask_equals_pillow(device, mode):
    im = image(mode, (41, 33), COLOR_PHOTOS[1])
    x = to_tensor(im, device)
    for radius, percent, threshold in ((2, 150, 3), (0, 150, 3), (0.6, 500, 0), (5, 37, 10), (12, 1000, 255),
                                       (1.5, 0, 0)):
        expected = im.filter(ImageFilter.UnsharpMask(radius, percent, threshold))
        assert_pillow(unsharp_mask(x, radius, percent, threshold), expected, (radius, percent, threshold))


def test_pieces_do_not_change_the_result(device, monkeypatch):
    """Tiny pieces (a row or a column at a time, split over several calls) give the same pixels."""
    x = to_tensor(image("RGB", (53, 31)), device)
    expected = gaussian_blur(x, 3.3), box_blur(x, 1.5)
    monkeypatch.setattr(blur, "CPU_PIECE_ELEMENTS", 1)
    monkeypatch.setattr(blur, "PIECE_ELEMENTS", 1)
    assert torch.equal(gaussian_blur(x, 3.3), expected[0])
    assert torch.equal(box_blur(x, 1.5), expected[1])


def test_the_box_weights_sum_to_at_most_one():
    """sigma 2: sigma2 = 4/3, box length sqrt(17), l = 1, a = 3 * (2 - 4) / (6 * (4/3 - 4)) = 0.375."""
    assert blur.gaussian_box_radius(2.0) == pytest.approx(1.375, abs=1e-6)
    for sigma in (0.5, 1.0, 2.0, 10.0, 100.0):
        radius = blur.gaussian_box_radius(sigma)
        r, ww, fw = blur._weights(radius)
        assert (2 * r + 1) * ww + 2 * fw <= 1 << 24


def test_radius_zero_and_bad_arguments():
    x = to_tensor(image("RGB", (12, 10)))
    assert torch.equal(box_blur(x, 0), x) and box_blur(x, 0).data_ptr() != x.data_ptr()
    assert torch.equal(gaussian_blur(x, 0), x)
    for bad in (-1, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError):
            box_blur(x, bad)
        with pytest.raises(ValueError):
            gaussian_blur(x, bad)
    with pytest.raises(ValueError):
        unsharp_mask(x, 2, 1.5, 3)
