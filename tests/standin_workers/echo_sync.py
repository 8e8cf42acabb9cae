"""Stand-in RunPod worker with a plain (blocking) handler (for harness tests only).

Input keys: ``sleep`` (seconds, ``time.sleep``: blocks the SDK's event loop), ``fail``:
``true``/``"raise"`` raises, ``"return"`` returns ``{"error": ...}``.
``ECHO_STREAM=1`` makes the handler a generator yielding ``chunks`` (default 3) partial results;
``ECHO_AGGREGATE=1`` sets ``return_aggregate_stream``. Concurrency: ``MAX_CONCURRENCY``.
"""

import os
import time

import runpod


def handler(job):
    job_input = job["input"]
    started = time.time()
    time.sleep(float(job_input.get("sleep", 0)))
    fail = job_input.get("fail")
    if fail is True or fail == "raise":
        raise ValueError(f"stand-in failure requested by job {job['id']}")
    if fail == "return":
        return {"error": "stand-in error returned as data"}
    return {"echo": job_input, "started": started, "finished": time.time(), "pid": os.getpid()}


def stream_handler(job):
    job_input = job["input"]
    for index in range(int(job_input.get("chunks", 3))):
        time.sleep(float(job_input.get("sleep", 0)))
        if job_input.get("fail") and index == 1:
            raise ValueError("stand-in failure in the middle of a stream")
        yield {"chunk": index}


def concurrency_modifier(current_concurrency):
    return int(os.environ.get("MAX_CONCURRENCY", "1"))


if __name__ == "__main__":
    streaming = os.environ.get("ECHO_STREAM") == "1"
    runpod.serverless.start({
        "handler": stream_handler if streaming else handler,
        "concurrency_modifier": concurrency_modifier,
        "return_aggregate_stream": os.environ.get("ECHO_AGGREGATE") == "1",
    })
