"""Tasks over REST (thin; the rules live in :class:`steward.tasks.service.TaskService`).

``GET /api/v1/tasks``, ``GET /api/v1/tasks/{name}``, ``POST /api/v1/tasks/{name}/run`` and
``GET /api/v1/jobs/{id}``. :class:`TaskExtension` also plugs the job store into the server's
node side: the run-wait long poll hands a node its part of a job (``extras["task_claim"]``)
and ``POST /api/v1/nodes/{certname}/jobs/{job}/result`` records the outcome
(``extras["task_complete"]``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from steward.mcpserver.task_tools import TASK_SERVICE
from steward.server.app import AppState
from steward.server.deps import Authenticated, state
from steward.tasks import entities
from steward.tasks.definitions import TaskError, TaskNotFound
from steward.tasks.jobs import JobError, JobNotFound
from steward.tasks.service import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, TaskService

SERVICE = TASK_SERVICE


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


def _service(request: Request) -> TaskService:
    service = state(request).extras.get(SERVICE)
    if service is None:
        raise HTTPException(503, "tasks need the change pipeline: the server's repository is "
                                 "a plain directory, not desired.git")
    assert isinstance(service, TaskService)
    return service


class TaskExtension:
    """Builds the :class:`TaskService` once the pipeline exists (install after it)."""

    def install(self, app: FastAPI) -> None:
        state: AppState = app.state.steward
        state.error_statuses[:0] = [(TaskNotFound, 404), (JobNotFound, 404),
                                    (TaskError, 400), (JobError, 409)]
        _routes(app)

    async def startup(self, state: AppState) -> None:
        # Jobs join PQL always, their tables only with the pipeline (as changes do).
        entities.register(state.services.store.entities)
        pipeline = state.extras.get("pipeline")
        if pipeline is None:
            return
        service = TaskService(pipeline)
        state.services.store.add_query_tables(entities.QUERY_TABLES)
        state.extras[SERVICE] = service

        def complete(certname: str, job: str, body: dict[str, Any]) -> dict[str, Any]:
            parsed = ResultBody.model_validate(body)
            return service.jobs.complete(certname, job, exit_code=parsed.exit_code,
                                         result=parsed.result, output=parsed.output,
                                         state=parsed.state)

        state.extras["task_claim"] = service.jobs.claim
        state.extras["task_complete"] = complete

    async def shutdown(self, state: AppState) -> None:
        for key in (SERVICE, "task_claim", "task_complete"):
            state.extras.pop(key, None)


def _routes(app: FastAPI) -> None:
    @app.get("/api/v1/tasks", tags=["tasks"])
    def list_tasks(request: Request, identity: Authenticated,
                   environment: str | None = None) -> dict[str, Any]:
        specs = _service(request).tasks(identity, environment)
        return {"tasks": [spec.to_json() for spec in specs]}

    @app.get("/api/v1/tasks/{name}", tags=["tasks"])
    def show_task(request: Request, name: str, identity: Authenticated,
                  environment: str | None = None) -> dict[str, Any]:
        return _service(request).show(identity, name, environment).to_json(with_script=True)

    @app.post("/api/v1/tasks/{name}/run", tags=["tasks"], status_code=202)
    async def run_task(request: Request, name: str, body: RunBody,
                       identity: Authenticated) -> dict[str, Any]:
        service = _service(request)
        job = await run_in_threadpool(service.run, identity, name, body.nodes, body.params,
                                      noop=body.noop, concurrency=body.concurrency)
        signals = state(request).signals
        if signals is not None:
            for result in job["results"]:
                if result["state"] == "pending":
                    signals.wake(result["certname"])
        if body.wait:
            job = await run_in_threadpool(service.wait, identity, job["id"], body.wait)
        return dict(job)

    @app.get("/api/v1/jobs/{job_id}", tags=["tasks"])
    def get_job(request: Request, job_id: str, identity: Authenticated) -> dict[str, Any]:
        return _service(request).job(identity, job_id)
