"""The bulk client: a folder, glob, URL list or ``s3://`` prefix of images through the worker, into
a folder or ``s3://`` prefix (``python -m gpu_worker.client process SOURCE... --ops ops.json --out DEST``).

Modules, one job each:

* :mod:`~gpu_worker.client.sources` -- what to process: the sources listed as items, each with the
  relative path its result is written under;
* :mod:`~gpu_worker.client.s3` -- ``s3://`` locations and the boto3 client;
* :mod:`~gpu_worker.client.spec` -- ``ops.json``, checked before anything is read or sent;
* :mod:`~gpu_worker.client.packing` -- items into batch jobs under the ``run`` body limit;
* :mod:`~gpu_worker.client.backends` -- where a job runs: a RunPod(-API) endpoint or in-process;
* :mod:`~gpu_worker.client.submit` -- one job run with retries and backoff;
* :mod:`~gpu_worker.client.breaker` -- the run stopped when jobs in a row fail the same transient way;
* :mod:`~gpu_worker.client.manifest` -- what is done, kept in DEST, so a rerun does the rest;
* :mod:`~gpu_worker.client.sinks` -- results written (atomically) to a folder or a bucket;
* :mod:`~gpu_worker.client.progress` -- the progress bar and the summary;
* :mod:`~gpu_worker.client.run` -- all of the above, with bounded concurrency;
* :mod:`~gpu_worker.client.cli` -- the command line.
"""

from __future__ import annotations

__all__ = ["process", "Options", "Summary"]


def __getattr__(name: str):
    if name in ("process", "Options"):
        from gpu_worker.client import run

        return getattr(run, name)
    if name == "Summary":
        from gpu_worker.client.progress import Summary

        return Summary
    raise AttributeError(f"module 'gpu_worker.client' has no attribute {name!r}")
