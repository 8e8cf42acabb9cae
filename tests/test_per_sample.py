"""Per-sample parameters: images whose plans differ only in them run as one stack, and each
image's result is exactly what it is alone.

Every operation that declares per-sample parameters (``Operation.per_sample``) is covered from
its registry examples: those that differ only in those parameters are stacked, in every mode, on
every device, and each result must equal the image run alone, bit for bit.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from photos import COLOR_PHOTOS, sample, to_tensor

import kernels
from gpu_worker import per_sample, stacking
from gpu_worker.config import Settings
from gpu_worker.cross_job_batcher import CrossJobBatcher
from gpu_worker.jobs import JobRunner
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import BoundPlan, compile_plan

MODES = ("L", "LA", "RGB", "RGBA")
SIZE = (37, 29)  # as in tests/test_operations.py: the registry's examples are sized for it
CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
PER_SAMPLE_OPS = sorted(name for name, entry in REGISTRY.items() if entry.per_sample)


def plan(*ops: tuple[str, dict]):
    return compile_plan([{"type": name, "params": params} for name, params in ops])


def photo(mode: str, index: int, size: tuple[int, int] = SIZE, device: str | torch.device = "cpu") -> torch.Tensor:
    """A real photo as a uint8 (C, H, W) tensor; LA from RGBA as the generic tests make it."""
    name = COLOR_PHOTOS[index % len(COLOR_PHOTOS)]
    image = sample("RGBA", size, name).convert("LA") if mode == "LA" else sample(mode, size, name)
    return to_tensor(image, device)[0]


def alone(p, image: torch.Tensor) -> torch.Tensor:
    """The image run on its own, its plan's steps with their values as numbers."""
    out = p.bind(tuple(image.shape))(image.unsqueeze(0))
    return out[0] if isinstance(out, torch.Tensor) else out[0]


def mixed_stacks(name: str, mode: str) -> list[list[int]]:
    """Indices of the entry's examples that stack together in ``mode`` with different values."""
    entry = REGISTRY[name]
    plans = [plan((name, params)) for params in entry.examples]
    shape = (CHANNELS[mode], SIZE[1], SIZE[0])
    found = []
    for members, bounds in per_sample.stackable(plans, range(len(plans)), shape):
        if len({plans[i].key for i in members}) > 1:
            found.append(list(members))
    return found


def test_the_stack_key_ignores_per_sample_values_only():
    b11, b12 = plan(("adjust", {"brightness": 1.1})), plan(("adjust", {"brightness": 1.2}))
    assert b11.key != b12.key and b11.stack_key == b12.stack_key
    # Which factors are given is not a value: contrast unset differs from contrast 1.0.
    assert plan(("adjust", {"brightness": 1.1, "contrast": 1.0})).stack_key != b11.stack_key
    # Parameters the kernel cannot take per image stay in the key.
    assert plan(("gaussian_blur", {"radius": 2})).stack_key != plan(("gaussian_blur", {"radius": 3})).stack_key
    assert plan(("resize", {"width": 10})).stack_key != plan(("resize", {"width": 11})).stack_key
    # Two crop boxes share the key; whether they stack depends on their sizes (the bound steps).
    a = plan(("crop", {"left": 0, "right": 10}), ("gamma", {"value": 2.0}))
    b = plan(("crop", {"left": 5, "right": 15}), ("gamma", {"value": 0.5}))
    c = plan(("crop", {"left": 5, "right": 16}), ("gamma", {"value": 0.5}))
    assert a.stack_key == b.stack_key == c.stack_key
    shape = (3, 20, 30)
    assert per_sample.signature(a, a.bind(shape)) == per_sample.signature(b, b.bind(shape))
    assert per_sample.signature(a, a.bind(shape)) != per_sample.signature(c, c.bind(shape))


def test_per_sample_declarations_name_parameters_and_bind_to_per_sample_steps():
    assert {"adjust", "autocontrast", "crop", "gamma", "posterize", "solarize", "unsharp_mask"} <= set(PER_SAMPLE_OPS)
    for name in ("gaussian_blur", "box_blur", "resize", "rank_filter", "trim"):
        assert not REGISTRY[name].per_sample, f"{name}'s kernel shapes depend on its parameters"
    for name in PER_SAMPLE_OPS:
        entry = REGISTRY[name]
        assert set(entry.per_sample) <= set(entry.params_model.model_fields)
        for params in entry.examples:
            bound = plan((name, params)).bind((3, SIZE[1], SIZE[0]))
            assert all(step.per_sample is not None for step in bound.steps), (name, params)
    with pytest.raises(ValueError, match="not its parameters"):
        dataclasses.replace(REGISTRY["gamma"], per_sample=("gamma",))


@pytest.mark.parametrize("name", PER_SAMPLE_OPS)
def test_every_per_sample_operation_has_examples_that_stack_with_different_values(name):
    for mode in MODES:
        assert mixed_stacks(name, mode), f"{name}: no two examples differ only in {REGISTRY[name].per_sample} ({mode})"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", PER_SAMPLE_OPS)
def test_a_stack_with_mixed_parameters_equals_each_image_alone(device, name, mode):
    entry = REGISTRY[name]
    for members in mixed_stacks(name, mode):
        plans = [plan((name, entry.examples[i])) for i in members]
        # Twice each plan, on different photos, interleaved: [p0, p1, ..., p0, p1, ...].
        plans = plans + plans
        images = [photo(mode, i, device=device) for i in range(len(plans))]
        shape = tuple(images[0].shape)
        merged = per_sample.merge([p.bind(shape) for p in plans])
        assert merged.parts and len(merged.parts) == len(plans)
        for step in merged.steps:  # one call for the stack, each value a (B,) or (B, k) tensor
            values = [step.kernel.keywords[n] for n in step.per_sample.names]
            assert all(isinstance(v, torch.Tensor) and v.shape[0] == len(plans) for v in values)
        expected = [alone(p, image) for p, image in zip(plans, images)]
        stack = torch.stack(images)
        before = stack.clone()
        out = merged.run_fixed(stack)  # what run_stack does on CUDA
        assert torch.equal(stack, before), "the input was modified"
        for i, want in enumerate(expected):
            assert torch.equal(out[i], want), f"{name} {plans[i].key} on {mode}: the stack differs from alone"
        # A piece of the stack (run_stack's pieces after CUDA out-of-memory) is that piece's plan.
        piece = per_sample.part(merged, 1, 3)
        assert all(torch.equal(o, e) for o, e in zip(piece.run_fixed(stack[1:3]), expected[1:3]))
        # The stacked path as the worker takes it on CUDA, callable on any device.
        assert all(torch.equal(o, e) for o, e in zip(stacking.run_stacked(merged, images), expected))


def test_a_merged_plan_takes_only_a_stack_of_its_size():
    plans = [plan(("gamma", {"value": v})) for v in (0.5, 2.0)]
    merged = per_sample.merge([p.bind((3, 8, 8)) for p in plans])
    with pytest.raises(ValueError, match="stack of 2 images"):
        merged.run_fixed(torch.zeros((3, 3, 8, 8), dtype=torch.uint8))
    # Equal values: the first plan itself, nothing merged.
    same = [plan(("gamma", {"value": 0.5})) for _ in range(3)]
    bounds = [p.bind((3, 8, 8)) for p in same]
    assert per_sample.merge(bounds) is bounds[0]


def test_run_plan_counted_stacks_plans_that_line_up_and_runs_the_rest_apart():
    values = (1.1, 1.2, 0.7, 1.2)
    plans = [plan(("resize", {"width": 20}), ("adjust", {"brightness": v, "contrast": 1.3})) for v in values]
    plans += [plan(("resize", {"width": 20}), ("adjust", {"brightness": 1.1}))]  # no contrast: its own stack
    plans += [plan(("gamma", {"value": 2.0}))] * 2 + [plan(("gamma", {"value": 1.0}))]  # 1.0: no step at all
    plans += [plan(("crop", {"left": 0, "right": 10})), plan(("crop", {"left": 3, "right": 13})),
              plan(("crop", {"left": 3, "right": 14})), plan(("crop", {"left": 50}))]  # left 50: refused
    images = [photo("RGB", i) for i in range(len(plans))]
    ran = stacking.run_plan_counted(plans, images)
    assert ran.stacked == [4, 4, 4, 4, 1, 2, 2, 1, 2, 2, 1, 1]
    for p, image, out in zip(plans[:-1], images, ran.outputs):
        assert torch.equal(out, alone(p, image))
    assert "zero or negative area" in str(ran.outputs[-1])


def test_the_cpu_runs_each_image_with_its_own_plan(monkeypatch):
    """On the CPU nothing is stacked: each image runs alone, its values as numbers, several at once
    on the worker's thread pool (gpu_worker.cpu_pool), as before per-sample parameters."""
    calls = []
    run_fixed = BoundPlan.run_fixed
    monkeypatch.setattr(BoundPlan, "run_fixed",
                        lambda self, batch: calls.append((len(batch), bool(self.parts))) or run_fixed(self, batch))
    plans = [plan(("adjust", {"brightness": v})) for v in (1.1, 1.2, 1.3)]
    ran = stacking.run_plan_counted(plans, [photo("RGB", i) for i in range(3)])
    assert ran.stacked == [3, 3, 3] and calls == [(1, False)] * 3


def test_steps_after_trim_bind_per_image_plan():
    """Plans that differ after a data-dependent step: the step runs once for the stack, then each
    image's own operations after it."""
    plans = [compile_plan([{"type": "adjust", "params": {"brightness": b}}, {"type": "trim", "params": {}},
                           {"type": "gamma", "params": {"value": g}}]) for b, g in ((1.1, 2.0), (0.9, 0.5), (1.0, 3.0))]
    images = [photo("RGB", i) for i in range(3)]
    merged = per_sample.merge([p.bind(tuple(images[0].shape)) for p in plans])
    assert [r.key for r in merged.rests(3)] == [p.bind(tuple(images[0].shape)).rest.key for p in plans]
    expected = [alone(p, image) for p, image in zip(plans, images)]
    assert all(torch.equal(o, e) for o, e in zip(stacking.run_stacked(merged, images), expected))
    assert all(torch.equal(o, e) for o, e in zip(merged(torch.stack(images)), expected))


def test_concurrent_jobs_differing_only_in_brightness_share_one_kernel_call():
    batcher = CrossJobBatcher(wait_ms=50, max_pixels=10**9)
    jobs = [(plan(("resize", {"width": 30}), ("adjust", {"brightness": 0.8 + 0.05 * i, "contrast": 1.2})),
             photo("RGB", i, (61, 41))) for i in range(8)]
    start = threading.Barrier(len(jobs))

    def run(p, image):
        start.wait(timeout=20)
        return batcher(p, [image])

    with ThreadPoolExecutor(len(jobs)) as pool:
        ran = [f.result(timeout=20) for f in [pool.submit(run, p, image) for p, image in jobs]]
    stats = batcher.stats()
    assert stats["images"] == 8 and stats["kernel_calls"] <= 3  # 1 unless a thread started late
    assert stats["shared_calls"] >= 1 and stats["largest_stack"] >= 4
    for (p, image), result in zip(jobs, ran):
        assert result.stacked[0] > 1 and torch.equal(result.outputs[0], alone(p, image))
    # Different blur radii never share a call.
    blurs = [plan(("gaussian_blur", {"radius": r})) for r in (1, 2)]
    ran = batcher(blurs, [photo("RGB", 0), photo("RGB", 1)])
    assert ran.stacked == [1, 1]


def test_a_batch_job_with_a_brightness_per_image_stacks_them():
    datas = []
    for i in range(4):
        buffer = io.BytesIO()
        sample("RGB", SIZE, COLOR_PHOTOS[i]).save(buffer, "PNG")
        datas.append(base64.b64encode(buffer.getvalue()).decode())
    settings = dataclasses.replace(Settings(), gpu_worker_device="cpu", cache_max_bytes=0)
    runner = JobRunner(settings, torch.device("cpu"))
    items = [{"image": {"base64": data}, "operations": [{"type": "adjust", "params": {"brightness": 1 + i / 10}}]}
             for i, data in enumerate(datas)]
    batch = runner.run({"output": {"format": "PNG"}, "images": items})
    assert batch["success"] and batch["metadata"]["failed"] == 0
    assert [r["metadata"]["stacked"] for r in batch["results"]] == [4] * 4
    for item, result in zip(items, batch["results"]):
        single = runner.run({**item, "output": {"format": "PNG"}})
        assert single["processed_image"] == result["processed_image"]


# --- the kernels' per-image arguments ---------------------------------------------------------------


@pytest.mark.parametrize("size", [(23, 17), (240, 180)])  # the second: the CPU's byte-pair tables
def test_tone_and_adjust_kernels_take_one_value_per_image(device, size):
    batch = torch.stack([photo("RGBA", i, size, device) for i in range(3)])
    cases = [
        (kernels.gamma, "value", [2.2, 0.45, 1.0]),
        (kernels.solarize, "threshold", [128, 0, 256]),
        (kernels.posterize, "bits", [3, 8, 1]),
        (kernels.adjust, "brightness", [1.1, 0.0, 1.7]),
        (kernels.adjust, "saturation", [1.1, 0.0, 3.7]),
        (kernels.adjust, "sharpness", [2.0, 0.3, 1.0]),
        (kernels.adjust, "contrast", [0.5, 1.0, 2.5]),
        (kernels.autocontrast, "cutoff", [(0.0, 0.0), (2.5, 2.5), (1.0, 10.0)]),
        (functools.partial(kernels.autocontrast, preserve_tone=True), "cutoff", [(5.0, 5.0), (0.0, 0.0), (49, 1)]),
        (kernels.unsharp_mask, "percent", [150, 0, 1000]),
        (kernels.unsharp_mask, "threshold", [3, 0, 255]),
    ]
    for fn, name, values in cases:
        per_image = fn(batch, **{name: torch.tensor(values)})
        for i, value in enumerate(values):
            assert torch.equal(per_image[i], fn(batch[i : i + 1], **{name: value})[0]), (fn, name, value)


def test_crop_takes_one_box_per_image(device):
    batch = torch.stack([photo("RGB", i, device=device) for i in range(3)])
    boxes = [(0, 0, 10, 8), (30, 25, 40, 33), (-5, -2, 5, 6)]  # inside, past the corner, before it
    out = kernels.crop(batch, torch.tensor(boxes))
    assert out.shape == (3, 3, 8, 10)
    for i, box in enumerate(boxes):
        assert torch.equal(out[i], kernels.crop(batch[i : i + 1], box)[0])


@pytest.mark.parametrize("call, message", [
    (lambda x: kernels.gamma(x, torch.tensor([2.0])), r"value per image must be .* shape \(2,\)"),
    (lambda x: kernels.posterize(x, torch.tensor([2.0, 3.0])), "bits per image must be integers"),
    (lambda x: kernels.posterize(x, torch.tensor([2, 9])), "bits must be an integer 1..8, got 9"),
    (lambda x: kernels.solarize(x, torch.tensor([[1], [2]])), r"threshold per image must be .* shape \(2,\)"),
    (lambda x: kernels.adjust(x, brightness=torch.tensor([1.0, float("nan")])), "brightness must be finite"),
    (lambda x: kernels.crop(x, torch.tensor([[0, 0, 2, 2], [0, 0, 3, 2]])), "all be of one size"),
    (lambda x: kernels.crop(x, torch.tensor([[0, 0, 2, 2], [2, 0, 2, 2]])), "is empty"),
])
def test_bad_per_image_arguments_are_refused_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.zeros((2, 3, 4, 4), dtype=torch.uint8))
