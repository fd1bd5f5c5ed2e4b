"""Deployments over REST: deploy an approved change, follow the rollout, roll back, promote
to the next environment. Thin: every rule lives in :class:`Pipeline`."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from steward.api.deps import PipelineDep
from steward.api.models_changes import (
    CHANGE_ERRORS,
    ChangeDocument,
    DeployBody,
    DeploymentDetail,
    DeploymentDocument,
    PromoteBody,
)
from steward.pipeline.deploy import ServerNodeRunner, Strategy
from steward.server.deps import Authenticated, Signals, extra, json_response

router = APIRouter(tags=["changes"], responses=CHANGE_ERRORS)


@router.post("/api/v1/changes/{change_id}/deploy", status_code=202,
             response_model=DeploymentDocument)
async def deploy(request: Request, change_id: str, body: DeployBody, identity: Authenticated,
                 p: PipelineDep, signals: Signals) -> Response:
    """Merge and start the rollout of the head and digest the change was approved at
    (409 if they are not the ones sent); poll GET /api/v1/deployments/ID for progress."""
    strategy = Strategy.from_json(body.strategy)
    deployment = await run_in_threadpool(functools.partial(
        p.start_deploy, identity, change_id, strategy, head=body.head, digest=body.digest))
    actor = p.actor(identity)
    runner = ServerNodeRunner(signals, p.services.engine)
    tasks: set[asyncio.Task[Any]] = extra(request, "pipeline_tasks")
    task = asyncio.create_task(p.run_deploy(deployment.id, runner, actor),
                               name=f"deploy-{deployment.id}")
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return json_response(deployment.to_json(), 202)


@router.get("/api/v1/deployments/{deployment_id}", response_model=DeploymentDetail)
def get_deployment(deployment_id: str, identity: Authenticated, p: PipelineDep) -> Response:
    deployment = p.deployments.get(deployment_id)
    p.authorise(identity, "desired_state:read", deployment.environment,
                action="deployment.read", target=f"deployment:{deployment_id}")
    document = deployment.to_json()
    document["change_state"] = p.changes.get(deployment.change_id).state
    return json_response(document)


@router.post("/api/v1/changes/{change_id}/rollback", status_code=201,
             response_model=ChangeDocument)
def rollback(change_id: str, identity: Authenticated, p: PipelineDep) -> Response:
    return json_response(p.rollback(identity, change_id).to_json(), 201)


@router.post("/api/v1/changes/{change_id}/promote", status_code=201,
             response_model=ChangeDocument)
def promote(change_id: str, body: PromoteBody, identity: Authenticated,
            p: PipelineDep) -> Response:
    view = p.promote(identity, change_id, body.environment)
    return json_response(view.to_json(), 201)
