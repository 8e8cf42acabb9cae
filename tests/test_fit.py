"""What is special about ``fit``: Pillow parity on whole photos (fractional source boxes,
enlarging, every gravity), the smart crop's choosers held to photos with a clear subject and to
libvips' ``smartcrop``, a window per image of a stack, and its parameters refused before decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from photos import max_abs_diff, photo, pil_array, to_array, to_tensor

import kernels
from gpu_worker.errors import InvalidInput
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan

FIT = REGISTRY["fit"]


def _run(image: torch.Tensor, params: dict) -> torch.Tensor:
    bound = compile_plan([{"type": "fit", "params": params}]).bind(tuple(image.shape[1:]))
    out = bound(image)
    assert tuple(out.shape[1:]) == bound.out_shape
    return out


@pytest.mark.parametrize("params", [
    {"width": 300, "height": 300},
    {"width": 800, "height": 600, "gravity": "northwest"},
    {"width": 123, "height": 457, "gravity": [0.3, 0.7], "filter": "bicubic"},
    {"width": 200, "height": 90, "gravity": "south", "filter": "nearest"},
    {"width": 640, "height": 427, "gravity": "east"},
    {"width": 333, "height": 250, "mode": "contain"},
    {"width": 1000, "height": 250, "mode": "cover", "filter": "bilinear"},
    {"width": 400, "height": 150, "mode": "pad", "gravity": "east", "background": "#336699"},
])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_whole_photos_equal_pillow(params, mode):
    for name in ("coffee.png", "rocket.jpg"):
        im = photo(name).convert(mode)
        expected = pil_array(FIT.reference(im, FIT.params_model.model_validate(params)))
        assert max_abs_diff(to_array(_run(to_tensor(im), params)), expected) <= 1, (name, params)


#: Photos with a clear subject: (photo, the subject's box in its pixels, judged by eye from the
#: photo, window (width, height) spanning one whole axis as a cover-resize leaves it, choosers
#: whose window keeps the subject there). The centre crop misses the first four subjects.
SUBJECTS = [
    ("astronaut.png", (180, 40, 270, 170), (512, 180), ("attention",)),  # her face
    ("astronaut.png", (180, 40, 270, 170), (512, 250), ("entropy", "attention")),
    ("coffee.png", (200, 90, 390, 200), (600, 150), ("attention",)),  # the coffee in the cup
    ("chelsea.png", (160, 85, 345, 165), (451, 120), ("attention",)),  # the cat's eyes
    ("coffee.png", (200, 90, 390, 200), (600, 180), ("entropy", "attention")),
    ("rocket.jpg", (305, 130, 335, 400), (640, 300), ("entropy", "attention")),  # the rocket
]


@pytest.mark.parametrize("name, subject, window, choosers", SUBJECTS)
def test_the_smart_window_keeps_the_subject(device, name, subject, window, choosers):
    image = to_tensor(photo(name), device)
    w, h = window
    for chooser in choosers:
        left, top = kernels.smart_offsets(image, (h, w), chooser)[0].tolist()
        assert left <= subject[0] and top <= subject[1] and left + w >= subject[2] and top + h >= subject[3], \
            (name, chooser, (left, top))


#: Offsets libvips 8.18's smartcrop chooses on the same photos and windows (measured with pyvips,
#: see test_offsets_match_pyvips), and how far ours may be: see README "Smart crop".
VIPS_WINDOWS = [("astronaut.png", (170, 340)), ("astronaut.png", (341, 170)), ("astronaut.png", (128, 128)),
                ("coffee.png", (200, 266)), ("coffee.png", (400, 133)), ("chelsea.png", (150, 200)),
                ("chelsea.png", (112, 75)), ("rocket.jpg", (213, 284)), ("rocket.jpg", (160, 106))]


@pytest.mark.parametrize("name, window", VIPS_WINDOWS)
@pytest.mark.parametrize("chooser", kernels.SMART_CHOOSERS)
def test_offsets_match_pyvips(name, window, chooser):
    pyvips = pytest.importorskip("pyvips")
    im = photo(name)
    arr = np.ascontiguousarray(np.asarray(im))
    vips = pyvips.Image.new_from_memory(arr.tobytes(), im.width, im.height, 3, "uchar")
    cropped = vips.smartcrop(*window, interesting=chooser)
    expected = (-cropped.get("xoffset"), -cropped.get("yoffset"))  # libvips stores minus the offset
    left, top = kernels.smart_offsets(to_tensor(im), (window[1], window[0]), chooser)[0].tolist()
    if chooser == "entropy":  # the same histograms and steps: the same window
        assert (left, top) == expected
    # attention: within 3% of the image's side (libvips shrinks and blurs with its own arithmetic).
    assert abs(left - expected[0]) <= 0.03 * im.width and abs(top - expected[1]) <= 0.03 * im.height, \
        ((left, top), expected)


@pytest.mark.parametrize("chooser", kernels.SMART_CHOOSERS)
def test_each_image_of_a_stack_gets_its_own_window(device, chooser):
    photos = [photo(name).resize((300, 200)) for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")]
    stack = torch.cat([to_tensor(im, device) for im in photos])
    offsets = kernels.smart_offsets(stack, (200, 120), chooser)
    alone = torch.cat([kernels.smart_offsets(stack[i : i + 1], (200, 120), chooser) for i in range(4)])
    assert torch.equal(offsets, alone)
    assert len(set(offsets[:, 0].tolist())) > 1, "the photos' windows should differ"
    out = _run(stack, {"width": 120, "height": 200, "gravity": chooser})
    for i in range(4):
        left = int(offsets[i, 0])
        assert torch.equal(out[i], stack[i, :, :, left : left + 120])


@pytest.mark.parametrize("params, field", [
    ({"width": 0, "height": 5}, r"params\.width"),
    ({"width": 5}, r"params\.height"),
    ({"width": 5, "height": 5, "gravity": "up"}, r"params\.gravity: a gravity is one of"),
    ({"width": 5, "height": 5, "gravity": [float("nan"), 0.5]}, r"params\.gravity"),
    ({"width": 5, "height": 5, "gravity": [1.5, 0]}, r"params\.gravity"),
    ({"width": 5, "height": 5, "gravity": [0.5]}, r"params\.gravity"),
    ({"width": 5, "height": 5, "mode": "pad", "gravity": "entropy"}, r"gravity 'entropy' .* needs mode 'crop'"),
    ({"width": 5, "height": 5, "mode": "fill"}, r"params\.mode"),
    ({"width": 5, "height": 5, "mode": "pad", "background": "#12"}, r"params\.background"),
    ({"width": 5, "height": 5, "filter": "box"}, r"params\.filter"),
])
def test_bad_parameters_are_refused_before_decoding(params, field):
    with pytest.raises(InvalidInput, match=rf"operations\[0\] \(fit\)\.?.*{field}"):
        compile_plan([{"type": "fit", "params": params}])


def test_an_extreme_aspect_is_refused_at_bind():
    plan = compile_plan([{"type": "fit", "params": {"width": 10, "height": 10, "mode": "contain"}}])
    with pytest.raises(InvalidInput, match="a side of 0 pixels"):
        plan.bind((3, 1, 1000))
