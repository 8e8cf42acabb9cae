"""``kernels.resize`` with a source ``box`` (Pillow's ``Image.resize(size, resample, box)``), the
part of the resize that ``fit``'s crop mode needs: fractional boxes, their single-precision
arithmetic, the crop shortcut, the pass order, and every device's passes."""

from __future__ import annotations

import importlib
import random

import pytest
import torch
from photos import max_abs_diff, photo, pil_array, sample, to_array, to_tensor

from kernels import resize
from kernels import resize_cpu
from kernels.resize_weights import Span

resize_module = importlib.import_module("kernels.resize")
PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}


def _random_cases(seed: int, count: int):
    """(mode, source size, box, output size, filter): boxes anywhere inside the image, fractional
    or touching its edges, outputs smaller and larger than the box along either axis."""
    rng = random.Random(seed)
    for _ in range(count):
        mode = rng.choice(["L", "LA", "RGB", "RGBA"])
        w, h = rng.randint(1, 90), rng.randint(1, 90)
        left = rng.uniform(0, w - 0.01)
        right = rng.uniform(left + 0.01, w)
        top = rng.uniform(0, h - 0.01)
        bottom = rng.uniform(top + 0.01, h)
        if rng.random() < 0.2:
            left, right = 0, w
        if rng.random() < 0.2:
            top, bottom = 0, h
        yield mode, (w, h), (left, top, right, bottom), (rng.randint(1, 120), rng.randint(1, 120)), \
            rng.choice(list(PIL_FILTERS))


def _image(mode, size, name="astronaut.png"):
    return sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)


@pytest.mark.parametrize("seed", range(3))
def test_random_boxes_equal_pillow(device, seed):
    for mode, size, box, out, filter in _random_cases(seed, 120):
        im = _image(mode, size, ("astronaut.png", "coffee.png", "chelsea.png")[seed])
        expected = pil_array(im.resize(out, PIL_FILTERS[filter], box=box))
        got = to_array(resize(to_tensor(im, device), (out[1], out[0]), filter, box=box))
        assert got.shape == expected.shape and max_abs_diff(got, expected) == 0, (mode, size, box, out, filter)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_photo_sized_boxes_equal_pillow_in_any_layout(device, mode):
    """A 512x512 photo: boxes as ``fit`` makes them (a fractional edge, the whole of one axis),
    the CPU's chunked passes, channels-last input (a decoded JPEG) as well as planar."""
    im = photo("astronaut.png").convert(mode)
    image = to_tensor(im, device)
    channels_last = image.contiguous(memory_format=torch.channels_last)
    for box, out in (((64.5, 0, 448.25, 512), (300, 400)), ((0, 37.3, 512, 420.7), (800, 600)),
                     ((10.5, 3, 500, 509), (123, 77))):
        for filter in ("lanczos", "bicubic", "nearest"):
            expected = pil_array(im.resize(out, PIL_FILTERS[filter], box=box))
            for x in (image, channels_last):
                assert max_abs_diff(to_array(resize(x, (out[1], out[0]), filter, box=box)), expected) == 0, (box, filter)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGB"])
def test_a_whole_pixel_box_of_the_output_size_is_pillows_crop(device, mode):
    """Pillow crops instead of resampling there, after RGBA -> RGBa: the colours of translucent
    pixels come back from the premultiplied round trip, not as they were."""
    im = _image(mode, (60, 40))
    expected = pil_array(im.resize((25, 17), 1, box=(7, 9, 32, 26)))
    got = to_array(resize(to_tensor(im, device), (17, 25), "lanczos", box=(7.0, 9, 32, 26)))
    assert max_abs_diff(got, expected) == 0
    if mode != "RGB":
        assert max_abs_diff(got, pil_array(im.crop((7, 9, 32, 26)))) > 0, "the round trip should show"


def test_the_pass_order_follows_the_image_size_not_the_box():
    """Pillow 13 goes vertical first from the image's sizes; with this box the box's sizes would
    say the opposite, and the two orders give different pixels here."""
    im = sample("RGB", (22, 48), "astronaut.png")
    box, out = (0.2, 11.5, 4.2, 18.2), (46, 33)
    expected = pil_array(im.resize(out, 1, box=box))
    assert max_abs_diff(to_array(resize(to_tensor(im), (33, 46), "lanczos", box=box)), expected) == 0


@pytest.mark.parametrize("seed", range(2))
def test_cpu_box_passes_equal_the_tap_loop(seed):
    """With a span the CPU's gathered matmul gives the tap loop's integers (what CUDA runs)."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(40):
        size = rng.choice([5, 17, 300, 1000, 1920])
        in0 = rng.uniform(0, size * 0.6)
        in1 = rng.uniform(in0 + 0.5, size)
        out_size = rng.choice([1, 3, 40, 97, 801, size])
        filter = rng.choice(["bilinear", "bicubic", "lanczos"])
        span = resize_module._axis(size, in0, in1, out_size, filter)
        end = resize_module._taps_end(span, out_size, filter)
        planes = torch.randint(0, 256, (1, rng.choice([1, 4]), rng.choice([1, 7]), end - span.first),
                               generator=generator, dtype=torch.uint8)
        for dim, source in ((3, planes), (2, planes.transpose(2, 3).contiguous())):
            expected = resize_module._taps_pass(source, out_size, filter, dim, span)
            assert torch.equal(resize_cpu.resample_pass(source, out_size, filter, dim, span), expected)


def test_no_box_and_the_whole_box_are_the_same_resize(device):
    image = to_tensor(sample("RGBA", (97, 61)), device)
    for filter in ("lanczos", "nearest"):
        assert torch.equal(resize(image, (40, 50), filter), resize(image, (40, 50), filter, box=(0, 0, 97, 61)))
    assert torch.equal(resize(image, (61, 97), box=(0, 0, 97, 61)), image)


@pytest.mark.parametrize("box", [(0, 0, 10), (-1, 0, 5, 5), (0, 0, 11, 5), (3, 0, 3, 5), (0, 0, float("nan"), 5),
                                 (0, 0, "5", 5), (0, True, 5, 5)])
def test_bad_boxes_are_refused(box):
    with pytest.raises(ValueError, match="box"):
        resize(torch.zeros((1, 3, 8, 10), dtype=torch.uint8), (4, 4), box=box)


def test_span_weights_reduce_to_the_whole_axis():
    from kernels.resize_weights import pillow_coeffs

    assert pillow_coeffs(97, 40, "lanczos") == pillow_coeffs(97, 40, "lanczos", Span(97, 0.0, 97.0, 0))
