"""The whole HTTP application: the server's routes plus the change pipeline's.

``steward server`` serves :func:`build_app`. The pipeline plugs into the server through
:class:`PipelineExtension` (the server layer cannot import the layers above it): it adds the
pipeline's routes and error statuses and builds the :class:`Pipeline` on the server's
services (whose authoriser already answers user and agent tokens by their roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from steward.access.roles import RbacError
from steward.api import (
    routes_assistant,
    routes_changes,
    routes_deployments,
    routes_identities,
)
from steward.api.routes_tasks import TaskExtension
from steward.gitrepo import GitError
from steward.mcpserver.http import McpExtension
from steward.pipeline.approvals import ApprovalError, StaleApprovalError
from steward.pipeline.changes import AnalysisMissing, ChangeError
from steward.pipeline.deploy import DeployError, EnvironmentLocked
from steward.pipeline.gates import GateError
from steward.pipeline.service import Pipeline
from steward.server.app import AppState, create_app
from steward.server.config import ServerConfig
from steward.server.services import Services

log = logging.getLogger("steward.api")

class PipelineExtension:
    """Builds the :class:`Pipeline` at start-up and owns the running deployments."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def install(self, app: FastAPI) -> None:
        state: AppState = app.state.steward
        state.error_statuses.extend([
            (EnvironmentLocked, 409), (GateError, 409),
            (StaleApprovalError, 409), (AnalysisMissing, 409), (GitError, 409),
            (ApprovalError, 400), (DeployError, 400), (RbacError, 400),
        ])
        state.extras["pipeline_tasks"] = self.tasks
        app.exception_handler(StaleApprovalError)(routes_changes.stale_approval)
        for router in (routes_changes.router, routes_deployments.router,
                       routes_identities.router, routes_identities.audit_router):
            app.include_router(router)

    async def startup(self, state: AppState) -> None:
        pipeline = await run_in_threadpool(_build, state.services)
        state.extras["pipeline"] = pipeline
        if pipeline is not None:
            abandoned = await run_in_threadpool(pipeline.deployments.abandon_running)
            for deployment_id in abandoned:
                log.warning("deployment %s was interrupted by a server stop; marked failed",
                            deployment_id)

    async def shutdown(self, state: AppState) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        state.extras.pop("pipeline", None)


def _build(services: Services) -> Pipeline | None:
    from steward.pipeline import entities

    # A plain-directory repository (tests, experiments): no pipeline, the rest works; PQL
    # still knows changes and deployments, to say this server lacks them.
    versioned = services.catalogs.desired is not None
    entities.install(services.store, tables=versioned)
    if not versioned:
        return None
    from steward.pipeline.schema import migrate

    migrate(services.engine)
    return Pipeline(services)


def change_error_status(exc: ChangeError) -> int:
    return int(getattr(exc, "http_status", 409))


def build_app(config: ServerConfig, *, services: Services | None = None) -> FastAPI:
    app = create_app(config, services=services, extensions=[PipelineExtension(), TaskExtension(),
                                                               McpExtension(config)])
    app.include_router(routes_assistant.router)  # POST /api/v1/ask (the Infra Assistant)

    @app.exception_handler(ChangeError)
    async def _change_error(_request: Any, exc: ChangeError) -> Any:
        from fastapi.responses import JSONResponse

        from steward.server.errors import public_message

        return JSONResponse({"error": public_message(exc)},
                            status_code=change_error_status(exc))

    return app
