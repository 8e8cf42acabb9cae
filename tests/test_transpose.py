"""What is special about ``transpose`` (the generic tests in test_operations.py and
test_kernel_contract.py cover its registry examples against ``Image.transpose``): its methods
are the group of the square's eight symmetries, so they compose as Pillow's do, and its turns
equal ``rotate``'s exact transposes."""

from __future__ import annotations

import pytest
import torch
from photos import sample, to_tensor

from gpu_worker.errors import InvalidInput
from gpu_worker.plan import compile_plan
from kernels.transpose import SWAPS_SIDES, TRANSPOSE_METHODS, transpose

#: Each method followed by its inverse gives the image back.
INVERSE = {"flip_left_right": "flip_left_right", "flip_top_bottom": "flip_top_bottom", "rotate_90": "rotate_270",
           "rotate_180": "rotate_180", "rotate_270": "rotate_90", "transpose": "transpose",
           "transverse": "transverse"}


def _images(device) -> torch.Tensor:
    """Two different RGBA photos of a non-square size (61 x 37), stacked."""
    return torch.cat([to_tensor(sample("RGBA", (61, 37), name), device) for name in ("astronaut.png", "coffee.png")])


@pytest.mark.parametrize("method", TRANSPOSE_METHODS)
def test_each_method_undone_by_its_inverse(device, method):
    images = _images(device)
    once = transpose(images, method)
    height, width = images.shape[-2:]
    assert once.shape[-2:] == ((width, height) if method in SWAPS_SIDES else (height, width))
    assert torch.equal(transpose(once, INVERSE[method]), images)


def test_methods_compose_as_the_square_symmetries(device):
    images = _images(device)
    turn = lambda x, k: x if k == 0 else transpose(x, ("rotate_90", "rotate_180", "rotate_270")[k - 1])  # noqa: E731
    assert torch.equal(transpose(transpose(images, "rotate_90"), "rotate_90"), transpose(images, "rotate_180"))
    assert torch.equal(turn(transpose(images, "flip_left_right"), 1), transpose(images, "transpose"))
    assert torch.equal(turn(transpose(images, "flip_left_right"), 3), transpose(images, "transverse"))
    assert torch.equal(transpose(transpose(images, "transpose"), "rotate_180"), transpose(images, "transverse"))


@pytest.mark.parametrize("method,angle", [("rotate_90", 90), ("rotate_180", 180), ("rotate_270", 270)])
def test_turns_equal_rotate_by_the_same_angle(device, method, angle):
    images = _images(device)
    rotated = compile_plan([{"type": "rotate", "params": {"angle": angle, "expand": True}}]).bind(tuple(images.shape[1:]))
    turned = compile_plan([{"type": "transpose", "params": {"method": method}}]).bind(tuple(images.shape[1:]))
    assert turned.out_shape == rotated.out_shape
    assert torch.equal(turned(images), rotated(images))


def test_an_unknown_method_is_refused_naming_the_choices():
    with pytest.raises(InvalidInput) as refused:
        compile_plan([{"type": "transpose", "params": {"method": "rotate_45"}}])
    message = str(refused.value)
    assert "operations[0]" in message and "method" in message and "rotate_90" in message
    with pytest.raises(ValueError, match="rotate_45"):
        transpose(torch.zeros((1, 3, 2, 2), dtype=torch.uint8), "rotate_45")
