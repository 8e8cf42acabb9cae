"""Cross-job dynamic batching: stack compatible images from concurrent jobs into one kernel call.

Each job runs on its own thread and calls its executor as ``executor(plan, images) -> Ran``.
:class:`CrossJobBatcher` is such an executor. It sorts every call's images into *buckets* of
compatible work: same shape ``(C, H, W)``, same device, and plans that are equal or differ only in
per-sample parameters whose steps line up (:func:`gpu_worker.per_sample.signature`: brightness 1.1
and 1.2). Work in one bucket is stacked into a ``(B, C, H, W)`` tensor and run once, whichever job
each image came from, each image with its own values — the dynamic batching of inference servers,
applied to images.

Leader/follower, no background thread: the first caller to find a bucket with queued images and
no leader becomes its leader. The leader waits until the oldest queued image has waited
``wait_ms`` (or until the bucket holds a full batch of ``max_pixels``), takes a batch off the
front of the queue, gives up leadership, runs the batch in its own thread and hands every caller
in it its outputs. Anything left queued is led by one of the callers still waiting for it.

Used as the job runner's executor::

    batcher = CrossJobBatcher(settings.batch_wait_ms, settings.max_stack_pixels, policy.pool)
    ran = batcher(plan, images)   # from many job threads at once
    ran.outputs, ran.stacked      # one output per image; images in the kernel call that made it
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import Hashable, Optional, Sequence

import torch

from gpu_worker import per_sample
from gpu_worker.cpu_pool import ONE_BY_ONE, ImagePool
from gpu_worker.errors import JobError
from gpu_worker.plan import Plan
from gpu_worker.stacking import Ran, run_images

#: A bucket's identity: what the plans must share to stack (their per_sample.signature at the
#: shape, or the plan's key when it does not bind there), image shape (C, H, W), device.
BucketKey = tuple[Hashable, tuple[int, ...], torch.device]


class _Call:
    """One executor call: where its outputs go, how many are still due, and its wake-up."""

    __slots__ = ("outputs", "stacked", "remaining", "error", "buckets", "queued", "wake")

    def __init__(self, count: int, wake: threading.Condition):
        self.outputs: list[Optional[torch.Tensor]] = [None] * count
        self.stacked = [0] * count
        self.remaining = count  # images not yet delivered (outputs or error)
        self.error: Optional[BaseException] = None
        self.buckets: dict[BucketKey, _Bucket] = {}  # the buckets this call queued images in
        self.queued: dict[BucketKey, int] = {}  # of those, images still waiting in each
        self.wake = wake  # notified when the call is done, or one of its buckets needs a leader


class _Entry:
    """One queued image: whose it is, its position in that call, its plan, and when it was queued."""

    __slots__ = ("call", "index", "image", "plan", "queued_s")

    def __init__(self, call: _Call, index: int, image: torch.Tensor, plan: Plan, queued_s: float):
        self.call, self.index, self.image, self.plan, self.queued_s = call, index, image, plan, queued_s


class _Bucket:
    """Queued images that may share one kernel call, and whether a leader is collecting them."""

    __slots__ = ("key", "shape", "capacity", "entries", "led", "filled")

    def __init__(self, key: BucketKey, capacity: int, lock: threading.Lock):
        self.key = key
        self.shape = key[1]
        self.capacity = capacity  # most images in one kernel call
        self.entries: deque[_Entry] = deque()  # FIFO by queued_s
        self.led = False
        self.filled = threading.Condition(lock)  # the leader waits on this for a full batch


class CrossJobBatcher:
    """An executor that coalesces compatible work from concurrent calls into one stacked run.

    Args:
        wait_ms: how long, in milliseconds, the oldest queued image of a bucket may wait for
            others to join before its batch runs. 0 runs at once (still taking whatever is
            already queued).
        max_pixels: most input pixels (H x W per image, summed over the stack) in one kernel
            call; a batch runs as soon as its bucket holds that many. A single image larger than
            this runs alone. 0 means no limit.
        pool: the host threads a batch on the CPU runs its images on, one per thread.

    Thread-safe: call it from any number of threads. Each call blocks until all of its images
    have run and returns :class:`~gpu_worker.stacking.Ran` in input order; if a batch holding
    any of its images raised, the call raises that exception (every caller in that batch does).
    Outputs are views into their batch's output tensor, disjoint from every other caller's.
    """

    def __init__(self, wait_ms: float, max_pixels: int, pool: ImagePool = ONE_BY_ONE):
        if wait_ms < 0 or max_pixels < 0:
            raise ValueError(f"wait_ms and max_pixels must not be negative, got {wait_ms!r} and {max_pixels!r}")
        self.wait_ms = float(wait_ms)
        self.max_pixels = int(max_pixels)
        self.pool = pool
        self._wait_s = self.wait_ms / 1000.0
        # One lock guards every bucket, call and counter; the conditions below all share it,
        # so every check-then-wait is atomic and no notify can fall between check and wait.
        self._lock = threading.Lock()
        self._buckets: dict[BucketKey, _Bucket] = {}
        self._stats = {"requests": 0, "kernel_calls": 0, "images": 0, "largest_stack": 0,
                       "shared_calls": 0, "failed_calls": 0}

    # --- the executor call ------------------------------------------------------------------

    def __call__(self, plan: Plan | Sequence[Plan], images: Sequence[torch.Tensor]) -> Ran:
        """Run ``plan`` (one for every image, or one per image) on uint8 ``(C, H, W)`` images,
        stacked with compatible concurrent work.

        Returns one output per image, in order (a JobError for an image refused for its size
        after a data-dependent step: gpu_worker.stacking), and the number of images in the kernel
        call that produced each. Blocks until every image has run.
        """
        images = list(images)
        for index, image in enumerate(images):
            if image.ndim != 3:
                raise ValueError(f"images[{index}]: expected a (C, H, W) tensor, got shape {tuple(image.shape)}")
        plans = [plan] * len(images) if isinstance(plan, Plan) else list(plan)
        if len(plans) != len(images):
            raise ValueError(f"{len(plans)} plans for {len(images)} images")
        if not images:
            return Ran([], [])
        keys = [_stack_key(p, image) for p, image in zip(plans, images)]  # binds (cached): outside the lock
        with self._lock:
            call = _Call(len(images), threading.Condition(self._lock))
            self._stats["requests"] += 1
            self._enqueue(call, plans, keys, images)
        try:
            while True:
                with self._lock:
                    bucket = self._wait_for_turn(call)
                    if bucket is None:
                        break
                    batch = self._claim(bucket)
                if batch:
                    self._run(bucket, batch)  # without the lock: other buckets run meanwhile
        finally:
            with self._lock:
                self._withdraw(call)
        if call.error is not None:
            raise call.error
        return Ran(call.outputs, call.stacked)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters.

        ``requests``: executor calls; ``kernel_calls``: stacked runs (failed ones included);
        ``images``: images in them; ``largest_stack``: most images in one run;
        ``shared_calls``: runs holding images from more than one caller; ``failed_calls``: runs
        that raised; ``queued``: images waiting now; ``buckets``: buckets open now.
        """
        with self._lock:
            snapshot = dict(self._stats)
            snapshot["queued"] = sum(len(b.entries) for b in self._buckets.values())
            snapshot["buckets"] = len(self._buckets)
        return snapshot

    # --- internals: every method below but _run is called with the lock held -----------------

    def _capacity(self, shape: tuple[int, ...]) -> int:
        """Most images of ``shape`` (C, H, W) that one kernel call may hold (at least 1)."""
        if not self.max_pixels:
            return sys.maxsize
        return max(1, self.max_pixels // max(1, shape[1] * shape[2]))

    def _enqueue(self, call: _Call, plans: list[Plan], keys: list[BucketKey], images: list[torch.Tensor]) -> None:
        now = time.monotonic()  # read under the lock so each bucket's queue stays in time order
        for index, (image, plan, key) in enumerate(zip(images, plans, keys)):
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(key, self._capacity(key[1]), self._lock)
            bucket.entries.append(_Entry(call, index, image, plan, now))
            call.buckets[key] = bucket
            call.queued[key] = call.queued.get(key, 0) + 1
        for bucket in call.buckets.values():
            if bucket.led and len(bucket.entries) >= bucket.capacity:
                bucket.filled.notify()  # a full batch: its leader need not wait any longer

    def _wait_for_turn(self, call: _Call) -> Optional[_Bucket]:
        """Block until the call is finished (None) or one of its buckets needs a leader (it)."""
        while call.remaining and call.error is None:
            # Lead only where the call's own images wait: leading a bucket whose images are all
            # other callers' would delay this call for nothing (their callers get woken).
            for key, bucket in call.buckets.items():
                if call.queued[key] and not bucket.led:
                    return bucket
            # Woken by delivery (_run) or by a leader leaving queued images behind (_release);
            # both change state under this lock, so the check above cannot miss them.
            call.wake.wait()
        return None

    def _claim(self, bucket: _Bucket) -> list[_Entry]:
        """Lead ``bucket``: wait for it to fill or its oldest image to time out, take a batch."""
        bucket.led = True
        try:
            while bucket.entries and len(bucket.entries) < bucket.capacity:
                left_s = bucket.entries[0].queued_s + self._wait_s - time.monotonic()
                if left_s <= 0:
                    break
                bucket.filled.wait(left_s)
            batch: list[_Entry] = []
            while bucket.entries and len(batch) < bucket.capacity:
                entry = bucket.entries.popleft()
                entry.call.queued[bucket.key] -= 1
                if entry.call.error is None:  # a failed call's images are not worth running
                    batch.append(entry)
            return batch
        finally:
            # Give up leadership before running, so the next batch can gather meanwhile.
            bucket.led = False
            self._release(bucket)

    def _release(self, bucket: _Bucket) -> None:
        """After a leader leaves: wake the callers with images still queued, or drop the bucket."""
        if bucket.entries:
            for call in {entry.call for entry in bucket.entries}:
                call.wake.notify()  # any of them may lead; one busy elsewhere re-checks later
        elif self._buckets.get(bucket.key) is bucket:
            del self._buckets[bucket.key]

    def _run(self, bucket: _Bucket, batch: list[_Entry]) -> None:
        """Stack ``batch``, run it once, and deliver outputs or the exception (lock not held)."""
        outputs: Sequence[Optional[torch.Tensor]] = [None] * len(batch)
        error: Optional[BaseException] = None
        try:
            images = [entry.image for entry in batch]
            bound = per_sample.merge([entry.plan.bind(bucket.shape) for entry in batch])
            outputs = run_images(bound, images, pool=self.pool)
        except BaseException as exc:  # noqa: BLE001 - every caller in the batch must hear of it
            error = exc
        callers = {entry.call for entry in batch}
        with self._lock:
            stats = self._stats
            stats["kernel_calls"] += 1
            stats["images"] += len(batch)
            stats["largest_stack"] = max(stats["largest_stack"], len(batch))
            stats["shared_calls"] += len(callers) > 1
            stats["failed_calls"] += error is not None
            for entry, output in zip(batch, outputs):
                call = entry.call
                if error is not None:
                    if call.error is None:
                        call.error = error
                else:
                    call.outputs[entry.index], call.stacked[entry.index] = output, len(batch)
                call.remaining -= 1
            for call in callers:
                if not call.remaining or call.error is not None:
                    call.wake.notify()
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt and the like also end the thread that ran the batch

    def _withdraw(self, call: _Call) -> None:
        """Take a finished call's images out of the queues (only a failed call leaves any)."""
        for key, bucket in call.buckets.items():
            if call.queued[key]:
                call.queued[key] = 0
                bucket.entries = deque(entry for entry in bucket.entries if entry.call is not call)
                if bucket.led:
                    bucket.filled.notify()  # its leader re-checks: the queue may now be empty
                elif not bucket.entries and self._buckets.get(key) is bucket:
                    del self._buckets[key]


def _stack_key(plan: Plan, image: torch.Tensor) -> BucketKey:
    """The bucket of ``image`` under ``plan``: plans whose bound steps line up share it."""
    shape = tuple(int(v) for v in image.shape)
    try:
        stack: Hashable = per_sample.signature(plan, plan.bind(shape))
    except JobError:  # refused for this shape: alone with its equals, where the run raises it
        stack = ("refused", plan.key)
    return stack, shape, image.device
