"""The REST documents of tasks and jobs, and of the Infra Assistant's answers."""

from __future__ import annotations

from pydantic import BaseModel, Field, JsonValue

from steward.server.models import JsonObject


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


class Attempt(BaseModel):
    query: str | None
    error: str | None
    stage: str | None


class AskAnswer(BaseModel):
    question: str
    query: str
    rows: list[JsonObject]
    row_count: int
    truncated: bool
    limit: int
    summary: str
    attempts: list[Attempt]


class AskFailure(BaseModel):
    """422 (no valid query came of the question) or 502 (the model failed)."""

    error: str
    attempts: list[Attempt] = Field(default_factory=list,
                                    description="Absent when the request itself is invalid")
