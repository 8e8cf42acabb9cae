"""Stand-in RunPod worker with an async handler (for harness tests only).

Input keys: ``sleep`` (seconds awaited), ``progress`` (number of progress updates sent with
``runpod.serverless.progress_update`` before sleeping), ``fail``: ``true``/``"raise"`` raises,
``"return"`` returns ``{"error": ...}``, ``"return_with_output"`` returns an error plus other keys.
Concurrency: ``MAX_CONCURRENCY`` (default 1), read by the ``concurrency_modifier``.
``STANDIN_DRAIN_FIX=1`` installs :func:`install_drain_fix` (a prototype of what the real worker
needs on SIGTERM, see there).
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


def install_drain_fix():
    """Run the jobs that the last job-take poll returned after SIGTERM (runpod 1.12.0).

    On SIGTERM the SDK's ``run_jobs`` loop stops as soon as its local queue is empty and then
    only awaits the jobs already running, while ``get_jobs`` may still be inside a held
    job-take poll: a job that poll returns is queued, never run and never reported. This
    subclass makes ``get_jobs``, once its loop has ended, run whatever is left in the queue.
    ``worker.run_worker`` looks ``rp_scale.JobScaler`` up at call time, so replacing it before
    ``runpod.serverless.start`` is enough.
    """
    from runpod.serverless.modules import rp_scale

    class DrainingJobScaler(rp_scale.JobScaler):
        async def get_jobs(self, session):
            await super().get_jobs(session)
            leftovers = []
            while not self.jobs_queue.empty():
                leftovers.append(self.jobs_queue.get_nowait())
            if leftovers:
                await asyncio.gather(*(self.handle_job(session, job) for job in leftovers),
                                     return_exceptions=True)

    rp_scale.JobScaler = DrainingJobScaler


if __name__ == "__main__":
    if os.environ.get("STANDIN_DRAIN_FIX") == "1":
        install_drain_fix()
    runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})
