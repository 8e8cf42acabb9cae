"""What is special about ``lut3d`` (kernels/lut.py, gpu_worker/operations/lut3d.py) beyond the
generic tests.

Pillow's exact fixed-point result for tables of every size class (2, 17, 33, 65), with values
outside 0-1 and far outside (Pillow's int16 clamp), on real photos and on a grid that visits every
level of each axis; L and LA taken as RGB; a ``.cube`` file equal to the same table given as
``size`` + ``table``; malformed ``.cube`` text refused before any pixel, naming the field and the
line.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor
from PIL import Image, ImageFilter

import kernels
from gpu_worker.errors import InvalidInput
from gpu_worker.operations import REGISTRY
from gpu_worker.operations.lut3d import parse_cube
from gpu_worker.plan import compile_plan


def _random_table(size: int, low: float, high: float, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(size ** 3 * 3)]


def _run(params: dict, image: Image.Image, device: torch.device = torch.device("cpu")) -> np.ndarray:
    bound = compile_plan([{"type": "lut3d", "params": params}]).bind(tuple(to_tensor(image).shape[1:]))
    return to_array(bound(to_tensor(image, device)))


def _reference(params: dict, image: Image.Image) -> np.ndarray:
    entry = REGISTRY["lut3d"]
    return pil_array(entry.reference(image, entry.params_model.model_validate(params)))


def _cube(size: int, table: list[float], header: str = "") -> str:
    rows = "\n".join(" ".join(repr(v) for v in table[i : i + 3]) for i in range(0, len(table), 3))
    return f"# made by a test\nTITLE \"t\"\n{header}LUT_3D_SIZE {size}\n\n{rows}\n"


@pytest.mark.parametrize("size, low, high", [(2, -0.5, 1.5), (17, -0.2, 1.2), (33, 0.0, 1.0), (65, -3.0, 3.0)])
@pytest.mark.parametrize("mode", ("RGB", "RGBA"))
def test_equals_pillow_on_a_photo(device, size, low, high, mode):
    table = _random_table(size, low, high, seed=size)
    image = sample(mode, (257, 193), COLOR_PHOTOS[1])
    expected = pil_array(image.filter(ImageFilter.Color3DLUT(size, table)))
    assert max_abs_diff(_run({"size": size, "table": table}, image, device), expected) == 0


@pytest.mark.parametrize("size", (2, 5, 17, 64))
def test_every_level_of_every_axis(device, size):
    """A 256x256 grid: red and green take every level, blue every level too (a mix of both)."""
    y, x = np.mgrid[0:256, 0:256]
    image = Image.fromarray(np.stack([x, y, (x * 7 + y * 3) % 256], -1).astype(np.uint8), "RGB")
    table = _random_table(size, -0.3, 1.3, seed=100 + size)
    expected = pil_array(image.filter(ImageFilter.Color3DLUT(size, table)))
    lut = kernels.Lut3D.from_floats(size, table)
    assert max_abs_diff(to_array(kernels.lut3d(to_tensor(image, device), lut)), expected) == 0


def test_values_at_pillows_int16_clamp():
    """Values around and beyond ±32767/16320 become Pillow's int16 extremes, as Pillow makes them."""
    edge = (0x7FFF - 0.5) / 16320
    values = [edge, -edge, edge - 1e-6, -edge + 1e-6, 1e5, -1e5, 0.5 / 16320, -0.5 / 16320, 1.0, 0.0]
    table = (values * 3)[:24]
    image = sample("RGB", (61, 47), COLOR_PHOTOS[0])
    expected = pil_array(image.filter(ImageFilter.Color3DLUT(2, table)))
    assert max_abs_diff(_run({"size": 2, "table": table}, image), expected) == 0


@pytest.mark.parametrize("mode, out_mode", [("L", "RGB"), ("LA", "RGBA")])
def test_grey_images_are_taken_as_rgb(mode, out_mode):
    table = _random_table(17, -0.1, 1.1, seed=3)
    base = sample("RGBA", (97, 61), COLOR_PHOTOS[2]).convert(mode)
    expected = pil_array(base.convert(out_mode).filter(ImageFilter.Color3DLUT(17, table)))
    out = _run({"size": 17, "table": table}, base)
    assert out.shape[2] == len(out_mode)
    assert max_abs_diff(out, expected) == 0
    assert max_abs_diff(out, _reference({"size": 17, "table": table}, base)) == 0


def test_a_cube_file_is_its_table():
    table = _random_table(17, 0.0, 1.0, seed=9)
    image = sample("RGBA", (97, 61), COLOR_PHOTOS[3])
    cube = _cube(17, table, header="DOMAIN_MIN 0 0 0\nDOMAIN_MAX 1.0 1.0 1.0\nLUT_3D_INPUT_RANGE 0 1\n")
    assert parse_cube(cube) == (17, tuple(table))
    expected = pil_array(image.filter(ImageFilter.Color3DLUT(17, table)))
    assert max_abs_diff(_run({"cube": cube}, image), expected) == 0


def test_the_table_is_prepared_once_per_parameters():
    params = REGISTRY["lut3d"].params_model.model_validate({"size": 3, "table": _random_table(3, 0, 1)})
    step = REGISTRY["lut3d"].bind(params, (3, 5, 5))
    assert step.kernel.keywords["lut"] is params.lut
    x = torch.zeros((2, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(step.kernel(x), step.kernel(x))


GOOD = _cube(2, [float(v) for b in (0, 1) for g in (0, 1) for r in (0, 1) for v in (r, g, b)])


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _replace(line: int, new: str | None) -> str:
    """GOOD with its 1-based ``line`` replaced (None: removed)."""
    lines = _lines(GOOD)
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines) + "\n"


# GOOD's lines: 1 comment, 2 TITLE, 3 LUT_3D_SIZE 2, 4 blank, 5-12 rows.
@pytest.mark.parametrize("cube, message", [
    (_replace(12, None), r"line 11: the file ends after 7 rows; LUT_3D_SIZE 2 needs 8"),
    (_replace(7, "0 1"), r"line 7: a table row needs 3 numbers, got 2"),
    (_replace(7, "0 1 0 1"), r"line 7: a table row needs 3 numbers, got 4"),
    (_replace(8, "1 x1 0"), r"line 8: 'x1' is not a number"),
    (_replace(8, "1 nan 0"), r"line 8: 'nan' is not a finite number"),
    (_replace(3, "LUT_3D_SIZE 1"), r"line 3: LUT_3D_SIZE must be 2 to 65, got 1"),
    (_replace(3, "LUT_3D_SIZE 66"), r"line 3: LUT_3D_SIZE must be 2 to 65, got 66"),
    (_replace(3, "LUT_3D_SIZE two"), r"line 3: LUT_3D_SIZE needs one whole number"),
    (_replace(3, "LUT_1D_SIZE 2"), r"line 3: 1D tables \(LUT_1D_SIZE\) are not supported"),
    (_replace(4, "DOMAIN_MIN -0.1 0 0"), r"line 4: only DOMAIN_MIN 0 0 0 is supported"),
    (_replace(4, "DOMAIN_MAX 2 2 2"), r"line 4: only DOMAIN_MAX 1 1 1 is supported"),
    (_replace(4, "WHATEVER 1"), r"line 4: unknown keyword 'WHATEVER'"),
    (_replace(3, None), r"line 4: a table row before LUT_3D_SIZE"),
    (GOOD + "0 0 0\n", r"line 13: more than LUT_3D_SIZE\*\*3 = 8 rows"),
    (GOOD + "TITLE \"late\"\n", r"line 13: keyword 'TITLE' after the table's rows"),
    ("# nothing\n", r"no LUT_3D_SIZE line"),
])
def test_malformed_cube_refused_with_its_line(cube, message):
    with pytest.raises(InvalidInput, match=r"operations\[0\] \(lut3d\)\.params\.cube: " + message):
        compile_plan([{"type": "lut3d", "params": {"cube": cube}}])


@pytest.mark.parametrize("params, message", [
    ({}, r"either cube, or both size and table"),
    ({"size": 3}, r"either cube, or both size and table"),
    ({"size": 2, "table": [0.5] * 23}, r"table: List should have at least 24 items"),
    ({"size": 3, "table": [0.5] * 24}, r"table must have size\*\*3 \* 3 = 81 numbers, got 24"),
    ({"size": 1, "table": [0.5] * 24}, r"size: Input should be greater than or equal to 2"),
    ({"size": 2, "table": [0.5] * 24, "cube": GOOD}, r"either cube, or size and table, not both"),
    ({"size": 2, "table": [0.5] * 23 + ["1"]}, r"table\[23\]: Input should be a valid number"),
])
def test_bad_parameters_refused(params, message):
    with pytest.raises(InvalidInput, match=r"operations\[0\] \(lut3d\)\.params.*" + message):
        compile_plan([{"type": "lut3d", "params": params}])


def test_the_kernel_takes_a_prepared_table_only():
    x = torch.zeros((1, 3, 4, 4), dtype=torch.uint8)
    with pytest.raises(TypeError):
        kernels.lut3d(x, [0.0] * 24)
    with pytest.raises(ValueError):
        kernels.Lut3D.from_floats(3, [0.0] * 24)
