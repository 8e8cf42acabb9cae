"""The long-lived child of ``benchmarks.ab``: one commit's worker, driven one command at a time.

    python -P benchmarks/ab_child.py JOBS_DIR SIZES WARMUP   (cwd and PYTHONPATH: the commit's tree)

Run by ``benchmarks.ab`` with the commit's tree first on ``PYTHONPATH`` and as the working
directory, so ``gpu_worker`` and ``kernels`` are that commit's. It imports nothing else from the
tree it comes from (``-P``: its own folder is not put on ``sys.path`` either), only the standard
library and the commit's handler, as a user of the worker would: ``gpu_worker.handler.run_sync``
(or ``asyncio.run(handler(job))`` where a commit has no ``run_sync``).

``JOBS_DIR`` holds ``job-<size>.json`` for each size in ``SIZES`` (comma-separated), the job
inputs the parent wrote once for every child. At start the child runs ``WARMUP`` jobs of each size,
then writes one JSON line: ``{"ready": true, ...}`` with where ``gpu_worker`` came from and the
torch threads it ended up with. Then, for each line ``{"size": n, "repeats": r}`` read from stdin,
it runs that job ``r`` times and writes one JSON line: the wall milliseconds per image of each
repeat (``ms_per_image``), each repeat's ``timings_ms`` from the response, and a SHA-256 over the
results' decoded bytes (``sha256``, the first repeat's; ``"sha256_varies": true`` when the repeats'
differ). A failed job answers
``{"error": "..."}`` and the child goes on. EOF on stdin ends it.

The protocol has its own file descriptor: the original stdout is kept for the JSON lines and
file descriptor 1 is pointed at stderr, so whatever a library prints lands in stderr, not in the
answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import time
import warnings


def _channel():
    """The protocol's writer (the original stdout); fd 1 and ``sys.stdout`` go to stderr from now."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _runner():
    """The commit's synchronous entry point, imported as a user of the worker would."""
    # torchvision 0.2x marks its image I/O deprecated; expected (see benchmarks/peers.py).
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
    from gpu_worker import handler as module

    if hasattr(module, "run_sync"):
        return module.run_sync, "gpu_worker.handler.run_sync"
    return (lambda job: asyncio.run(module.handler(job))), "asyncio.run(gpu_worker.handler.handler(job))"


def _results(response: dict, size: int) -> list[dict]:
    """The response's per-image results, checked: every one succeeded and none came from a cache."""
    if not response.get("success"):
        raise RuntimeError(f"the job failed: {response.get('error')}")
    results = response["results"] if size > 1 else [response]
    if len(results) != size:
        raise RuntimeError(f"{len(results)} results for {size} images")
    failed = [r.get("error") for r in results if not r.get("success")]
    if failed:
        raise RuntimeError(f"{len(failed)} image(s) failed, the first: {failed[0]}")
    if any(r.get("metadata", {}).get("cached") for r in results):
        raise RuntimeError("a result came from the cache; every repeat must compute")
    return results


def _digest(results: list[dict]) -> str:
    """SHA-256 over each result's decoded bytes, in order (each prefixed by its length)."""
    h = hashlib.sha256()
    for r in results:
        data = base64.b64decode(r["processed_image"].split(",", 1)[-1])
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def main(argv: list[str]) -> None:
    jobs_dir, sizes, warmup = argv[0], [int(s) for s in argv[1].split(",")], int(argv[2])
    out = _channel()
    jobs = {n: json.loads(open(os.path.join(jobs_dir, f"job-{n}.json")).read()) for n in sizes}
    run, how = _runner()
    counter = iter(range(1 << 62))

    def once(size: int) -> tuple[float, dict, list[dict]]:
        job = {"id": f"ab-{next(counter)}", "input": jobs[size]}
        started = time.perf_counter()
        response = run(job)
        wall = time.perf_counter() - started
        return wall, response, _results(response, size)

    for n in sizes:
        for _ in range(warmup):
            once(n)
    import gpu_worker

    info = {"ready": True, "entry": how, "gpu_worker": os.path.dirname(os.path.abspath(gpu_worker.__file__)),
            "pid": os.getpid()}
    kernels = sys.modules.get("kernels")  # the kernels package the worker imported, where it has one
    if kernels is not None and getattr(kernels, "__file__", None):
        info["kernels"] = os.path.dirname(os.path.abspath(kernels.__file__))
    torch = sys.modules.get("torch")  # loaded by the worker; not imported here for a worker without it
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    info["cpu_image_threads"] = _image_threads()
    out.write(json.dumps(info) + "\n")

    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            size, repeats = int(command["size"]), int(command["repeats"])
            if size not in jobs:
                raise ValueError(f"size {size} was not prepared (sizes: {sizes})")
            ms, timings, digests = [], [], []
            for _ in range(repeats):
                wall, response, results = once(size)
                ms.append(wall * 1000 / size)
                timings.append(response.get("metadata", {}).get("timings_ms"))
                digests.append(_digest(results))
            answer = {"size": size, "ms_per_image": ms, "timings_ms": timings, "sha256": digests[0]}
            if len(set(digests)) > 1:
                answer["sha256_varies"] = True
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which decides
            answer = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        out.write(json.dumps(answer) + "\n")


def _image_threads() -> int | None:
    """Images the worker runs at once on the CPU: its runner's pool (since a9a3376), else the
    process-wide pool earlier commits had; None for a worker with neither."""
    try:
        from gpu_worker.runtime import get_runtime

        return get_runtime().runner.policy.pool.threads
    except (ImportError, AttributeError):
        pass
    try:
        from gpu_worker import cpu_pool

        return cpu_pool.threads()
    except (ImportError, AttributeError):
        return None


if __name__ == "__main__":
    main(sys.argv[1:])
