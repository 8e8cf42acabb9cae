"""Request and response bodies of RunPod's serverless API, as pydantic models.

They validate what clients send and document the API in ``/openapi.json`` (which the
property-based tests read). The field names are RunPod's: camelCase where RunPod uses it.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

#: The longest policy.executionTimeout and policy.ttl accepted: 7 days, in ms.
MAX_POLICY_MS = 7 * 24 * 3600 * 1000

JobStatusName = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]


class Policy(BaseModel):
    """RunPod's per-job policy; times in milliseconds."""

    model_config = ConfigDict(extra="ignore")

    executionTimeout: Optional[int] = Field(default=None, ge=1, le=MAX_POLICY_MS,
                                            description="ms the handler may run; then the job is TIMED_OUT")
    ttl: Optional[int] = Field(default=None, ge=1, le=MAX_POLICY_MS,
                               description="ms from submission to the end of the job (queue and execution)")
    lowPriority: Optional[bool] = Field(default=None, description="accepted and ignored (one local queue)")


class RunRequest(BaseModel):
    """The body of ``run`` and ``runsync``. Fields RunPod has that mean nothing here (``s3Config``)
    are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    input: Any = Field(..., description="the job's input, handed to the handler as job['input']")
    webhook: Optional[str] = Field(default=None, max_length=2048,
                                   description="URL POSTed the job's status JSON when it ends")
    policy: Optional[Policy] = None


class JobAccepted(BaseModel):
    """The answer to ``run``, ``retry`` and ``cancel``."""

    id: str
    status: JobStatusName


class JobState(BaseModel):
    """A job as ``status``, ``runsync`` and webhooks show it."""

    id: str
    status: JobStatusName
    delayTime: Optional[int] = Field(default=None, description="ms from submission to the start")
    executionTime: Optional[int] = Field(default=None, description="ms the handler ran")
    workerId: Optional[str] = None
    output: Any = None
    error: Any = None


class StreamChunk(BaseModel):
    output: Any


class StreamState(BaseModel):
    """``stream``: the chunks not yet read (here: the final output, once) and the status."""

    id: str
    status: JobStatusName
    stream: list[StreamChunk]


class HealthJobs(BaseModel):
    completed: int
    failed: int
    inProgress: int
    inQueue: int
    retried: int


class HealthWorkers(BaseModel):
    idle: int
    initializing: int
    ready: int
    running: int
    throttled: int
    unhealthy: int


class Health(BaseModel):
    jobs: HealthJobs
    workers: HealthWorkers


class Purged(BaseModel):
    removed: int
    status: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": "<what was wrong>"}``."""

    error: str
