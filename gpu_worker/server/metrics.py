"""Prometheus metrics of the local endpoint, served at ``GET /metrics``.

One :class:`Metrics` per app, each with its own registry (several apps may live in one process,
in tests). What is measured: jobs by outcome, images by outcome, each stage's latency (the
handler's ``metadata.timings_ms``), queue delay and execution time, the queue's depth and the
jobs in progress, images per job and images stacked per kernel call (``metadata.stacked``),
webhook deliveries, the device's memory, and the process (CPU, resident memory, open files).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily

#: The stages the handler times (``metadata.timings_ms``), in order.
STAGES = ("fetch", "decode", "ops", "encode", "upload", "total")
#: Latency buckets in seconds: 1 ms to 2 min.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Image-count buckets (images per job, images per stack).
COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The endpoint's metrics. ``queue_depth`` and ``in_progress`` are read at each scrape."""

    def __init__(self, device: torch.device, queue_depth: Callable[[], int], in_progress: Callable[[], int]) -> None:
        self.registry = registry = CollectorRegistry()
        self.jobs = Counter("gpu_worker_jobs", "Jobs that ended, by outcome (RunPod's final status).",
                            ["outcome"], registry=registry)
        self.images = Counter("gpu_worker_images", "Images of ended jobs: ok (an image came back) or failed.",
                              ["outcome"], registry=registry)
        self.stage_seconds = Histogram("gpu_worker_stage_seconds", "Time per job in each stage of the handler.",
                                       ["stage"], buckets=SECONDS, registry=registry)
        self.delay_seconds = Histogram("gpu_worker_queue_delay_seconds", "Time from submission to start.",
                                       buckets=SECONDS, registry=registry)
        self.execution_seconds = Histogram("gpu_worker_execution_seconds", "Time the handler ran per job.",
                                           buckets=SECONDS, registry=registry)
        self.job_images = Histogram("gpu_worker_job_images", "Images per job (1 for a single-image job).",
                                    buckets=COUNTS, registry=registry)
        self.stacked = Histogram("gpu_worker_stacked_images",
                                 "Per result image: images stacked into its kernel calls (metadata.stacked).",
                                 buckets=COUNTS, registry=registry)
        self.webhooks = Counter("gpu_worker_webhook_deliveries", "Webhook deliveries by outcome.",
                                ["outcome"], registry=registry)
        self.rejected = Counter("gpu_worker_rejected_requests",
                                "Requests refused before a job was made, by reason.", ["reason"], registry=registry)
        Gauge("gpu_worker_queue_depth", "Jobs waiting for a worker slot.",
              registry=registry).set_function(queue_depth)
        Gauge("gpu_worker_jobs_in_progress", "Jobs the handler is running.",
              registry=registry).set_function(in_progress)
        registry.register(_DeviceMemory(device))
        ProcessCollector(registry=registry)

    def job_ended(self, outcome: str, output: Any, delay_s: float | None, execution_s: float | None) -> None:
        """Count an ended job and observe its timings and image counts from the handler's ``output``."""
        self.jobs.labels(outcome).inc()
        if delay_s is not None:
            self.delay_seconds.observe(delay_s)
        if execution_s is not None:
            self.execution_seconds.observe(execution_s)
        if not isinstance(output, dict):
            return
        timings = (output.get("metadata") or {}).get("timings_ms") or {}
        for stage in STAGES:
            if isinstance(timings.get(stage), (int, float)):
                self.stage_seconds.labels(stage).observe(timings[stage] / 1000)
        results = list(_results(output))
        if results:
            self.job_images.observe(len(results))
        for result in results:
            self.images.labels("ok" if result.get("success") else "failed").inc()
            stacked = (result.get("metadata") or {}).get("stacked")
            if isinstance(stacked, int):
                self.stacked.observe(stacked)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _results(output: dict) -> Iterable[dict]:
    """The per-image results of a handler output: a batch job's ``results``, else the output itself
    when it is about one image (it has ``success``)."""
    if isinstance(output.get("results"), list):
        return [r for r in output["results"] if isinstance(r, dict)]
    return [output] if "success" in output else []


class _DeviceMemory:
    """``gpu_worker_device_memory_bytes``: on CUDA torch's allocated and reserved bytes and the
    device's free and total bytes; on the CPU nothing (process_resident_memory_bytes has it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def collect(self):
        family = GaugeMetricFamily("gpu_worker_device_memory_bytes", "Memory of the device the kernels run on.",
                                   labels=["device", "kind"])
        if self.device.type == "cuda":
            name = str(self.device)
            family.add_metric([name, "allocated"], torch.cuda.memory_allocated(self.device))
            family.add_metric([name, "reserved"], torch.cuda.memory_reserved(self.device))
            free, total = torch.cuda.mem_get_info(self.device)
            family.add_metric([name, "free"], free)
            family.add_metric([name, "total"], total)
        yield family
