"""Stand-in RunPod worker with an async handler (for harness tests only).

Input keys: ``sleep`` (seconds awaited), ``progress`` (number of progress updates sent with
``runpod.serverless.progress_update`` before sleeping), ``fail``: ``true``/``"raise"`` raises,
``"return"`` returns ``{"error": ...}``, ``"return_with_output"`` returns an error plus other keys.
Concurrency: ``MAX_CONCURRENCY`` (default 1), read by the ``concurrency_modifier``.
``STANDIN_DRAIN_FIX=1`` installs the real worker's job scaler (:func:`gpu_worker.sdk_patches.install_drain_fix`):
jobs taken on a held job-take poll at SIGTERM are run, and jobs are taken as soon as a slot frees.
"""

import asyncio
import os
import time

import runpod


async def handler(job):
    job_input = job["input"]
    started = time.time()
    steps = int(job_input.get("progress", 0))
    for step in range(steps):
        runpod.serverless.progress_update(job, {"step": step + 1, "of": steps})
        await asyncio.sleep(0.05)
    await asyncio.sleep(float(job_input.get("sleep", 0)))
    fail = job_input.get("fail")
    if fail is True or fail == "raise":
        raise RuntimeError(f"stand-in failure requested by job {job['id']}")
    if fail == "return":
        return {"error": "stand-in error returned as data"}
    if fail == "return_with_output":
        return {"error": "stand-in error with details", "details": {"field": "sleep"}}
    return {"echo": job_input, "started": started, "finished": time.time(), "pid": os.getpid()}


def concurrency_modifier(current_concurrency):
    return int(os.environ.get("MAX_CONCURRENCY", "1"))


if __name__ == "__main__":
    if os.environ.get("STANDIN_DRAIN_FIX") == "1":
        from gpu_worker.sdk_patches import install_drain_fix

        install_drain_fix()
    runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})
