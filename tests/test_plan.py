"""The op compiler: validation messages, size inference, Pillow's sizing rules."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from gpu_worker.errors import InvalidInput, LimitExceeded
from gpu_worker.operations import REGISTRY, OpParams
from gpu_worker.operations.resize import ResizeParams, resize_size, thumbnail_size
from gpu_worker.plan import compile_plan


def resize_op(**params):
    return [{"type": "resize", "params": params}]


def test_width_only_keeps_aspect_like_the_tutorial():
    # The tutorial: ratio = width / image.width; height = int(image.height * ratio)
    assert compile_plan(resize_op(width=800)).output_shape((3, 1080, 1920)) == (3, 450, 800)
    assert compile_plan(resize_op(width=1)).output_shape((3, 10, 1000)) == (3, 1, 1)  # at least 1
    assert compile_plan(resize_op(height=100)).output_shape((1, 300, 451)) == (1, 100, 150)


def test_both_sides_fit_inside_the_box_as_pillow_thumbnail_sizes_it():
    rng = random.Random(7)
    for _ in range(400):
        w, h = rng.randint(1, 3000), rng.randint(1, 3000)
        bw, bh = rng.randint(1, 3000), rng.randint(1, 3000)
        im = Image.new("L", (w, h))
        im.thumbnail((bw, bh), reducing_gap=None)
        assert thumbnail_size(w, h, bw, bh) == im.size, (w, h, bw, bh)
        assert resize_size(ResizeParams(width=bw, height=bh), w, h) == im.size


def test_thumbnail_never_enlarges_and_exact_size_when_aspect_is_off():
    assert compile_plan(resize_op(width=4000, height=4000)).output_shape((3, 100, 200)) == (3, 100, 200)
    assert compile_plan(resize_op(width=4000, height=4000)).bind((3, 100, 200)).steps == ()
    assert compile_plan(resize_op(width=30, height=70, maintain_aspect=False)).output_shape((3, 100, 200)) == (3, 70, 30)


def test_shapes_are_inferred_through_a_chain():
    plan = compile_plan([
        {"type": "crop", "params": {"left": 10, "top": 20, "right": 110, "bottom": 70}},
        {"type": "resize", "params": {"width": 50}},
        {"type": "filter", "params": {"name": "grayscale"}},
        {"type": "adjust", "params": {"contrast": 1.5}},
    ])
    bound = plan.bind((4, 200, 300))
    assert [s.out_shape for s in bound.steps] == [(4, 50, 100), (4, 25, 50), (1, 25, 50), (1, 25, 50)]
    assert plan.bind((4, 200, 300)) is bound  # cached per shape


def test_crop_defaults_to_the_image_edges_and_refuses_empty_boxes():
    plan = compile_plan([{"type": "crop", "params": {"left": 5}}])
    assert plan.output_shape((3, 40, 30)) == (3, 40, 25)
    with pytest.raises(InvalidInput, match=r"operations\[0\] \(crop\).*zero or negative area"):
        compile_plan([{"type": "crop", "params": {"left": 50}}]).bind((3, 40, 30))
    with pytest.raises(InvalidInput, match="zero or negative area"):
        compile_plan([{"type": "crop", "params": {"left": 5, "right": 5}}]).bind((3, 40, 30))


@pytest.mark.parametrize("operations, expected", [
    ([{"type": "twirl"}], r"operations\[0\]\.type: 'twirl' is not an operation; allowed: adjust, .*crop, .*filter, "
                          r".*resize, .*rotate\b"),
    ([{"params": {}}], r"operations\[0\]\.type: missing is not an operation"),
    (resize_op(widht=3), r"unknown field 'widht'; allowed: filter, height, maintain_aspect, width"),
    (resize_op(width=0), r"params\.width: Input should be greater than or equal to 1 \(got 0\)"),
    (resize_op(width="80"), r"params\.width: Input should be a valid integer"),
    (resize_op(width=True), r"params\.width: Input should be a valid integer"),
    (resize_op(width=10, filter="cubic"), r"params\.filter: Input should be 'nearest', 'bilinear', 'bicubic' or 'lanczos'"),
    (resize_op(), r"resize needs 'width', 'height' or both"),
    ([{"type": "filter", "params": {"name": "blurry"}}], r"params\.name: Input should be 'blur'"),
    ([{"type": "filter"}], r"params\.name: Field required"),
    ([{"type": "adjust", "params": {"brightness": float("nan")}}], r"brightness: Input should be a finite number"),
    ([{"type": "adjust", "params": {"contrast": float("inf")}}], r"contrast: Input should be a finite number"),
    ([{"type": "adjust", "params": {"saturation": -1}}], r"saturation: Input should be greater than or equal to 0"),
    ([{"type": "adjust", "params": {"brightness": 1e9}}], r"brightness: Input should be less than or equal to 100"),
    ([{"type": "adjust", "params": {}}], r"adjust needs 'brightness', 'contrast', 'saturation' or 'sharpness'"),
    ([{"type": "crop", "params": {"left": 1.5}}], r"left: Input should be a valid integer"),
    ([{"type": "crop", "params": {"left": 10**12}}], r"left: Input should be less than or equal to 1000000"),
    ([{"type": "resize", "params": [800]}], r"operations\[0\]\.params must be an object, got list"),
    ([{"type": "resize", "extra": 1}], r"operations\[0\]: unknown field 'extra'; allowed: params, type"),
    (["resize"], r"operations\[0\] must be an object"),
    ("resize", r"operations must be a list"),
    ({"type": "resize"}, r"operations must be a list"),
])
def test_bad_operations_are_refused_with_a_message_naming_them(operations, expected):
    with pytest.raises(InvalidInput, match=expected):
        compile_plan(operations)


def test_operation_count_limit():
    ops = [{"type": "filter", "params": {"name": "blur"}}] * 5
    assert len(compile_plan(ops, max_operations=5)) == 5
    with pytest.raises(LimitExceeded, match="operations: 6 operations is over the limit MAX_OPERATIONS=5 per job"):
        compile_plan(ops + ops[:1], max_operations=5)


def test_plan_key_is_canonical():
    a = compile_plan([{"type": "resize", "params": {"width": 80}}])
    b = compile_plan([{"type": "resize", "params": {"width": 80, "maintain_aspect": True, "filter": "lanczos"}}])
    c = compile_plan([{"type": "resize", "params": {"width": 81}}])
    assert a.key == b.key != c.key


def test_every_registered_op_has_a_model_and_binder():
    for name, op in REGISTRY.items():
        assert op.name == name and issubclass(op.params_model, OpParams) and callable(op.bind)
