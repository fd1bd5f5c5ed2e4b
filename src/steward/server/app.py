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
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from steward import __version__
from steward.access.authorize import Authorizer, Forbidden
from steward.access.principal import Principal
from steward.access.tokens import AuthenticationError
from steward.clock import utcnow
from steward.errors import NotFoundError, StewardError
from steward.server import deps, pdb
from steward.server.config import ServerConfig
from steward.server.deps import (
    AuditRead,
    Authenticated,
    NodeManage,
    NodeOrQuery,
    NodeSelf,
    QueryPermission,
    TokenManage,
    authenticated,
    authorise,
    require,
)
from steward.server.enrollment import check_certname
from steward.server.errors import ConfigError, EnrollmentError, public_message
from steward.server.limits import RequestLimits, limits_of
from steward.server.runs import LiveCatalogRefused, RunSignals, live_catalog
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


# -- request bodies --------------------------------------------------------------------------


class EnrollRequest(BaseModel):
    certname: str = Field(description="The node's name; its credential is bound to it")
    facts: dict[str, Any] | None = Field(default=None, description="For the operator to check")


class FactsUpload(BaseModel):
    values: dict[str, Any] = Field(description="The node's facts (as 'steward facts' prints)")
    environment: str | None = None
    producer_timestamp: datetime | None = None


#: The longest a token may be minted for: ten years (a date past year 9999 is no date).
MAX_TOKEN_SECONDS = 10 * 366 * 24 * 3600


class TokenCreate(BaseModel):
    kind: Literal["join", "operator"]
    name: str = Field(min_length=1, max_length=255)
    expires_in: float | None = Field(
        default=None, gt=0, le=MAX_TOKEN_SECONDS,
        description="Seconds (at most ten years); join tokens default to 24 hours"
    )
    max_uses: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                 description="Join tokens only")


class SshNode(BaseModel):
    certname: str
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = Field(default=None, description="Private key on the server")
    sudo: bool = False
    python: str = "python3"
    known_hosts: str | None = Field(
        default=None, description="An OpenSSH known_hosts file (on the server) to trust"
    )
    trust_on_first_use: bool = Field(
        default=False, description="Record the host key on first contact instead of refusing"
    )
    environment: str | None = None


class RunRequestBody(BaseModel):
    noop: bool = False


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
        state.signals = RunSignals(state.services.engine)
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

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_identity: Authenticated) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/v1/whoami", tags=["identity"])
    def whoami(identity: Authenticated) -> dict[str, Any]:
        """The identity behind the token sent (a cheap way to check a credential)."""
        return {"kind": identity.credential, "name": identity.name, "certname": identity.certname,
                "token_id": identity.token_id}

    @app.get("/api/v1/status", tags=["identity"])
    def status(request: Request, _identity: QueryPermission) -> dict[str, Any]:
        svc = deps.services(request)
        return {"version": __version__, "repo": str(config.repo_path),
                "catalog_cache": {"hits": svc.catalogs.hits, "misses": svc.catalogs.misses},
                "nodes": len(svc.enrollment.list_nodes())}

    _enrollment_routes(app)
    _node_routes(app, config)
    _operator_routes(app)
    app.include_router(pdb.build_router(
        deps.services, require("query"),
        lambda request, identity, permission, entity: authorise(
            request, identity, permission, None, target=entity)))
    for extension in extensions:
        extension.install(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    statuses: list[tuple[type[StewardError], int]] = [
        (AuthenticationError, 401), (Forbidden, 403), (NotFoundError, 404),
        (EnrollmentError, 409), (ConfigError, 500),
    ]

    @app.exception_handler(StewardError)
    async def steward_error(request: Request, exc: StewardError) -> Response:
        extra = deps.state(request).error_statuses
        status = next((code for cls, code in [*extra, *statuses] if isinstance(exc, cls)), 400)
        body: dict[str, Any] = {"error": public_message(exc)}
        permission = getattr(exc, "permission", None)
        if status == 403 and isinstance(permission, str):
            # Any layer's refusal (Forbidden, raised by the server or the pipeline) names what is
            # missing as fields too, so clients need not parse the message.
            body["permission"] = permission
            body["environment"] = getattr(exc, "environment", None)
        return deps.json_response(body, status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        detail = public_message(exc.detail) if isinstance(exc.detail, str) else exc.detail
        return deps.json_response({"error": detail}, exc.status_code,
                                  headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        # Where and what, never the submitted values: a body may carry facts or tokens.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
            for error in exc.errors()
        )
        return deps.json_response({"error": f"invalid request: {problems}"}, 422)


def _enrollment_routes(app: FastAPI) -> None:
    @app.post("/api/v1/enroll", tags=["enrollment"], status_code=200)
    def enroll(
        request: Request,
        body: EnrollRequest,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(deps.bearer_scheme)],
        x_auth: Annotated[str | None, Depends(deps.x_auth_scheme)],
    ) -> Response:
        """Ask to enroll. With a join token: approved at once (200, the node credential).

        Without a token: a pending request (202, a poll token for GET /api/v1/enroll/{id}).
        """
        svc = deps.services(request)
        join: Principal | None = None
        token = deps.token_of(bearer, x_auth)
        if token is not None:
            join = authenticated(request, bearer, x_auth)
            if join.credential != "join":
                deps.deny(request, join, "enroll", body.certname,
                      "only a join token (or no token) can be used to enroll")
        try:
            result = svc.enrollment.request(body.certname, body.facts, join=join,
                                            remote=deps.remote(request))
        except EnrollmentError as exc:
            svc.audit.record(actor=join, action="enroll", target=body.certname[:255],
                             outcome="denied", reason=str(exc), remote=deps.remote(request))
            raise
        svc.audit.record(actor=join, action="enroll", target=body.certname,
                         outcome="allowed", reason=result["status"], remote=deps.remote(request))
        return deps.json_response(result, 200 if result["status"] == "approved" else 202,
                     headers={"Cache-Control": "no-store"})

    @app.get("/api/v1/enroll/{request_id}", tags=["enrollment"])
    def enroll_status(request: Request, request_id: str, identity: Authenticated) -> Response:
        """Poll a pending request with its poll token; collects the credential once approved."""
        if identity.credential != "enrollment":
            deps.deny(request, identity, "enroll.poll", request_id,
                  "only the request's own poll token can read an enrollment request")
        result = deps.services(request).enrollment.collect(request_id, identity)
        return deps.json_response(result, headers={"Cache-Control": "no-store"})


def _node_routes(app: FastAPI, config: ServerConfig) -> None:
    @app.put("/api/v1/nodes/{certname}/facts", tags=["nodes"])
    def put_facts(request: Request, certname: str, body: FactsUpload,
                  _identity: NodeSelf) -> dict[str, Any]:
        """Replace the node's facts (the input of its next catalog)."""
        svc = deps.services(request)
        node = svc.enrollment.get(certname)
        environment = (body.environment or node["environment"] or node["last_environment"]
                       or svc.catalogs.default_environment())
        stamp = body.producer_timestamp or utcnow()
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        svc.store.replace_facts(certname, environment, body.values, stamp)
        svc.enrollment.touch(certname, last_seen_at=utcnow())
        return {"certname": certname, "environment": environment}

    @app.get("/api/v1/nodes/{certname}/catalog", tags=["nodes"])
    def get_catalog(
        request: Request,
        certname: str,
        identity: NodeSelf,
        commit: Annotated[str | None, Query(
            pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$",
            description="Live prediction: the commit a run-now request asked this node to "
                        "run in noop (the run-wait answer names it)")] = None,
    ) -> Response:
        """Compile (or serve from cache) the node's catalog from its latest facts.

        The answer includes the catalog's sensitive values: only the node itself gets them.
        With ``commit`` (live prediction): that commit's catalog, only while a claimed
        run-now request of this node grants it; it is neither stored nor cached.
        """
        svc = deps.services(request)
        node = svc.enrollment.get(certname)
        facts = svc.store.latest_facts(certname)
        if facts is None:
            raise HTTPException(409, f"no facts for node {certname!r} yet: upload facts "
                                     "(PUT /api/v1/nodes/{certname}/facts) first")
        if commit is not None:
            signals = deps.state(request).signals
            assert signals is not None
            try:
                live = live_catalog(svc.catalogs, signals, certname, facts,
                                    node["environment"], commit)
            except LiveCatalogRefused as exc:
                deps.deny(request, identity, "catalog.live", certname, str(exc))
            except StewardError as exc:
                raise HTTPException(422, f"compiling the catalog of {certname!r} at commit "
                                         f"{commit[:12]} failed: {exc}") from None
            if live is not None:
                deps.allowed(request, identity, "catalog.live", certname,
                         reason=f"commit {commit} of {live.grant.change_id or 'a change'} "
                                f"(request {live.grant.request_id})")
                return deps.json_response(
                    {"catalog": live.compiled.result.catalog.to_json(),
                     "sensitive_values": live.sensitive_values,
                     "input_hash": live.compiled.input_hash, "cached": False,
                     "live": {"commit": commit, "change": live.grant.change_id,
                              "environment": live.grant.environment,
                              "withheld_sensitive": list(live.withheld)}},
                    headers={"Cache-Control": "no-store"},
                )
        try:
            compiled = svc.catalogs.compile(certname, facts, node["environment"])
        except StewardError as exc:
            raise HTTPException(422, f"compiling the catalog of {certname!r} failed: {exc}") \
                from None
        catalog = compiled.result.catalog
        document = catalog.to_json()
        if node["last_catalog_hash"] != catalog.hash:
            svc.store.replace_catalog(document, utcnow())
            svc.enrollment.touch(certname, last_catalog_hash=catalog.hash,
                                 last_environment=catalog.environment)
        return deps.json_response(
            {"catalog": document, "sensitive_values": compiled.result.sensitive_values,
             "input_hash": compiled.input_hash, "cached": compiled.cached},
            headers={"Cache-Control": "no-store"},
        )

    @app.post("/api/v1/nodes/{certname}/reports", tags=["nodes"], status_code=201)
    def post_report(request: Request, certname: str,
                    report: Annotated[dict[str, Any], Body()],
                    identity: NodeSelf) -> Response:
        """Store a run report (idempotent on its transaction_uuid)."""
        svc = deps.services(request)
        if report.get("node") != certname:
            deps.deny(request, identity, "report.submit", certname,
                  f"the report is for node {str(report.get('node'))[:255]!r}, not {certname!r}")
        stored = svc.store.store_report(report)
        svc.enrollment.touch(certname, last_seen_at=utcnow(), last_run_at=utcnow())
        return deps.json_response({"certname": certname, "stored": stored,
                      "transaction_uuid": report.get("transaction_uuid")}, 201)

    @app.get("/api/v1/nodes/{certname}/run-wait", tags=["nodes"])
    async def run_wait(
        request: Request,
        certname: str,
        _identity: NodeSelf,
        timeout: Annotated[float, Query(ge=0, le=300)] = 25.0,
    ) -> dict[str, Any]:
        """Long poll: answers as soon as an operator asks this node to run, or at timeout."""
        signals = deps.state(request).signals
        assert signals is not None
        claimed = await signals.wait(certname, min(timeout, config.long_poll_seconds),
                                     deps.state(request).extras.get("task_claim"))
        if claimed is None:
            return {"run": False}
        if isinstance(claimed, dict):
            # A task job's part for this node (docs/tasks.md): run it, post the result.
            return {"run": False, "task": claimed}
        answer: dict[str, Any] = {"run": True, "noop": claimed.noop,
                                  "requested_by": claimed.requested_by,
                                  "request_ids": list(claimed.ids)}
        if claimed.commit is not None:
            # Live prediction: fetch the catalog with ?commit= and run it in noop.
            answer.update(commit=claimed.commit, change=claimed.change_id)
        return answer

    @app.post("/api/v1/nodes/{certname}/jobs/{job}/result", tags=["nodes"])
    def post_job_result(request: Request, certname: str, job: str, _identity: NodeSelf,
                        body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """The node's outcome of its part of a task job (docs/tasks.md)."""
        complete = deps.state(request).extras.get("task_complete")
        if complete is None:
            raise NotFoundError("tasks need the change pipeline (a git repository of desired "
                                "state)")
        return dict(complete(certname, job, body))

    @app.get("/api/v1/nodes/{certname}", tags=["nodes"])
    def get_node(request: Request, certname: str, _identity: NodeOrQuery) -> dict[str, Any]:
        return deps.services(request).enrollment.get(certname)


#: Token kinds that ``token:manage`` alone may revoke (the ones it may mint).
_MANAGED_TOKEN_KINDS = frozenset({"join", "user", "agent"})


def _operator_routes(app: FastAPI) -> None:
    @app.get("/api/v1/nodes", tags=["operators"])
    def list_nodes(request: Request, _identity: QueryPermission,
                   status: str | None = None) -> list[dict[str, Any]]:
        """Every node with its enrollment status, including pending requests."""
        return deps.services(request).enrollment.list_nodes(status=status)

    @app.post("/api/v1/nodes", tags=["operators"], status_code=201)
    def add_ssh_node(request: Request, body: SshNode, identity: NodeManage) -> dict[str, Any]:
        """Add an agentless node, reached over SSH by the server's scheduler."""
        check_certname(body.certname)
        result = deps.services(request).enrollment.register_ssh(
            body.certname,
            body.model_dump(exclude={"certname", "environment"}),
            identity, body.environment,
        )
        deps.allowed(request, identity, "node.add_ssh", body.certname)
        return result

    @app.post("/api/v1/nodes/{certname}/approve", tags=["operators"])
    def approve(request: Request, certname: str, identity: NodeManage) -> dict[str, Any]:
        result = deps.services(request).enrollment.approve(certname, identity)
        deps.allowed(request, identity, "node.approve", certname)
        return result

    @app.post("/api/v1/nodes/{certname}/revoke", tags=["operators"])
    def revoke(request: Request, certname: str, identity: NodeManage) -> dict[str, Any]:
        """Revoke the node's credentials; its next request is refused."""
        result = deps.services(request).enrollment.revoke(certname, identity)
        deps.allowed(request, identity, "node.revoke", certname)
        return result

    @app.post("/api/v1/nodes/{certname}/run", tags=["operators"], status_code=202)
    async def run_now(request: Request, certname: str, identity: NodeManage,
                      body: RunRequestBody | None = None) -> dict[str, Any]:
        """Ask the node to run now; a listening agent starts within seconds."""
        svc = deps.services(request)
        node_status = await run_in_threadpool(svc.enrollment.status_of, certname)
        if node_status is None:
            raise NotFoundError(f"no node named {certname!r}")
        if node_status != "approved":
            raise EnrollmentError(f"node {certname!r} is {node_status}, not approved")
        signals = deps.state(request).signals
        assert signals is not None
        noop = body.noop if body is not None else False
        request_id = await signals.request(certname, identity.label, noop=noop)
        await run_in_threadpool(deps.allowed, request, identity, "node.run", certname)
        return {"certname": certname, "request_id": request_id, "noop": noop}

    @app.post("/api/v1/tokens", tags=["operators"], status_code=201)
    def create_token(request: Request, body: TokenCreate, identity: TokenManage) -> Response:
        """Mint a join or operator token; the answer is the only time it is shown.

        An operator token is a standing operator role everywhere: minting one needs ``admin``.
        """
        if body.kind == "operator":
            authorise(request, identity, "admin", action="token.create",
                      target=f"operator:{body.name}",
                      context="operator tokens are created by an admin only")
        if body.max_uses is not None and body.kind != "join":
            raise HTTPException(400, "max_uses applies to join tokens only")
        expires_in = body.expires_in
        if expires_in is None and body.kind == "join":
            expires_in = 24 * 3600.0
        created = deps.services(request).tokens.create(
            body.kind, body.name, created_by=identity.label,
            expires_in=timedelta(seconds=expires_in) if expires_in else None,
            max_uses=body.max_uses,
        )
        deps.allowed(request, identity, "token.create", f"{body.kind}:{body.name}",
                 reason=f"token id {created['id']}")
        return deps.json_response(created, 201, headers={"Cache-Control": "no-store"})

    @app.get("/api/v1/tokens", tags=["operators"])
    def list_tokens(request: Request, _identity: TokenManage,
                    include_revoked: bool = False) -> list[dict[str, Any]]:
        """Token metadata (never the tokens or their hashes)."""
        return deps.services(request).tokens.list_tokens(include_revoked=include_revoked)

    @app.delete("/api/v1/tokens/{token_id}", tags=["operators"])
    def revoke_token(request: Request, token_id: str, identity: TokenManage) -> dict[str, Any]:
        """Revoke a token. Join, user and agent tokens need ``token:manage``; the others
        (admin, operator, node and enrollment tokens) ``admin`` (a node: revoke the node).
        """
        svc = deps.services(request)
        token = svc.tokens.get(token_id)
        if token["kind"] not in _MANAGED_TOKEN_KINDS:
            authorise(request, identity, "admin", action="token.revoke", target=token_id,
                      context=f"{token['kind']} tokens are revoked by an admin only")
        result = svc.tokens.revoke(token_id)
        deps.allowed(request, identity, "token.revoke", token_id)
        return result

    @app.get("/api/v1/audit", tags=["operators"])
    def audit_log(
        request: Request,
        _identity: AuditRead,
        outcome: Literal["allowed", "denied"] | None = None,
        actor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (denials and operator actions)."""
        return deps.services(request).audit.entries(outcome=outcome, actor=actor, limit=limit)
