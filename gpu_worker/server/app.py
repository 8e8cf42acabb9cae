"""The FastAPI app of the local endpoint: RunPod's serverless API, the page, ``/ops``, ``/metrics``.

RunPod's routes live under ``/v2/{endpoint_id}/`` with any endpoint id, so a client written for
``https://api.runpod.ai/v2/<id>/...`` works here with only its base URL changed. Errors are
``{"error": "<what was wrong>"}`` with the status RunPod uses (400, 401, 404, 413, 429).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpu_worker.config import Settings
from gpu_worker.operations import REGISTRY
from gpu_worker.schema import ANALYSIS_TARGETS, OUTPUT_FORMATS, OutputSpec
from gpu_worker.server import models
from gpu_worker.server.config import RUN_BODY_LIMIT, RUNSYNC_BODY_LIMIT, ServerConfig
from gpu_worker.server.guards import BodyLimit, key_checker
from gpu_worker.server.jobqueue import RETRYABLE, Handler, Job, JobQueue, QueueFull
from gpu_worker.server.metrics import CONTENT_TYPE, Metrics
from gpu_worker.server.webhook import WebhookSender

STATIC_DIR = Path(__file__).resolve().parent / "static"
ERRORS = {code: {"model": models.ErrorBody} for code in (400, 401, 404, 413, 429)}
JobId = Annotated[str, PathParam(min_length=1, max_length=200)]
EndpointId = Annotated[str, PathParam(min_length=1, max_length=200)]


def create_app(config: ServerConfig, settings: Settings, handler: Handler, device: torch.device) -> FastAPI:
    """The app; its job queue starts and stops with the app's lifespan."""
    queue: JobQueue
    metrics = Metrics(device, queue_depth=lambda: queue.depth, in_progress=lambda: queue.running)
    webhooks = WebhookSender(config.webhook_timeout_s, config.webhook_retries, config.webhook_retry_delay_s,
                             on_outcome=lambda outcome: metrics.webhooks.labels(outcome).inc())

    def ended(job: Job, outcome: str) -> None:
        metrics.job_ended(outcome, job.output, _seconds(job.delay_ms), _seconds(job.execution_ms))
        if job.webhook:
            webhooks.send(job.webhook, job.view())

    queue = JobQueue(handler, config, settings.max_concurrency, on_ended=ended)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        queue.start()
        yield
        await queue.stop()
        await webhooks.close()

    app = FastAPI(title="gpu-image-worker local endpoint", version="1.0",
                  description="RunPod's serverless API for this worker, on your machine.",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # FastAPI's docs pages load a CDN
    app.state.queue, app.state.metrics = queue, metrics
    app.add_middleware(BodyLimit)
    _add_error_handlers(app)
    auth = Depends(key_checker(config.api_key))
    app.include_router(_runpod_routes(queue, metrics, config), dependencies=[auth])
    _add_page_routes(app, settings, device, config, metrics, auth)
    return app


def _runpod_routes(queue: JobQueue, metrics: Metrics, config: ServerConfig) -> APIRouter:
    """RunPod's serverless API for one endpoint."""
    api = APIRouter(prefix="/v2/{endpoint_id}", tags=["RunPod serverless API"], responses=ERRORS)

    def submit(body: models.RunRequest, sync: bool) -> Job:
        try:
            return queue.submit(body.input, body.webhook, body.policy, sync)
        except QueueFull as exc:
            metrics.rejected.labels("queue_full").inc()
            raise HTTPException(429, str(exc)) from None

    def find(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r} not found: it never existed here, or its result "
                                     f"was kept for its stated time and is gone")
        return job

    @api.post("/run", response_model=models.JobAccepted, summary="Queue a job")
    async def run(body: models.RunRequest, endpoint_id: EndpointId) -> dict:
        job = submit(body, sync=False)
        return {"id": job.id, "status": job.status}

    @api.post("/runsync", response_model=models.JobState, response_model_exclude_none=True,
              summary="Run a job and wait for it (up to ?wait= ms, then answer with its id and status)")
    async def runsync(body: models.RunRequest, endpoint_id: EndpointId,
                      wait: Optional[int] = Query(None, ge=1000, le=300_000)) -> dict:
        job = submit(body, sync=True)
        await queue.wait(job, (wait / 1000) if wait else config.runsync_wait_s)
        return job.view()

    async def status(endpoint_id: EndpointId, job_id: JobId) -> dict:
        return find(job_id).view()

    async def stream(endpoint_id: EndpointId, job_id: JobId) -> dict:
        job = find(job_id)
        chunks, job.unread = job.unread, []
        return {"id": job.id, "status": job.status, "stream": chunks}

    for method in ("GET", "POST"):  # RunPod answers both (the SDK's own local API only POST)
        api.add_api_route("/status/{job_id}", status, methods=[method], operation_id=f"status_{method.lower()}",
                          response_model=models.JobState, response_model_exclude_none=True,
                          summary="A job's status, and its output or error")
        api.add_api_route("/stream/{job_id}", stream, methods=[method], operation_id=f"stream_{method.lower()}",
                          response_model=models.StreamState,
                          summary="Output chunks not read yet (this handler yields one: its output)")

    @api.post("/cancel/{job_id}", response_model=models.JobAccepted, summary="Cancel a queued or running job")
    async def cancel(endpoint_id: EndpointId, job_id: JobId) -> dict:
        job = find(job_id)
        queue.cancel(job)
        return {"id": job.id, "status": job.status}

    @api.post("/retry/{job_id}", response_model=models.JobAccepted, summary="Queue a FAILED or TIMED_OUT job again")
    async def retry(endpoint_id: EndpointId, job_id: JobId) -> dict:
        job = find(job_id)
        if job.status not in RETRYABLE:
            raise HTTPException(400, f"job {job_id!r} is {job.status}: only {' or '.join(RETRYABLE)} jobs can be retried")
        try:
            queue.retry(job)
        except QueueFull as exc:
            raise HTTPException(429, str(exc)) from None
        return {"id": job.id, "status": job.status}

    @api.get("/health", response_model=models.Health, summary="Job counts and worker slots")
    async def health(endpoint_id: EndpointId) -> dict:
        return queue.health()

    @api.post("/purge-queue", response_model=models.Purged, summary="Cancel every queued job")
    async def purge_queue(endpoint_id: EndpointId) -> dict:
        return {"removed": queue.purge(), "status": "completed"}

    return api


def _add_page_routes(app: FastAPI, settings: Settings, device: torch.device, config: ServerConfig,
                     metrics: Metrics, auth: Any) -> None:
    """The page (``/``, ``/static``), what it builds forms from (``/ops``), and ``/metrics``."""
    catalogue = ops_catalogue(settings, device, config)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/ops", summary="The operations, their parameters' JSON schemas, output options and limits")
    async def ops() -> dict:
        return catalogue

    @app.get("/metrics", summary="Prometheus metrics", dependencies=[auth],
             responses={200: {"content": {CONTENT_TYPE: {}}}, 401: {"model": models.ErrorBody}})
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)


def ops_catalogue(settings: Settings, device: torch.device, config: ServerConfig) -> dict[str, Any]:
    """Every operation with its parameters' JSON schema (from its pydantic model), the output
    options' schema, the analysis targets and the limits a job must keep."""
    return {
        "operations": [
            {"type": name, "summary": op.summary, "description": " ".join((op.params_model.__doc__ or "").split()),
             "schema": op.params_model.model_json_schema()}
            for name, op in REGISTRY.items()
        ],
        "output": OutputSpec.model_json_schema(),
        "output_formats": list(OUTPUT_FORMATS),
        "analysis": list(ANALYSIS_TARGETS),
        "limits": {
            "max_operations": settings.max_operations,
            "max_batch_items": settings.max_batch_items,
            "max_source_bytes": settings.max_source_bytes,
            "max_decoded_pixels": settings.max_decoded_pixels,
            "run_body_bytes": RUN_BODY_LIMIT,
            "runsync_body_bytes": RUNSYNC_BODY_LIMIT,
        },
        "device": str(device),
        "max_concurrency": settings.max_concurrency,
        "api_key_required": bool(config.api_key),
    }


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": "..."}``; a body that does not validate is a 400, as on RunPod."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)


def _seconds(ms: Optional[int]) -> Optional[float]:
    return None if ms is None else ms / 1000
