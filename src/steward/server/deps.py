"""What every route depends on: the application's state, the identity behind the token, the
permission checks (audited both ways), and the one JSON encoding the API answers with.

Routes take these through FastAPI ``Depends`` (``Services``, ``Signals``, ``Authenticated``,
``require(permission)``...) so no route is defined inside a function. Answers are
:func:`json_response` documents: a route's ``response_model`` describes the document for the
OpenAPI schema, and tests/security/test_schemathesis.py checks every answer against it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from steward.access.authorize import Forbidden
from steward.access.principal import Principal
from steward.access.tokens import AuthenticationError
from steward.server.config import ServerConfig
from steward.server.limits import IDENTITY_KEY
from steward.server.runs import RunSignals
from steward.server.services import Services

if TYPE_CHECKING:
    from steward.server.app import AppState

bearer_scheme = HTTPBearer(auto_error=False, description="A Steward token")
x_auth_scheme = APIKeyHeader(name="X-Authentication", auto_error=False,
                             description="A Steward token, as PuppetDB/PE clients send it")

Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
XAuthentication = Annotated[str | None, Depends(x_auth_scheme)]


# -- the application's state ---------------------------------------------------------------


def state(request: Request) -> AppState:
    """The :class:`~steward.server.app.AppState` of the application serving ``request``."""
    found: AppState = request.app.state.steward
    return found


def services(request: Request) -> Services:
    return state(request).services


def config(request: Request) -> ServerConfig:
    return state(request).config


def signals(request: Request) -> RunSignals:
    found = state(request).signals
    assert found is not None, "the application has not started"
    return found


def extra(request: Request, name: str) -> Any:
    """An object a higher layer keeps for its routes (``AppState.extras``), or None."""
    return state(request).extras.get(name)


ServicesDep = Annotated[Services, Depends(services)]
ConfigDep = Annotated[ServerConfig, Depends(config)]
Signals = Annotated[RunSignals, Depends(signals)]


# -- answers ---------------------------------------------------------------------------------


def json_response(document: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """The API's JSON: compact, UTF-8 as is, anything else as its ``str``."""
    return Response(json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str),
                    status_code=status, media_type="application/json", headers=headers)


#: The headers of an answer carrying a credential.
NO_STORE = {"Cache-Control": "no-store"}


# -- authentication and authorisation -------------------------------------------------------


def remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def action_of(request: Request) -> str:
    return f"{request.method} {request.url.path}"


def deny(request: Request, identity: Principal | None, action: str, target: str | None,
         reason: str, status: int = 403) -> NoReturn:
    """Audit a refusal, then raise it (HTTP ``status``)."""
    services(request).audit.record(actor=identity, action=action, target=target,
                                   outcome="denied", reason=reason, remote=remote(request))
    raise HTTPException(status_code=status, detail=reason)


def allowed(request: Request, identity: Principal, action: str, target: str | None,
            reason: str | None = None) -> None:
    """Audit an operator action that was allowed."""
    services(request).audit.record(actor=identity, action=action, target=target,
                                   outcome="allowed", reason=reason, remote=remote(request))


def token_of(bearer: HTTPAuthorizationCredentials | None, x_auth: str | None) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return x_auth or None


def authenticated(request: Request, bearer: Bearer, x_auth: XAuthentication) -> Principal:
    known: Principal | None = getattr(request.state, IDENTITY_KEY, None)
    if known is not None:  # authenticated by RequestLimits before the body was read
        return known
    token = token_of(bearer, x_auth)
    if token is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required: send 'Authorization: Bearer TOKEN' "
                   "(or 'X-Authentication: TOKEN')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return services(request).tokens.authenticate(token)
    except AuthenticationError as exc:
        deny(request, None, action_of(request), None, f"invalid credentials ({exc})", status=401)


Authenticated = Annotated[Principal, Depends(authenticated)]


def authorise(request: Request, identity: Principal, permission: str,
              environment: str | None = None, *, action: str | None = None,
              target: str | None = None, context: str | None = None) -> None:
    """Ask the application's authoriser; a refusal is audited, then raised (HTTP 403).

    ``context`` says why the permission is needed when the route alone does not (e.g.
    "operator tokens are created by an admin only"); it prefixes the message. (Not "...
    tokens: ...": prose that reads as a secret-keyed pair would be redacted.)
    """
    try:
        state(request).authorizer(identity, permission, environment)
    except Forbidden as exc:
        reason = f"{context}: {exc}" if context else str(exc)
        services(request).audit.record(
            actor=identity, action=action or action_of(request), target=target,
            outcome="denied", reason=reason, remote=remote(request),
            parameters={"environment": environment, "permission": permission})
        raise Forbidden(reason, permission=permission, environment=environment) from None


#: Path parameters that name what a request acts on, for the audit trail.
TARGET_PARAMS = ("certname", "token_id", "entity")


def require(permission: str) -> Callable[..., Principal]:
    """A dependency admitting the identities that hold ``permission`` (globally)."""

    def dependency(request: Request, identity: Authenticated) -> Principal:
        params = request.path_params
        target = next((str(params[k]) for k in TARGET_PARAMS if k in params), None)
        authorise(request, identity, permission, None, target=target)
        return identity

    dependency.__name__ = f"require_{permission.replace(':', '_')}"
    dependency.__doc__ = f"Needs permission {permission}."
    return dependency


def node_self(request: Request, certname: str, identity: Authenticated) -> Principal:
    """Only the node itself: a node credential is bound to exactly one certname."""
    if identity.credential == "node" and identity.certname == certname:
        return identity
    if identity.credential == "node":
        reason = (f"node {identity.certname!r} may not act for node {certname!r}: a node "
                  "credential reaches only its own catalog, facts and reports")
    else:
        reason = f"only node {certname!r} itself may use this endpoint"
    deny(request, identity, action_of(request), certname, reason)


def node_or_query(request: Request, certname: str, identity: Authenticated) -> Principal:
    """The node itself, or whoever holds ``query`` (what the store says of it is no secret)."""
    if identity.credential == "node" and identity.certname == certname:
        return identity
    authorise(request, identity, "query", None, target=certname,
              context=f"{identity.label} may not read node {certname!r}")
    return identity


QueryPermission = Annotated[Principal, Depends(require("query"))]
NodeManage = Annotated[Principal, Depends(require("node:manage"))]
TokenManage = Annotated[Principal, Depends(require("token:manage"))]
AuditRead = Annotated[Principal, Depends(require("audit:read"))]
NodeSelf = Annotated[Principal, Depends(node_self)]
NodeOrQuery = Annotated[Principal, Depends(node_or_query)]
