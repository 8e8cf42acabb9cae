"""What is special about ``rotate`` (the generic tests in test_operations.py and
test_kernel_contract.py cover its registry examples): Pillow's size rule and its three paths
(transposes, the fixed-point and the float nearest transform, bilinear/bicubic in float64) over
sizes, angles and edge cases; the row blocks; the fill colour per mode; the colour parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor
from PIL import Image, ImageColor
from pydantic import ValidationError
from tolerances import PILLOW_ATOL

from gpu_worker.errors import InvalidInput
from gpu_worker.operations import REGISTRY
from gpu_worker.operations.colors import to_hex, to_rgba
from gpu_worker.plan import compile_plan
from kernels import mode_color, rotate, rotated_size
from kernels.rotate import _BLOCK_SAMPLES

ATOL = PILLOW_ATOL["rotate"]
ENTRY = REGISTRY["rotate"]
FILTERS = ("nearest", "bilinear", "bicubic")
MODES = ("L", "LA", "RGB", "RGBA")
#: Angles off the fast paths and near them: tiny, near 90/180/270, negative, large, fractional.
ANGLES = (30, -17.5, 1e-14, 0.3, 89.9999, 90.0001, 179.9999999999999, 200, 269.5, 333, 359.99, 123456.75, -1e6)


def _photo(mode: str, size: tuple[int, int], name: str = COLOR_PHOTOS[0]) -> Image.Image:
    return sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)


def _reference(im: Image.Image, angle: float, expand: bool, filter: str, background="#00000000") -> np.ndarray:
    params = ENTRY.params_model.model_validate(
        {"angle": angle, "expand": expand, "filter": filter, "background": background})
    return pil_array(ENTRY.reference(im, params))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("filter", FILTERS)
def test_equals_pillow_over_sizes_and_angles(device, mode, filter):
    for size in ((1, 1), (2, 2), (3, 5), (37, 29), (61, 97)):
        im = _photo(mode, size)
        x = to_tensor(im, device)
        for angle in ANGLES:
            for expand in (True, False):
                out = to_array(rotate(x, angle, expand, filter))
                diff = max_abs_diff(out, _reference(im, angle, expand, filter))
                assert diff <= ATOL, f"{mode} {size} {angle} {filter} expand={expand}: {diff} levels"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("filter", FILTERS)
def test_fill_colour_per_mode_equals_pillow(device, mode, filter):
    """Opaque, translucent and transparent backgrounds; LA/RGBA with bilinear/bicubic fill the
    premultiplied image, as Pillow does."""
    im = _photo(mode, (41, 23), COLOR_PHOTOS[1])
    x = to_tensor(im, device)
    for background in ("#ff8000", "#2468ace0", "#12345601", [200, 30, 90, 128], "#fff"):
        out = to_array(rotate(x, 33, True, filter, to_rgba(background)))
        diff = max_abs_diff(out, _reference(im, 33, True, filter, background))
        assert diff <= ATOL, f"{mode} {filter} {background}: {diff} levels"


@pytest.mark.parametrize("filter", FILTERS)
def test_beyond_the_fixed_point_range_equals_pillow(filter):
    """A 40000-pixel-wide strip: corners map past 32768 pixels, so Pillow's nearest takes its float
    path instead of 16.16 fixed point."""
    im = _photo("RGB", (40000, 3))
    for angle in (0.001, 180.0001, -0.0004):
        out = to_array(rotate(to_tensor(im), angle, False, filter))
        assert max_abs_diff(out, _reference(im, angle, False, filter)) <= ATOL, angle


@pytest.mark.parametrize("angle, expand", [(90, True), (270, True), (-90, True), (450, True), (180, False),
                                           (90, False), (270, False)])
def test_multiples_of_90_are_exact_transposes_on_square_or_expanded(angle, expand):
    rgba = to_tensor(_photo("RGBA", (37, 29)))
    square = to_tensor(_photo("RGBA", (23, 23)))
    turns = round(angle / 90) % 4
    if expand or turns == 2:
        assert torch.equal(rotate(rgba, angle, expand, "bicubic"), torch.rot90(rgba, turns, dims=(2, 3)))
    assert torch.equal(rotate(square, angle, expand, "bilinear"), torch.rot90(square, turns, dims=(2, 3)))


def test_rotated_size_is_pillows():
    for w, h in ((1, 1), (2, 3), (37, 29), (1920, 1080), (1, 500), (4000, 3)):
        im = Image.new("L", (w, h))
        for angle in ANGLES + (0, 90, 180, 270, -90, 450, 45, 135):
            for expand in (True, False):
                expected = im.rotate(angle, expand=expand).size if w * h <= 100_000 else None
                size = rotated_size(w, h, angle, expand)
                if expected is not None:
                    assert size == expected, (w, h, angle, expand)
                plan = compile_plan([{"type": "rotate", "params": {"angle": angle, "expand": expand}}])
                assert plan.output_shape((3, h, w)) == (3, size[1], size[0])


def test_row_blocks_join_seamlessly(monkeypatch):
    x = torch.cat([to_tensor(_photo("RGBA", (37, 29), name)) for name in COLOR_PHOTOS[:2]])
    whole = {f: rotate(x, 21.5, True, f, (1, 2, 3, 200)) for f in FILTERS}
    monkeypatch.setitem(_BLOCK_SAMPLES, "cpu", 1000)  # a few rows per block
    for f in FILTERS:
        assert torch.equal(rotate(x, 21.5, True, f, (1, 2, 3, 200)), whole[f]), f


def test_mode_color_is_imagecolor_getcolor():
    rng = np.random.default_rng(7)
    for rgba in [tuple(int(v) for v in rng.integers(0, 256, 4)) for _ in range(300)] + [(255,) * 4, (0,) * 4]:
        for channels, mode in enumerate(MODES, start=1):
            expected = ImageColor.getcolor(to_hex(list(rgba)), mode)
            assert mode_color(rgba, channels) == ((expected,) if isinstance(expected, int) else expected)


@pytest.mark.parametrize("given, canonical", [
    ("#f80", "#ff8800ff"), ("#FF8800", "#ff8800ff"), ("#ff880080", "#ff880080"),
    ([255, 136, 0], "#ff8800ff"), ([1, 2, 3, 4], "#01020304"),
])
def test_colour_forms_are_validated_to_one_canonical_form(given, canonical):
    assert ENTRY.params_model.model_validate({"angle": 1, "background": given}).background == canonical
    # Equal colours, equal plan keys (so images with either stack together).
    assert (compile_plan([{"type": "rotate", "params": {"angle": 1, "background": given}}]).key
            == compile_plan([{"type": "rotate", "params": {"angle": 1, "background": canonical}}]).key)


@pytest.mark.parametrize("bad", ["red", "#ff88", "#ff8800801", "ff8800", "", [1, 2], [1, 2, 3, 4, 5], [1, 2, 256],
                                 [1, -1, 3], [1.0, 2, 3], [True, 2, 3], ["1", 2, 3], 1.5, None, {"r": 1}])
def test_bad_colours_are_refused_naming_the_field(bad):
    with pytest.raises(ValidationError):
        ENTRY.params_model.model_validate({"angle": 1, "background": bad})
    with pytest.raises(InvalidInput, match=r"operations\[0\] \(rotate\)\.params\.background: a colour is"):
        compile_plan([{"type": "rotate", "params": {"angle": 1, "background": bad}}])


@pytest.mark.parametrize("angle", [math.nan, math.inf, -math.inf, 1e6 + 1, "30", None, True])
def test_bad_angles_are_refused_at_compile_time(angle):
    with pytest.raises(InvalidInput, match=r"operations\[0\] \(rotate\)\.params\.angle"):
        compile_plan([{"type": "rotate", "params": {"angle": angle}}])


def test_angle_is_required_and_whole_numbers_are_taken():
    with pytest.raises(InvalidInput, match=r"params\.angle: Field required"):
        compile_plan([{"type": "rotate", "params": {}}])
    assert compile_plan([{"type": "rotate", "params": {"angle": 90}}]).output_shape((3, 10, 20)) == (3, 20, 10)


def test_kernel_refuses_bad_arguments():
    x = to_tensor(_photo("RGB", (9, 7)))
    for kwargs in ({"filter": "lanczos"}, {"angle": math.nan}, {"angle": "30"}, {"fill": (1, 2, 3)},
                   {"fill": (1, 2, 3, 256)}, {"fill": (1.0, 2, 3, 4)}):
        with pytest.raises(ValueError):
            rotate(x, **{"angle": 30, **kwargs})
