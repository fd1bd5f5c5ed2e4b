"""Who is calling: Steward tokens as MCP bearer tokens, and the caller of one request.

Over streamable HTTP the SDK's bearer middleware asks :class:`StewardTokenVerifier` for every
request, which looks the token up like every other Steward endpoint does (no cache: a revoked
token stops working at its next request). Only principals act through MCP: user, agent,
operator and admin tokens; node, join and enrollment credentials are refused. Over stdio
there is no HTTP request: the token comes from the environment and is looked up per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.concurrency import run_in_threadpool

from steward.access.principal import Principal
from steward.access.tokens import PRINCIPAL_KINDS, AuthenticationError
from steward.errors import StewardError
from steward.server.services import Services

#: Turns the request's access token (None over stdio or in process) into the caller.
IdentityResolver = Callable[[AccessToken | None], Principal]

_CLAIM_KIND: Final = "steward_kind"
_CLAIM_NAME: Final = "steward_name"


class NotAuthenticated(StewardError):
    """An MCP request reached a tool without a usable Steward identity."""


def authenticate_principal(services: Services, token: str) -> Principal:
    """The identity behind ``token`` if it may act through MCP; refusals are audited."""
    try:
        identity = services.tokens.authenticate(token)
    except AuthenticationError as exc:
        services.audit.record(actor=None, action="mcp.authenticate", target=None,
                              outcome="denied", reason=f"invalid credentials: {exc}")
        raise
    if identity.credential not in PRINCIPAL_KINDS:
        reason = (f"{identity.label}: {identity.credential} credentials cannot use the MCP server; "
                  "use a user, agent, operator or admin token")
        services.audit.record(actor=identity, action="mcp.authenticate", target=None,
                              outcome="denied", reason=reason)
        raise AuthenticationError(reason)
    return identity


class StewardTokenVerifier:
    """The SDK's ``TokenVerifier``: a Steward token in, an ``AccessToken`` (or None) out."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            identity = await run_in_threadpool(authenticate_principal, self._services(), token)
        except AuthenticationError:
            return None
        # client_id and subject bind the SDK's HTTP session to this very token.
        return AccessToken(token=token, client_id=identity.label, scopes=[],
                           subject=identity.token_id,
                           claims={_CLAIM_KIND: identity.credential, _CLAIM_NAME: identity.name})


def identity_from_access_token(token: AccessToken | None) -> Principal:
    """The resolver for HTTP: the identity the verifier put into the access token."""
    if token is None or not token.claims or token.subject is None:
        raise NotAuthenticated("this MCP request carries no Steward identity: send "
                               "'Authorization: Bearer TOKEN'")
    return Principal.authenticated(str(token.claims[_CLAIM_KIND]), token.subject,
                                   str(token.claims[_CLAIM_NAME]))


def token_resolver(services: Services, token: str) -> IdentityResolver:
    """The resolver for stdio: the environment's token, looked up on every call."""

    def resolve(_access: AccessToken | None) -> Principal:
        return authenticate_principal(services, token)

    return resolve


def request_access_token(request: Any) -> AccessToken | None:
    """The access token of the HTTP request behind an MCP message (None: not over HTTP)."""
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if isinstance(user, AuthenticatedUser):
        return user.access_token
    return get_access_token()
