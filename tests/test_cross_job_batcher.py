"""The cross-job batcher: concurrent calls coalesce into stacked runs, results stay exact."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch

import gpu_worker.cross_job_batcher as batcher_module
from gpu_worker.cross_job_batcher import CrossJobBatcher
from gpu_worker.stacking import run_plan_counted
from gpu_worker.errors import InvalidInput
from gpu_worker.plan import compile_plan
from photos import COLOR_PHOTOS, sample, to_tensor

#: Seconds any one thread may take before a test calls it hung.
HANG_S = 20.0

RESIZE = compile_plan([{"type": "resize", "params": {"width": 40}}])
BLUR = compile_plan([{"type": "filter", "params": {"name": "blur"}}, {"type": "adjust", "params": {"contrast": 1.3}}])
GRAY = compile_plan([{"type": "filter", "params": {"name": "grayscale"}}])
#: Raises InvalidInput on bind for images narrower than 51 px.
CROP = compile_plan([{"type": "crop", "params": {"left": 50}}])


def photo(name: str = "astronaut.png", size: tuple[int, int] = (97, 61)) -> torch.Tensor:
    """A real photo crop as a uint8 (3, H, W) tensor; size is (width, height)."""
    return to_tensor(sample("RGB", size, name))[0]


def alone(plan, image: torch.Tensor) -> torch.Tensor:
    """The reference: the image run on its own through the default executor."""
    return run_plan_counted(plan, [image]).outputs[0]


def concurrently(fn, args_list: list, workers: int | None = None) -> list:
    """Run fn(*args) for each args on its own thread, all released at once; results in order."""
    workers = workers or len(args_list)
    start = threading.Barrier(min(workers, len(args_list)))

    def task(args):
        if len(args_list) <= workers:
            start.wait(timeout=HANG_S)
        return fn(*args)

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(task, args) for args in args_list]
        return [f.result(timeout=HANG_S) for f in futures]


class RecordingRunStack:
    """Wraps stacking.run_images (the batcher's one kernel call per stack), recording each call's
    bound plan and stack shape (B, C, H, W)."""

    def __init__(self, monkeypatch, fail_on=None):
        self.calls: list[tuple[object, tuple[int, ...]]] = []
        self.fail_on = fail_on
        self._lock = threading.Lock()
        self._real = batcher_module.run_images
        monkeypatch.setattr(batcher_module, "run_images", self)

    def __call__(self, bound, images, **options):
        shape = (len(images), *images[0].shape)
        with self._lock:
            self.calls.append((bound, shape))
        if self.fail_on is not None and shape[1:] == self.fail_on:
            raise RuntimeError(f"kernel failed on {self.fail_on}")
        return self._real(bound, images, **options)


def test_concurrent_calls_share_one_kernel_call_and_match_running_alone(monkeypatch):
    recorder = RecordingRunStack(monkeypatch)
    batcher = CrossJobBatcher(wait_ms=50, max_pixels=10**9)
    images = [photo(COLOR_PHOTOS[i % len(COLOR_PHOTOS)]) for i in range(8)]
    ran = concurrently(lambda image: batcher(BLUR, [image]), [(image,) for image in images])

    stats = batcher.stats()
    assert stats["requests"] == 8 and stats["images"] == 8
    assert stats["kernel_calls"] == len(recorder.calls) <= 3  # 1 unless a thread started late
    assert stats["shared_calls"] >= 1 and stats["largest_stack"] >= 4
    assert stats["queued"] == 0 and stats["buckets"] == 0  # nothing left behind
    for image, result in zip(images, ran):
        assert len(result.outputs) == 1 and result.stacked[0] > 1
        assert torch.equal(result.outputs[0], alone(BLUR, image))
    assert sum(r.stacked[0] for r in ran) >= 8  # each counted in a stack of its size

    # Results are independent: writing into one leaves the others as they were.
    ran[0].outputs[0].fill_(0)
    for image, result in zip(images[1:], ran[1:]):
        assert torch.equal(result.outputs[0], alone(BLUR, image))


def test_different_plans_and_shapes_are_never_stacked_together(monkeypatch):
    recorder = RecordingRunStack(monkeypatch)
    batcher = CrossJobBatcher(wait_ms=40, max_pixels=10**9)
    plans = (RESIZE, BLUR, GRAY)
    sizes = ((97, 61), (61, 97))
    jobs = [(plans[i % 3], photo(COLOR_PHOTOS[i % 4], sizes[(i // 3) % 2])) for i in range(12)]
    ran = concurrently(lambda plan, image: batcher(plan, [image]), jobs)

    for (plan, image), result in zip(jobs, ran):
        assert torch.equal(result.outputs[0], alone(plan, image))
    # Every run used exactly one plan bound to exactly its batch's shape.
    bound_of = {id(plan.bind(tuple(image.shape))): (plan.key, tuple(image.shape)) for plan, image in jobs}
    seen = set()
    for bound, shape in recorder.calls:
        key, in_shape = bound_of[id(bound)]
        assert shape[1:] == in_shape
        seen.add((key, in_shape))
    assert len(seen) == 6 and len(recorder.calls) >= 6
    assert sum(shape[0] for _, shape in recorder.calls) == 12


def test_one_call_with_mixed_shapes_keeps_its_order():
    batcher = CrossJobBatcher(wait_ms=5, max_pixels=10**9)
    images = [photo(name, size) for name in COLOR_PHOTOS for size in ((97, 61), (61, 97), (40, 30))]
    ran = batcher(RESIZE, images)
    assert [r.shape for r in ran.outputs] == [alone(RESIZE, image).shape for image in images]
    for image, output in zip(images, ran.outputs):
        assert torch.equal(output, alone(RESIZE, image))
    assert ran.stacked == [4] * len(images)  # the call's own same-shaped images stack together
    assert batcher(RESIZE, []) == ([], [])


def test_a_batch_never_exceeds_max_pixels(monkeypatch):
    recorder = RecordingRunStack(monkeypatch)
    per_image = 97 * 61
    batcher = CrossJobBatcher(wait_ms=30, max_pixels=3 * per_image + per_image // 2)  # room for 3
    singles = [(GRAY, [photo(COLOR_PHOTOS[i % 4])]) for i in range(8)]
    many = [(GRAY, [photo(COLOR_PHOTOS[i % 4]) for i in range(7)])]
    ran = concurrently(batcher, singles + many)

    assert all(shape[0] <= 3 for _, shape in recorder.calls)
    assert batcher.stats()["largest_stack"] == 3  # 15 images: full stacks do form
    for (plan, images), result in zip(singles + many, ran):
        assert all(1 <= n <= 3 for n in result.stacked)
        for image, output in zip(images, result.outputs):
            assert torch.equal(output, alone(plan, image))

    # A single image over the limit runs alone.
    small = CrossJobBatcher(wait_ms=5, max_pixels=100)
    ran = concurrently(small, [(GRAY, [photo(name)]) for name in COLOR_PHOTOS])
    assert [r.stacked for r in ran] == [[1]] * 4 and small.stats()["largest_stack"] == 1


class FakeClock:
    """The batcher's clock (``time.monotonic``) and its leaders' timed waits, faked: a timed
    wait on a bucket returns at once and moves the clock on by its timeout, so how long a
    leader waited is read off the clock, not measured. Untimed waits (a caller waiting for its
    outputs) stay real. For one thread at a time."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        self.timed_waits: list[float] = []  # the timeout of every timed wait, in order
        clock = self

        class Condition(threading.Condition):
            def wait(self, timeout=None):
                if timeout is None:
                    return super().wait()
                clock.timed_waits.append(timeout)
                clock.now += timeout
                return False  # timed out: nothing notified it

        monkeypatch.setattr(batcher_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
        monkeypatch.setattr(batcher_module, "threading", SimpleNamespace(Lock=threading.Lock, Condition=Condition))


def test_a_lone_request_waits_wait_ms_for_company_then_runs_alone(monkeypatch):
    wait_ms = 60
    image = photo("coffee.png")
    expected = alone(RESIZE, image)
    batcher = CrossJobBatcher(wait_ms=wait_ms, max_pixels=10**9)
    batcher(RESIZE, [image])  # warm-up: first kernel call pays one-off costs
    started = time.perf_counter()
    ran = batcher(RESIZE, [image])
    elapsed_ms = (time.perf_counter() - started) * 1000
    # The real clock: the wait did happen. The upper bound only guards against a hang; how long
    # the leader waits is read off the fake clock below.
    assert wait_ms * 0.9 <= elapsed_ms < HANG_S * 1000
    assert torch.equal(ran.outputs[0], expected) and ran.stacked == [1]

    clock = FakeClock(monkeypatch)
    batcher = CrossJobBatcher(wait_ms=wait_ms, max_pixels=10**9)
    ran = batcher(RESIZE, [image])
    assert clock.timed_waits == [pytest.approx(wait_ms / 1000)]  # one wait of wait_ms, then it ran
    assert torch.equal(ran.outputs[0], expected) and ran.stacked == [1]
    assert batcher.stats()["kernel_calls"] == 1


def test_wait_ms_zero_runs_at_once_and_full_batches_do_not_wait(monkeypatch):
    clock = FakeClock(monkeypatch)
    image = photo("rocket.jpg")
    batcher = CrossJobBatcher(wait_ms=0, max_pixels=10**9)
    ran = batcher(BLUR, [image, image])
    assert clock.timed_waits == []
    assert ran.stacked == [2, 2] and all(torch.equal(o, alone(BLUR, image)) for o in ran.outputs)

    # A bucket that reaches max_pixels runs without waiting out a long wait_ms.
    full = CrossJobBatcher(wait_ms=10_000, max_pixels=2 * 97 * 61)
    ran = full(BLUR, [image, image])
    assert clock.timed_waits == [] and ran.stacked == [2, 2]
    assert full.stats()["kernel_calls"] == 1

    # The same call one image short of full does wait (the fake clock's) wait_ms.
    short = CrossJobBatcher(wait_ms=10_000, max_pixels=3 * 97 * 61)
    ran = short(BLUR, [image, image])
    assert clock.timed_waits == [pytest.approx(10.0)] and ran.stacked == [2, 2]


def test_a_failing_batch_reaches_all_its_callers_and_no_others():
    batcher = CrossJobBatcher(wait_ms=50, max_pixels=10**9)
    good = [photo(name) for name in COLOR_PHOTOS]  # 97 px wide: crop from x=50 is fine
    bad = [photo(name, (40, 30)) for name in COLOR_PHOTOS]  # 40 px wide: bind raises

    def attempt(image):
        try:
            return batcher(CROP, [image])
        except InvalidInput as exc:
            return exc

    ran = concurrently(attempt, [(image,) for pair in zip(good, bad) for image in pair])
    for image, result in zip(good, ran[0::2]):
        assert torch.equal(result.outputs[0], alone(CROP, image))
    for result in ran[1::2]:
        assert isinstance(result, InvalidInput) and "zero or negative area" in str(result)
    stats = batcher.stats()
    assert stats["failed_calls"] >= 1 and stats["queued"] == 0 and stats["buckets"] == 0

    # A call with one image in a failing batch fails as a whole; the batcher stays usable.
    with pytest.raises(InvalidInput):
        batcher(CROP, [good[0], bad[0]])
    assert torch.equal(batcher(CROP, [good[1]]).outputs[0], alone(CROP, good[1]))


def test_a_kernel_error_is_raised_in_every_caller_of_that_batch(monkeypatch):
    RecordingRunStack(monkeypatch, fail_on=(3, 30, 40))
    batcher = CrossJobBatcher(wait_ms=50, max_pixels=10**9)
    jobs = [(GRAY, [photo(name, size)]) for name in COLOR_PHOTOS for size in ((97, 61), (40, 30))]

    def attempt(plan, images):
        try:
            return batcher(plan, images)
        except RuntimeError as exc:
            return exc

    ran = concurrently(attempt, jobs)
    for (plan, images), result in zip(jobs, ran):
        if images[0].shape[1:] == (30, 40):
            assert isinstance(result, RuntimeError) and "kernel failed" in str(result)
        else:
            assert torch.equal(result.outputs[0], alone(plan, images[0]))
    assert batcher.stats()["buckets"] == 0
    assert torch.equal(batcher(GRAY, [photo()]).outputs[0], alone(GRAY, photo()))


@pytest.mark.parametrize("wait_ms", [3, 0])
def test_stress_many_threads_random_plans_and_shapes(wait_ms):
    rng = random.Random(11)
    plans = (RESIZE, BLUR, GRAY)
    sizes = ((97, 61), (61, 97), (64, 48))
    images = {(name, size): photo(name, size) for name in COLOR_PHOTOS for size in sizes}
    expected = {(plan.key, key): alone(plan, image) for plan in plans for key, image in images.items()}
    calls = []
    for _ in range(200):
        plan = rng.choice(plans)
        keys = [rng.choice(list(images)) for _ in range(rng.randint(1, 3))]
        calls.append((plan, keys))
    max_pixels = 4 * 97 * 61  # 4 of the larger shapes, 7 of the 64 x 48 one
    batcher = CrossJobBatcher(wait_ms=wait_ms, max_pixels=max_pixels)

    def one(plan, keys):
        return batcher(plan, [images[key] for key in keys])

    ran = concurrently(one, calls, workers=16)  # each call's result awaited at most HANG_S
    for (plan, keys), result in zip(calls, ran):
        assert len(result.outputs) == len(keys)
        for key, output, n in zip(keys, result.outputs, result.stacked):
            assert torch.equal(output, expected[(plan.key, key)])
            assert 1 <= n and n * key[1][0] * key[1][1] <= max_pixels
    stats = batcher.stats()
    assert stats["requests"] == 200 and stats["images"] == sum(len(k) for _, k in calls)
    assert stats["kernel_calls"] <= stats["images"] and stats["largest_stack"] <= 7
    if wait_ms:
        assert stats["kernel_calls"] < stats["images"] and stats["shared_calls"] > 0
    assert stats["queued"] == 0 and stats["buckets"] == 0


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        CrossJobBatcher(wait_ms=-1, max_pixels=10)
    with pytest.raises(ValueError, match=r"images\[0\]"):
        CrossJobBatcher(wait_ms=0, max_pixels=10)(GRAY, [photo().unsqueeze(0)])


def test_stress_with_failing_batches_never_hangs_or_leaks():
    """Calls mixing good and failing images: each fails exactly when one of its images does."""
    rng = random.Random(5)
    sizes = ((97, 61), (40, 30), (64, 48))  # CROP (left=50) cannot bind to 40 px wide
    images = {(name, size): photo(name, size) for name in COLOR_PHOTOS for size in sizes}
    calls = [[rng.choice(list(images)) for _ in range(rng.randint(1, 3))] for _ in range(200)]
    batcher = CrossJobBatcher(wait_ms=2, max_pixels=3 * 97 * 61)

    def one(keys):
        try:
            return batcher(CROP, [images[key] for key in keys])
        except InvalidInput as exc:
            return exc

    ran = concurrently(one, [(keys,) for keys in calls], workers=16)
    for keys, result in zip(calls, ran):
        if any(size == (40, 30) for _, size in keys):
            assert isinstance(result, InvalidInput)
        else:
            for key, output in zip(keys, result.outputs):
                assert torch.equal(output, alone(CROP, images[key]))
    stats = batcher.stats()
    assert stats["failed_calls"] > 0 and stats["queued"] == 0 and stats["buckets"] == 0
