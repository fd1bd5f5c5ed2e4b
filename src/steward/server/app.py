"""The FastAPI application, built by :func:`create_app` from a :class:`ServerConfig`.

Every route requires a token (``Authorization: Bearer TOKEN``, or ``X-Authentication: TOKEN``
as PuppetDB/PE clients send it). The one exception is ``POST /api/v1/enroll`` without a
token, which can only create a *pending* request that grants nothing until an operator
approves it (as anyone may submit a CSR to a Puppet CA).

Operator endpoints are authorised by **permission** (``query``, ``node:manage``,
``token:manage``, ``audit:read``, ``admin``): each route names the one it needs and asks
:attr:`AppState.authorizer`, :func:`steward.access.rbac.authorize` (admin: everything;
operator: everything but what needs ``admin``, e.g. minting operator tokens; user and agent
tokens what their roles allow). Node credentials are not permission holders: a node reaches its own
catalog, facts, reports and run-now long poll, nothing else; join tokens ``POST
/api/v1/enroll`` only; enrollment poll tokens their own request only.

A refusal of an authenticated request is HTTP 403 naming the missing permission (and
environment) and a row in the append-only audit log; an unknown, expired or revoked token is
HTTP 401 and audited too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from steward import __version__
from steward.access.authorize import Authorizer, Forbidden
from steward.access.tokens import AuthenticationError
from steward.errors import NotFoundError, StewardError
from steward.server import (
    deps,
    pdb,
    routes_enrollment,
    routes_identity,
    routes_node,
    routes_operator,
)
from steward.server.config import ServerConfig
from steward.server.errors import ConfigError, EnrollmentError, public_message
from steward.server.limits import RequestLimits, limits_of
from steward.server.runs import RunSignals
from steward.server.scheduler import SshScheduler, TaskHooks
from steward.server.services import Services, build_services

log = logging.getLogger("steward.server")


class AppExtension(Protocol):
    """What a higher layer (the pipeline's REST routes) plugs into the server application.

    The server cannot import the layers above it; they hand it an extension instead, which
    adds routes, maps its errors to HTTP statuses, and starts and stops with the app.
    """

    def install(self, app: FastAPI) -> None: ...

    async def startup(self, state: AppState) -> None: ...

    async def shutdown(self, state: AppState) -> None: ...


class AppState:
    """Per-application state, reachable from requests as ``request.app.state.steward``."""

    def __init__(self, config: ServerConfig, services: Services | None) -> None:
        self.config = config
        self._services = services
        self.signals: RunSignals | None = None
        self.scheduler: SshScheduler | None = None
        #: HTTP statuses for error types of higher layers (first match wins).
        self.error_statuses: list[tuple[type[StewardError], int]] = []
        #: Objects the extensions keep for their routes (e.g. the pipeline), by name.
        self.extras: dict[str, Any] = {}

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the application has not started")
        return self._services

    @property
    def authorizer(self) -> Authorizer:
        """Who may do what: the services' one authoriser (role bindings included)."""
        return self.services.authorize


# -- the factory -----------------------------------------------------------------------------


def create_app(config: ServerConfig, *, services: Services | None = None,
               extensions: Sequence[AppExtension] = ()) -> FastAPI:
    """Build the application; ``services`` (already migrated) may be passed by tests."""
    state = AppState(config, services)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        owned = state._services is None
        if owned:
            state._services = await run_in_threadpool(build_services, config)
        state.signals = RunSignals(state.services.engine, clock=state.services.clock)
        # Read each tick: the task extension sets its hooks after the scheduler starts.
        state.scheduler = SshScheduler(state.services, state.signals,
                                       tasks=lambda: TaskHooks.from_extras(state.extras))
        task = asyncio.create_task(state.scheduler.run(), name="steward-ssh-scheduler")
        started: list[AppExtension] = []
        try:
            for extension in extensions:
                await extension.startup(state)
                started.append(extension)
            yield
        finally:
            for extension in reversed(started):
                await extension.shutdown(state)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if owned:
                state.services.close()
                state._services = None

    app = FastAPI(
        title="Steward control plane",
        version=__version__,
        summary="Enrollment, server-side catalogs, reports and PuppetDB-compatible queries.",
        docs_url=None, redoc_url=None, openapi_url=None,
        lifespan=lifespan,
    )
    app.state.steward = state
    app.add_middleware(RequestLimits, limits=limits_of(config), services=lambda: state.services)
    _install_error_handlers(app)

    for router in (routes_identity.router, routes_enrollment.router, routes_node.router,
                   routes_operator.router, pdb.router):
        app.include_router(router)
    for extension in extensions:
        extension.install(app)
    return app


#: Statuses of the server's own errors; ``AppState.error_statuses`` (higher layers') first.
ERROR_STATUSES: list[tuple[type[StewardError], int]] = [
    (AuthenticationError, 401), (Forbidden, 403), (NotFoundError, 404),
    (EnrollmentError, 409), (ConfigError, 500),
]


def _install_error_handlers(app: FastAPI) -> None:
    app.exception_handler(StewardError)(steward_error)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid_request)


async def steward_error(request: Request, exc: StewardError) -> Response:
    """``{"error"}`` at the error type's status (400 if none); a 403 names the permission."""
    extra = deps.state(request).error_statuses
    status = next((code for cls, code in [*extra, *ERROR_STATUSES] if isinstance(exc, cls)),
                  400)
    body: dict[str, Any] = {"error": public_message(exc)}
    permission = getattr(exc, "permission", None)
    if status == 403 and isinstance(permission, str):
        # Any layer's refusal (Forbidden, raised by the server or the pipeline) names what is
        # missing as fields too, so clients need not parse the message.
        body["permission"] = permission
        body["environment"] = getattr(exc, "environment", None)
    return deps.json_response(body, status)


async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
    detail = public_message(exc.detail) if isinstance(exc.detail, str) else exc.detail
    return deps.json_response({"error": detail}, exc.status_code,
                              headers=dict(exc.headers or {}))


async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
    # Where and what, never the submitted values: a body may carry facts or tokens.
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        for error in exc.errors()
    )
    return deps.json_response({"error": f"invalid request: {problems}"}, 422)
