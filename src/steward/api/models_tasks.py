"""The REST documents of tasks and jobs: a run request, a node's result, the answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, JsonValue

from steward.server.models import JsonObject
from steward.tasks.service import DEFAULT_CONCURRENCY, MAX_CONCURRENCY


class RunBody(BaseModel):
    nodes: str = Field(min_length=1, max_length=4000, description="PQL selecting the nodes")
    params: dict[str, Any] = Field(default_factory=dict)
    noop: bool = False
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=MAX_CONCURRENCY)
    wait: float = Field(default=0.0, ge=0, le=600,
                        description="Seconds to wait for the job to finish before answering")


class ResultBody(BaseModel):
    state: str
    exit_code: int | None = None
    result: Any = None
    output: str = ""


class TaskDocument(BaseModel):
    """A task as an environment's tip defines it (``source``: the script, shown alone)."""

    name: str
    environment: str
    commit: str
    description: str
    supports_noop: bool
    read_only: bool
    timeout: int
    script: str
    parameters: dict[str, JsonObject]
    source: str | None = Field(default=None, description="GET /api/v1/tasks/{name} only")


class TaskList(BaseModel):
    tasks: list[TaskDocument]


class JobResult(BaseModel):
    certname: str
    environment: str | None
    commit: str | None
    state: str
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    result: JsonValue
    output: str | None


class Job(BaseModel):
    """A task job: what ran where, its counts by state and each node's result."""

    id: str
    task: str
    environment: str
    noop: bool
    parameters: JsonValue
    query: str
    requested_by: str
    state: str
    concurrency: int
    timeout: int | float
    created_at: str | None
    finished_at: str | None
    counts: dict[str, int]
    results: list[JobResult]
