"""Tasks over REST (thin; the rules live in :class:`steward.tasks.service.TaskService`).

``GET /api/v1/tasks``, ``GET /api/v1/tasks/{name}``, ``POST /api/v1/tasks/{name}/run`` and
``GET /api/v1/jobs/{id}``. :class:`TaskExtension` also plugs the job store into the server's
node side: the run-wait long poll hands a node its part of a job (``extras["task_claim"]``)
and ``POST /api/v1/nodes/{certname}/jobs/{job}/result`` records the outcome
(``extras["task_complete"]``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from steward.api.models_tasks import Job, ResultBody, RunBody, TaskDocument, TaskList
from steward.mcpserver.task_tools import TASK_SERVICE
from steward.server.app import AppState
from steward.server.deps import Authenticated, extra, json_response, state
from steward.server.models import COMMON_ERRORS, errors
from steward.tasks import entities
from steward.tasks.definitions import TaskError, TaskNotFound
from steward.tasks.jobs import JobError, JobNotFound
from steward.tasks.service import TaskService

SERVICE = TASK_SERVICE


def task_service(request: Request) -> TaskService:
    """The application's :class:`TaskService`; 503 without the change pipeline."""
    service = extra(request, SERVICE)
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
        app.include_router(router)

    async def startup(self, state: AppState) -> None:
        # Jobs join PQL always, their tables only with the pipeline (as changes do).
        pipeline = state.extras.get("pipeline")
        entities.install(state.services.store, tables=pipeline is not None)
        if pipeline is None:
            return
        service = TaskService(pipeline)
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


Service = Annotated[TaskService, Depends(task_service)]
router = APIRouter(tags=["tasks"], responses={**COMMON_ERRORS, **errors(503)})


@router.get("/api/v1/tasks", response_model=TaskList)
def list_tasks(identity: Authenticated, service: Service,
               environment: str | None = None) -> Response:
    specs = service.tasks(identity, environment)
    return json_response({"tasks": [spec.to_json() for spec in specs]})


@router.get("/api/v1/tasks/{name}", response_model=TaskDocument)
def show_task(name: str, identity: Authenticated, service: Service,
              environment: str | None = None) -> Response:
    return json_response(service.show(identity, name, environment).to_json(with_script=True))


@router.post("/api/v1/tasks/{name}/run", status_code=202, response_model=Job)
async def run_task(request: Request, name: str, body: RunBody, identity: Authenticated,
                   service: Service) -> Response:
    job = await run_in_threadpool(service.run, identity, name, body.nodes, body.params,
                                  noop=body.noop, concurrency=body.concurrency)
    signals = state(request).signals
    if signals is not None:
        for result in job["results"]:
            if result["state"] == "pending":
                signals.wake(result["certname"])
    if body.wait:
        job = await run_in_threadpool(service.wait, identity, job["id"], body.wait)
    return json_response(dict(job), 202)


@router.get("/api/v1/jobs/{job_id}", response_model=Job)
def get_job(job_id: str, identity: Authenticated, service: Service) -> Response:
    return json_response(service.job(identity, job_id))
