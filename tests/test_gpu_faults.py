"""CUDA faults: out-of-memory on a large stack splits it, and an image that still does not fit
runs on the CPU; the device stays usable. Runs only where a GPU exists."""

from __future__ import annotations

import pytest
import torch

from conftest import cuda_only
from gpu_worker.stacking import run_stack
from gpu_worker.plan import compile_plan

pytestmark = [cuda_only, pytest.mark.cuda]

PLAN = compile_plan([{"type": "resize", "params": {"width": 4096, "height": 4096, "maintain_aspect": False}},
                     {"type": "filter", "params": {"name": "blur"}}])


@pytest.fixture
def small_memory_budget():
    """Cap this process's CUDA memory so a stack of a few large images cannot fit."""
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    budget = 1.5e9  # bytes: one 4096x4096 RGB image's intermediates fit, eight do not
    torch.cuda.set_per_process_memory_fraction(budget / total)
    yield
    torch.cuda.set_per_process_memory_fraction(1.0)
    torch.cuda.empty_cache()


def test_oom_splits_the_stack_and_the_device_stays_usable(small_memory_budget, caplog):
    batch = torch.randint(0, 256, (8, 3, 1024, 1024), dtype=torch.uint8, device="cuda")
    bound = PLAN.bind((3, 1024, 1024))
    with caplog.at_level("WARNING", logger="gpu_worker.stacking"):
        out = run_stack(bound, batch)
    assert "CUDA out of memory on a batch of 8" in caplog.text  # the split really happened
    assert out.shape == (8, 3, 4096, 4096) and out.device.type == "cuda"
    for i in (0, 7):  # split results equal single-image results
        assert torch.equal(out[i], bound(batch[i : i + 1])[0])
    # The device still works after the out-of-memory errors.
    assert torch.equal(run_stack(bound, batch[:1]), bound(batch[:1]))


def test_an_image_too_large_for_the_device_runs_on_the_cpu(caplog):
    torch.cuda.empty_cache()
    # 150 MB: the 3 MB input fits, the 4096x4096 result's int32 buffers (200 MB each) do not.
    torch.cuda.set_per_process_memory_fraction(0.15e9 / torch.cuda.get_device_properties(0).total_memory)
    try:
        image = torch.randint(0, 256, (1, 3, 1024, 1024), dtype=torch.uint8, device="cuda")
        bound = PLAN.bind((3, 1024, 1024))
        with caplog.at_level("WARNING", logger="gpu_worker.stacking"):
            out = run_stack(bound, image)
        assert "running it on the CPU" in caplog.text
        assert out.device.type == "cuda" and out.shape == (1, 3, 4096, 4096)
        assert torch.equal(out.cpu(), bound(image.cpu()))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
