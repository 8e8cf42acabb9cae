"""The Python API: parity with the Pillow reference per op, batching, input and output types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker.operations import apply_reference
from gpu_worker import Pipeline
from gpu_worker.device import DEVICE_ENV, select_device
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample
from tolerances import PILLOW_ATOL

#: One job per op family and parameter family; each is compared with Pillow on its own.
SINGLE_OPS = {
    "resize-width": ({"type": "resize", "params": {"width": 40}}, "resize"),
    "resize-height-bicubic": ({"type": "resize", "params": {"height": 33, "filter": "bicubic"}}, "resize"),
    "resize-box": ({"type": "resize", "params": {"width": 50, "height": 20}}, "resize"),
    "resize-exact-up-bilinear": ({"type": "resize", "params": {"width": 130, "height": 90, "maintain_aspect": False,
                                                               "filter": "bilinear"}}, "resize"),
    "resize-nearest": ({"type": "resize", "params": {"width": 31, "filter": "nearest"}}, "resize"),
    "crop-inside": ({"type": "crop", "params": {"left": 3, "top": 4, "right": 50, "bottom": 41}}, "crop"),
    "crop-past-edges": ({"type": "crop", "params": {"left": -5, "top": 10, "right": 120, "bottom": 90}}, "crop"),
    "blur": ({"type": "filter", "params": {"name": "blur"}}, "filter"),
    "sharpen": ({"type": "filter", "params": {"name": "sharpen"}}, "filter"),
    "contour": ({"type": "filter", "params": {"name": "contour"}}, "filter"),
    "edge_enhance": ({"type": "filter", "params": {"name": "edge_enhance"}}, "filter"),
    "emboss": ({"type": "filter", "params": {"name": "emboss"}}, "filter"),
    "smooth": ({"type": "filter", "params": {"name": "smooth"}}, "filter"),
    "grayscale": ({"type": "filter", "params": {"name": "grayscale"}}, "grayscale"),
    "brightness": ({"type": "adjust", "params": {"brightness": 1.3}}, "adjust"),
    "contrast": ({"type": "adjust", "params": {"contrast": 0.6}}, "adjust"),
    "saturation": ({"type": "adjust", "params": {"saturation": 1.8}}, "adjust"),
    "adjust-all": ({"type": "adjust", "params": {"brightness": 1.1, "contrast": 1.2, "saturation": 0.7}}, "adjust"),
}


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize("case", sorted(SINGLE_OPS))
def test_every_op_matches_pillow_on_real_photos(case, mode, device):
    op, family = SINGLE_OPS[case]
    pipe = Pipeline([op], device=device)
    images = [sample(mode, (97, 61), name) for name in COLOR_PHOTOS] + [sample(mode, (61, 97)), sample(mode, (2, 2))]
    if op["type"] == "crop":
        images = images[:-1]  # a 2x2 image is all outside these boxes: covered in the kernel tests
    outputs = pipe(images)  # same-sized images run as one stacked batch
    for image, out in zip(images, outputs):
        expected = apply_reference(image, [op])
        assert out.mode == expected.mode and out.size == expected.size
        assert max_abs_diff(pil_array(out), pil_array(expected)) <= PILLOW_ATOL[family], case


def test_tutorial_chain_matches_pillow_within_one_level_per_op(device):
    ops = [
        {"type": "resize", "params": {"width": 200, "height": 150}},
        {"type": "filter", "params": {"name": "sharpen"}},
        {"type": "adjust", "params": {"brightness": 1.2, "contrast": 1.1}},
    ]
    image = sample("RGB", (257, 193), "coffee.png")
    out = Pipeline(ops, device=device)(image)
    expected = apply_reference(image, ops)
    assert out.size == expected.size == (200, 150)
    # Kernels are exact (0 here); a chain of three ops may accumulate at most one level per op.
    assert max_abs_diff(pil_array(out), pil_array(expected)) <= len(ops)


def test_batched_tensor_equals_per_image_and_keeps_device(device):
    pipe = Pipeline([{"type": "resize", "params": {"width": 30}}, {"type": "filter", "params": {"name": "emboss"}}],
                    device=device)
    batch = torch.stack([torch.from_numpy(pil_array(sample("RGB", (97, 61), n)).copy()).permute(2, 0, 1)
                         for n in COLOR_PHOTOS]).to(device)
    before = batch.clone()
    out = pipe(batch)
    assert out.dtype == torch.uint8 and out.device == batch.device and out.shape == (4, 3, 18, 30)
    assert torch.equal(batch, before)
    for i in range(len(batch)):
        assert torch.equal(pipe(batch[i]), out[i])
    assert pipe(batch[:0]).shape == (0, 3, 18, 30)


def test_mixed_shapes_are_grouped_and_returned_in_order():
    pipe = Pipeline([{"type": "filter", "params": {"name": "blur"}}], device="cpu")
    tensors = [torch.from_numpy(pil_array(sample("RGB", size)).copy()).permute(2, 0, 1)
               for size in [(97, 61), (61, 97), (97, 61), (3, 5)]]
    outs = pipe(tensors)
    assert [tuple(o.shape) for o in outs] == [tuple(t.shape) for t in tensors]
    for t, o in zip(tensors, outs):
        assert torch.equal(o, pipe(t))


def test_pil_modes_in_and_out():
    pipe = Pipeline([{"type": "resize", "params": {"width": 20}}], device="cpu")
    rgb = sample("RGB", (97, 61))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    transparent_palette = sample("RGBA", (97, 61)).convert("P")
    transparent_palette.info["transparency"] = 0
    outs = pipe([rgb, sample("L", (97, 61)), sample("RGBA", (97, 61)), palette, transparent_palette])
    assert [o.mode for o in outs] == ["RGB", "L", "RGBA", "RGB", "RGBA"]
    gray = Pipeline([{"type": "filter", "params": {"name": "grayscale"}}], device="cpu")(rgb)
    assert gray.mode == "L"


def test_numpy_in_and_out():
    pipe = Pipeline([{"type": "crop", "params": {"right": 10, "bottom": 7}}], device="cpu")
    rgb = pil_array(sample("RGB", (97, 61)))
    gray = np.asarray(sample("L", (97, 61)))
    out_rgb, out_gray = pipe([rgb, gray])
    assert out_rgb.shape == (7, 10, 3) and out_gray.shape == (7, 10)
    assert np.array_equal(out_rgb, rgb[:7, :10]) and np.array_equal(out_gray, gray[:7, :10])
    with pytest.raises(TypeError, match="uint8"):
        pipe(rgb.astype(np.float32))


def test_bad_calls_are_refused():
    pipe = Pipeline([{"type": "filter", "params": {"name": "blur"}}], device="cpu")
    with pytest.raises(TypeError, match="uint8"):
        pipe(torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="takes a tensor"):
        pipe("image.jpg")
    assert pipe([]) == []


def test_output_size_is_known_before_running():
    pipe = Pipeline([{"type": "resize", "params": {"width": 800, "height": 800}}], device="cpu")
    assert pipe.output_size(1920, 1080) == (800, 450)


def test_device_selection(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert select_device(None) == torch.device("cpu")
    assert Pipeline([], device=None).device == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device|not supported"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            select_device("cuda")
