"""What is special about the tone kernels (kernels/tone.py) beyond the generic tests.

The generic tests (tests/test_operations.py) run every example on small photos; here: the CPU's
byte-pair gather (planes of PAIR_MIN_PIXELS and more) against the byte-at-a-time path and against
Pillow, on odd sizes and both memory layouts; autocontrast's cutoff at its edges; equalize and
autocontrast of flat and two-level images; colorize with and without ``mid`` in every mode;
pixelate with blocks larger than the image; parameters refused before any pixel, naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor
from PIL import Image

import kernels
from gpu_worker.errors import InvalidInput
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan
from kernels import tone

MODES = ("L", "LA", "RGB", "RGBA")
#: Operations whose kernel gathers a table (the pair path applies to them on the CPU).
TABLE_CASES = (
    ("solarize", {"threshold": 100}),
    ("gamma", {"value": 1.7}),
    ("equalize", {}),
    ("autocontrast", {"cutoff": [0.7, 3]}),
    ("autocontrast", {"cutoff": 1, "preserve_tone": True}),
    ("colorize", {"black": "#203040", "white": "#ffe0a0", "mid": [120, 20, 200]}),
    ("invert", {}),
    ("posterize", {"bits": 2}),
)


def _image(mode: str, size: tuple[int, int], name: str = COLOR_PHOTOS[0]) -> Image.Image:
    return sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)


def _run(name: str, params: dict, x: torch.Tensor) -> torch.Tensor:
    return compile_plan([{"type": name, "params": params}]).bind(tuple(x.shape[1:]))(x)


def _reference(name: str, params: dict, im: Image.Image) -> np.ndarray:
    entry = REGISTRY[name]
    return pil_array(entry.reference(im, entry.params_model.model_validate(params)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, params", TABLE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TABLE_CASES)])
def test_large_planes_equal_pillow_in_both_layouts(device, name, params, mode):
    """Planes of an odd size above PAIR_MIN_PIXELS (odd plane offsets, the odd last byte), in
    (B, C, H, W) contiguous and channels-last memory, equal Pillow exactly."""
    size = (263, 127)  # 33,401 pixels per plane: the pair path on the CPU
    assert size[0] * size[1] >= tone.PAIR_MIN_PIXELS
    ims = [_image(mode, size, p) for p in COLOR_PHOTOS[:2]]
    strided = torch.cat([to_tensor(im, device) for im in ims])  # channels-last strides
    for x in (strided, strided.contiguous()):
        out = _run(name, params, x)
        for i, im in enumerate(ims):
            assert max_abs_diff(to_array(out[i : i + 1]), _reference(name, params, im)) == 0, (name, mode, i)


@pytest.mark.parametrize("channels", (1, 3, 4))
def test_pair_path_equals_byte_path(channels, monkeypatch):
    """Random tables, random pixels: two bytes per gather gives each byte's own entry, and two
    bytes per count the histogram, whatever the planes' offsets and strides."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (2, channels, 191, 173), dtype=torch.uint8, generator=generator)
    k = channels - 1 if channels % 2 == 0 else channels
    luts = torch.randint(0, 256, (2, k, 256), dtype=torch.uint8, generator=generator)
    expected = x.clone()
    for b in range(2):
        for c in range(k):
            expected[b, c] = luts[b, c][x[b, c].long()]
    assert torch.equal(tone.apply_luts(x, luts), expected)
    assert torch.equal(tone.apply_luts(x[:, :, 1:, 1:], luts), expected[:, :, 1:, 1:])  # odd offsets
    for part in (x, x[:, :, 1:, 1:], x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(tone._histograms(part), kernels.histograms(part))  # pairs of bytes counted
    monkeypatch.setattr(tone, "PAIR_MIN_PIXELS", 1 << 40)
    assert torch.equal(tone.apply_luts(x, luts), expected)


def _grey(values: list[int], mode: str = "L") -> tuple[Image.Image, torch.Tensor]:
    im = Image.new("L", (len(values), 1))
    im.putdata(values)
    im = im.convert(mode)
    return im, to_tensor(im)


@pytest.mark.parametrize("cutoff", [0, 0.1, 1, 10, 25, 33.3, 49, [0, 49], [49, 0], [12.5, 0.5]])
@pytest.mark.parametrize("preserve_tone", [False, True])
def test_autocontrast_cutoffs(cutoff, preserve_tone):
    """Cuts that end exactly on a bin's edge, inside a bin, and across most of the histogram."""
    params = {"cutoff": cutoff, "preserve_tone": preserve_tone}
    # 100 pixels: 10 at 20, 30 at 60, 40 at 100, 20 at 200; every cut is a whole number of pixels.
    values = [20] * 10 + [60] * 30 + [100] * 40 + [200] * 20
    for mode in ("L", "RGB"):
        im, x = _grey(values, mode)
        assert max_abs_diff(to_array(_run("autocontrast", params, x)), _reference("autocontrast", params, im)) == 0
    photo = _image("RGBA", (57, 41))
    out = _run("autocontrast", params, to_tensor(photo))
    assert max_abs_diff(to_array(out), _reference("autocontrast", params, photo)) == 0


@pytest.mark.parametrize("values", [[77] * 12, [0] * 5, [255] * 3, [5], [10, 10, 10, 11], [0, 255], [3, 250, 250, 250]])
@pytest.mark.parametrize("name, params", [("equalize", {}), ("autocontrast", {}), ("autocontrast", {"cutoff": 30}),
                                          ("autocontrast", {"cutoff": 49, "preserve_tone": True})])
def test_flat_and_two_level_images(values, name, params):
    """A flat image is left as it is (no level range to stretch, one level to equalize); two
    levels and a single pixel follow Pillow's edge cases (``hi <= lo``, ``step == 0``)."""
    for mode in ("L", "LA", "RGB", "RGBA"):
        im, x = _grey(values, mode)
        out = _run(name, params, x)
        assert max_abs_diff(to_array(out), _reference(name, params, im)) == 0, (mode, values)
    if len(set(values)) == 1:
        assert torch.equal(kernels.equalize(x), x) and torch.equal(kernels.autocontrast(x, 10), x)


def test_equalize_is_per_image_and_per_channel():
    """Each image of a stack and each channel gets its own table (not the stack's histogram)."""
    a, b = _image("RGB", (40, 30), COLOR_PHOTOS[0]), _image("RGB", (40, 30), COLOR_PHOTOS[3])
    x = torch.cat([to_tensor(a), to_tensor(b)])
    out = kernels.equalize(x)
    for i, im in enumerate((a, b)):
        assert max_abs_diff(to_array(out[i : i + 1]), _reference("equalize", {}, im)) == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("params", [{"black": "#000", "white": "#fff"}, {"black": "#ff0000", "white": [0, 0, 255]},
                                    {"black": [0, 0, 0], "white": [255, 255, 255], "mid": "#808080"},
                                    {"black": "#fa0", "white": "#0af", "mid": "#11223344"}])
def test_colorize_modes_and_mid(device, mode, params):
    """RGB out for L and RGB, RGBA out with the alpha kept for LA and RGBA; with and without mid."""
    im = _image(mode, (45, 33))
    x = to_tensor(im, device)
    out = _run("colorize", params, x)
    assert out.shape[1] == (4 if mode in ("LA", "RGBA") else 3)
    assert max_abs_diff(to_array(out), _reference("colorize", params, im)) == 0
    if mode in ("LA", "RGBA"):
        assert torch.equal(out[:, 3], x[:, -1])
    # Every level of the gradient, against Pillow's table.
    ramp_im, ramp = _grey(list(range(256)))
    assert max_abs_diff(to_array(_run("colorize", params, ramp)), _reference("colorize", params, ramp_im)) == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [2, 3, 4, 12, 16, 50, 1024])
@pytest.mark.parametrize("image_size", [(47, 35), (48, 36), (240, 37)])
def test_pixelate_block_sizes(device, mode, size, image_size):
    """Blocks that divide the image (equal runs: sums of a reshape), that do not (runs from
    cumulative sums), and that are larger than it (one average)."""
    im = _image(mode, image_size)
    out = _run("pixelate", {"size": size}, to_tensor(im, device))
    assert max_abs_diff(to_array(out), _reference("pixelate", {"size": size}, im)) == 0
    if size > max(image_size):
        assert out[0, :, :1, :1].expand_as(out[0]).equal(out[0])  # one colour


@pytest.mark.parametrize("mode", MODES)
def test_box_downscale_equals_pillow(mode):
    """The BOX resize by runs' sums against Pillow's BOX, both pass orders, tiled or not."""
    im = _image(mode, (120, 90))
    x = to_tensor(im)
    for out_w, out_h in ((60, 45), (7, 90), (120, 4), (33, 29), (1, 1), (40, 9), (119, 89), (120, 90)):
        expected = pil_array(im.resize((out_w, out_h), Image.Resampling.BOX))
        assert max_abs_diff(to_array(tone._box_resize(x, out_h, out_w)), expected) == 0, (out_w, out_h)
    one_row = _image(mode, (9, 1))  # pixelate keeps the height of a one-row image: no premultiplication
    assert max_abs_diff(to_array(kernels.pixelate(to_tensor(one_row), 3)), _reference("pixelate", {"size": 3}, one_row)) == 0
    one_pixel = _image(mode, (1, 1))
    assert torch.equal(kernels.pixelate(to_tensor(one_pixel), 2), to_tensor(one_pixel))


@pytest.mark.parametrize("value", [1e-300, 0.001, 0.5, 1.0, 3.3, 10.0])
def test_gamma_tables(value):
    """Extreme gammas: the table as Pillow's point gets it; 1 leaves the image as it is."""
    im, x = _grey(list(range(256)), "RGBA")
    assert max_abs_diff(to_array(_run("gamma", {"value": value}, x)), _reference("gamma", {"value": value}, im)) == 0
    assert (REGISTRY["gamma"].bind(REGISTRY["gamma"].params_model(value=value), (3, 8, 8)) is None) == (value == 1.0)


@pytest.mark.parametrize("name, params, field", [
    ("posterize", {"bits": 9}, "bits"), ("posterize", {"bits": 0}, "bits"), ("posterize", {}, "bits"),
    ("posterize", {"bits": 2.0}, "bits"), ("solarize", {"threshold": 257}, "threshold"),
    ("solarize", {"threshold": -1}, "threshold"), ("gamma", {"value": 0}, "value"), ("gamma", {"value": 10.5}, "value"),
    ("gamma", {"value": -1.0}, "value"), ("autocontrast", {"cutoff": 50}, "cutoff"),
    ("autocontrast", {"cutoff": -1}, "cutoff"), ("autocontrast", {"cutoff": [1, 2, 3]}, "cutoff"),
    ("autocontrast", {"cutoff": [1, 60]}, "cutoff"), ("autocontrast", {"preserve_tone": "yes"}, "preserve_tone"),
    ("colorize", {"black": "#00", "white": "#fff"}, "black"), ("colorize", {"black": "#000"}, "white"),
    ("colorize", {"black": "#000", "white": "#fff", "mid": [1, 2, 300]}, "mid"),
    ("pixelate", {"size": 1}, "size"), ("pixelate", {"size": 1025}, "size"), ("invert", {"x": 1}, "x"),
    ("equalize", {"mask": 1}, "mask"),
])
def test_bad_parameters_refused_naming_the_field(name, params, field):
    named = rf"operations\[0\] \({name}\)\.params(\.{field}\b|: unknown field '{field}')"
    with pytest.raises(InvalidInput, match=named):
        compile_plan([{"type": name, "params": params}])


def test_identity_parameters_bind_to_nothing():
    for name, params in (("posterize", {"bits": 8}), ("solarize", {"threshold": 256}), ("gamma", {"value": 1})):
        entry = REGISTRY[name]
        assert entry.bind(entry.params_model.model_validate(params), (3, 5, 5)) is None


def test_kernel_arguments_checked():
    x = torch.zeros((1, 3, 4, 4), dtype=torch.uint8)
    for call in (lambda: kernels.posterize(x, 0), lambda: kernels.solarize(x, 300), lambda: kernels.gamma(x, 0.0),
                 lambda: kernels.colorize(x, (1, 2), (3, 4, 5)), lambda: kernels.pixelate(x, 0)):
        with pytest.raises(ValueError):
            call()
