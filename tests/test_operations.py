"""The generic tests every registered operation passes, from its registry entry alone.

For each entry of ``gpu_worker.operations.REGISTRY`` and each of its ``examples``, in every mode
(L, LA, RGB, RGBA), on every device: the bound plan's output equals the entry's Pillow reference
within its tolerance on real photos, the batch equals each image run alone, the input is left as
it was, and the size is the one the plan predicted before running. Parameters drawn from each
entry's own model (hypothesis) either bind and run to the predicted shape or are refused with a
message, and at least a quarter of them run. The README's operation table is the registry's.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from PIL import Image
import op_params
from photos import COLOR_PHOTOS, max_abs_diff, pil_array, sample, to_array, to_tensor
from pydantic import ValidationError

from gpu_worker.errors import InvalidInput, JobError
from gpu_worker.operations import REGISTRY
from gpu_worker.plan import compile_plan
from gpu_worker.resources import load_resources

MODES = ("L", "LA", "RGB", "RGBA")
SIZE = (37, 29)  # width, height: small, odd, larger than every kernel's footprint
CASES = [(name, i) for name, entry in REGISTRY.items() for i in range(len(entry.examples))]


def _photo(mode: str, name: str) -> Image.Image:
    return sample("RGBA", SIZE, name).convert("LA") if mode == "LA" else sample(mode, SIZE, name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, example", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_equals_pillow_batched_and_alone(device, name, example, mode):
    entry = REGISTRY[name]
    params = entry.examples[example]
    photos = [_photo(mode, photo) for photo in COLOR_PHOTOS[:3]]
    batch = torch.cat([to_tensor(im, device) for im in photos])
    before = batch.clone()
    # Resource parameters (overlay's image) loaded as a job's intake loads them; the reference
    # gets the same decoded image.
    plan = load_resources(compile_plan([{"type": name, "params": params}]), device)
    bound = plan.bind(tuple(batch.shape[1:]))
    out = _results(bound, batch)
    assert torch.equal(batch, before), "the input was modified"
    for i, im in enumerate(photos):
        assert out[i].dtype == torch.uint8 and out[i].device == batch.device
        expected = pil_array(entry.reference(im, plan.ops[0][1]))
        diff = max_abs_diff(to_array(out[i]), expected)
        assert diff <= entry.tolerance, f"{name} {params} on {mode} {COLOR_PHOTOS[i]}: {diff} levels from Pillow"
        assert torch.equal(out[i], _results(bound, batch[i : i + 1])[0]), "batched differs from alone"


def _results(bound, batch: torch.Tensor) -> list[torch.Tensor]:
    """The bound plan on a batch, as one (C, H, W) result per image: the predicted size, or, after
    a data-dependent step (trim), at most the size the plan allowed for before running."""
    out = bound(batch)
    if bound.shape_known:
        assert tuple(out.shape) == (batch.shape[0], *bound.out_shape), "not the size the plan predicted"
        return list(out)
    assert isinstance(out, list) and len(out) == batch.shape[0]
    for image in out:
        assert image.ndim == 3 and image.shape[0] == bound.out_shape[0]
        assert image.shape[1] <= bound.out_shape[1] and image.shape[2] <= bound.out_shape[2]
    return out


#: Least share of an entry's drawn parameters that must bind and run: the property below must
#: not pass by refusing every draw.
LEAST_RUN_SHARE = 0.25


@pytest.mark.parametrize("name", list(REGISTRY))
def test_drawn_parameters_run_to_the_predicted_shape_or_are_refused(name):
    """Parameters drawn from the entry (tests/op_params.py: its examples perturbed, its fields'
    types) bind and run to the predicted shape, or are refused with a message naming the
    operation; at least LEAST_RUN_SHARE of them run."""
    entry = REGISTRY[name]
    image = to_tensor(_photo("RGBA", COLOR_PHOTOS[0]))
    outcomes: Counter[str] = Counter()

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(params=op_params.params(entry))
    def check(params):
        outcomes["drawn"] += 1
        try:
            entry.params_model.model_validate(params)
        except ValidationError:
            with pytest.raises(InvalidInput, match=rf"operations\[0\] \({name}\)\.params"):
                compile_plan([{"type": name, "params": params}])
            return
        try:
            plan = load_resources(compile_plan([{"type": name, "params": params}]))
        except JobError as exc:  # a resource that is not an image
            assert str(exc).startswith(f"operations[0] ({name}).params.image"), exc
            return
        try:
            bound = plan.bind(tuple(image.shape[1:]))
        except InvalidInput as exc:
            assert str(exc).startswith(f"operations[0] ({name}): ")
            return
        _results(bound, image)  # the predicted shape, or within the allowed one
        outcomes["ran"] += 1

    check()
    assert outcomes["ran"] >= LEAST_RUN_SHARE * outcomes["drawn"], f"{name}: {dict(outcomes)}"


def test_every_entry_is_complete():
    for name, entry in REGISTRY.items():
        assert entry.name == name and entry.summary and entry.examples, name
        for params in entry.examples:
            entry.params_model.model_validate(params)  # every example is valid
