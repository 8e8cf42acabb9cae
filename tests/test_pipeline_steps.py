"""Custom steps after the Pillow-exact operations: Kornia modules, torch modules and functions."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from gpu_worker import Pipeline
from photos import COLOR_PHOTOS, sample, to_tensor

OPS = [{"type": "resize", "params": {"width": 48}}, {"type": "filter", "params": {"name": "sharpen"}}]


def by_hand(exact: torch.Tensor, *steps) -> torch.Tensor:
    """The documented semantics, spelled out: [0, 1] floats through the steps, back to uint8."""
    x = exact.float() / 255
    for step in steps:
        x = step(x)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def photos(mode: str, device: torch.device) -> torch.Tensor:
    """The four colour photos as one (4, C, 61, 97) uint8 batch on ``device``."""
    return torch.cat([to_tensor(sample(mode, (97, 61), name)) for name in COLOR_PHOTOS]).to(device)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_kornia_modules_equal_applying_them_by_hand(mode, device):
    gamma = kornia.enhance.AdjustGamma(0.8)
    blur = kornia.filters.GaussianBlur2d((5, 5), (1.2, 1.2))
    pipe = Pipeline(OPS, device=device, then=[gamma, blur])
    batch = photos(mode, device)
    exact = Pipeline(OPS, device=device)(batch)
    out = pipe(batch)
    assert out.dtype == torch.uint8 and out.device == batch.device
    assert torch.equal(out, by_hand(exact, gamma, blur))
    assert not torch.equal(out, exact)  # the steps did something


def test_then_appends_and_leaves_the_original_alone(device):
    exact = Pipeline(OPS, device=device)
    blur = kornia.filters.GaussianBlur2d((3, 3), (1.0, 1.0))
    blurred = exact.then(blur)
    both = blurred.then(lambda x: 1 - x)
    assert exact.steps == () and blurred.steps == (blur,) and len(both.steps) == 2
    assert both.device == exact.device and both.plan is exact.plan
    batch = photos("RGB", device)
    assert torch.equal(both(batch), by_hand(exact(batch), blur, lambda x: 1 - x))
    assert "GaussianBlur2d" in repr(blurred)


class Vignette(torch.nn.Module):
    """A plain torch module with a parameter (moved to the pipeline's device) that changes the size."""

    def __init__(self):
        super().__init__()
        self.strength = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=x.device)[:, None]
        xs = torch.linspace(-1, 1, w, device=x.device)[None, :]
        fall = 1 - self.strength * (xs ** 2 + ys ** 2) / 2
        return (x * fall)[..., 1:-1, 2:-2]


def test_a_plain_torch_module_and_a_function(device):
    vignette = Vignette()
    pipe = Pipeline(OPS, device=device, then=[vignette, torch.sqrt])
    assert vignette.strength.device.type == device.type
    batch = photos("RGB", device)
    out = pipe(batch)
    assert out.shape == (4, 3, 30 - 2, 48 - 4)
    assert torch.equal(out, by_hand(Pipeline(OPS, device=device)(batch), vignette, torch.sqrt))


def test_a_step_may_change_the_channels():
    to_gray = kornia.color.RgbToGrayscale()
    out = Pipeline(OPS, device="cpu", then=[to_gray])(sample("RGB", (97, 61)))
    assert out.mode == "L" and out.size == (48, 30)


def test_batched_equals_one_by_one_and_mixed_shapes_keep_their_order(device):
    blur = kornia.filters.GaussianBlur2d((5, 5), (1.5, 1.5))
    pipe = Pipeline(OPS, device=device, then=[blur])
    batch = photos("RGB", device)
    stacked = pipe(batch)
    for i in range(len(batch)):
        assert torch.equal(pipe(batch[i]), stacked[i])
    mixed = [batch[0], to_tensor(sample("RGB", (61, 97)))[0].to(device), batch[1]]
    out = pipe(mixed)
    assert [tuple(o.shape) for o in out] == [(3, 30, 48), (3, 76, 48), (3, 30, 48)]
    assert torch.equal(out[0], stacked[0]) and torch.equal(out[2], stacked[1])
    assert torch.equal(out[1], pipe(mixed[1]))
    capped = Pipeline(OPS, device=device, max_stack_pixels=97 * 61 * 2, then=[blur])
    assert torch.equal(capped(batch), stacked)  # the steps run in chunks of the cap


def test_pil_and_numpy_inputs():
    pipe = Pipeline(OPS, device="cpu", then=[kornia.enhance.AdjustBrightness(0.1)])
    image = sample("RGBA", (97, 61))
    out = pipe(image)
    assert out.mode == "RGBA" and out.size == (48, 30)
    expected = by_hand(Pipeline(OPS, device="cpu")(to_tensor(image)), kornia.enhance.AdjustBrightness(0.1))
    assert np.array_equal(np.asarray(out), expected[0].permute(1, 2, 0).numpy())
    gray = np.asarray(sample("L", (97, 61)))
    assert pipe(gray).shape == (30, 48)


def test_empty_batch(device):
    pipe = Pipeline(OPS, device=device, then=[kornia.filters.GaussianBlur2d((3, 3), (1.0, 1.0))])
    assert pipe(torch.zeros(0, 3, 61, 97, dtype=torch.uint8, device=device)).shape == (0, 3, 30, 48)


@pytest.mark.parametrize("step, error, message", [
    (lambda x: x.numpy(), TypeError, r"then\[0\] \(<lambda>\) must return a torch.Tensor, got ndarray"),
    (lambda x: (x * 255).to(torch.uint8), TypeError, r"must return a floating tensor .* got torch.uint8"),
    (lambda x: x[0], ValueError, r"must return \(B, C, H, W\) with B = 4 and C in 1..4, got shape \(3, 30, 48\)"),
    (lambda x: x[:2], ValueError, r"B = 4 .* got shape \(2, 3, 30, 48\)"),
    (lambda x: torch.cat([x, x], 1), ValueError, r"C in 1..4, got shape \(4, 6, 30, 48\)"),
    (lambda x: x / 0, ValueError, r"returned NaN or infinite values"),
])
def test_wrong_outputs_give_clear_errors(step, error, message, device):
    with pytest.raises(error, match=message):
        Pipeline(OPS, device=device, then=[step])(photos("RGB", device))


def test_bad_steps_and_output_size_are_refused():
    with pytest.raises(TypeError, match=r"then\[1\] must be a torch.nn.Module or a function"):
        Pipeline(OPS, then=[torch.sqrt, "blur"])
    pipe = Pipeline(OPS, device="cpu")
    assert pipe.output_size(97, 61) == (48, 30)
    with pytest.raises(ValueError, match="output_size cannot predict custom steps"):
        pipe.then(torch.sqrt).output_size(97, 61)
    assert Pipeline(pipe.then(torch.sqrt).plan).output_size(97, 61) == (48, 30)
