"""Request body limits, enforced before a body is read, and authentication before it is parsed.

FastAPI reads and parses a request's body before it runs the route's dependencies, so without
this an unauthenticated caller could make the server buffer and parse any amount of JSON (50 MiB
of "facts" at the enrollment route) before anything asked who it is. This ASGI middleware sits
in front of every route: a body-bearing request to the API is authenticated from its headers
first (the identity is handed on to the route, so the token is looked up once), then its body is
admitted only up to its route's limit (``Content-Length`` checked up front, a chunked body
counted as it arrives); either failure is answered at once (401 or 413, naming the limit) and
nothing of the body is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steward.access.principal import Principal
from steward.access.tokens import AuthenticationError

if TYPE_CHECKING:
    from steward.server.services import Services

KIB = 1024
MIB = 1024 * KIB
#: Where a route's identity, established here, is handed on (``request.state.identity``).
IDENTITY_KEY = "identity"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bytes a request body may have, by kind of route (docs/server.md#request-limits)."""

    #: Routes a caller may use without a token (enrolling without a join token).
    unauthenticated: int = 256 * KIB
    #: ``PUT /api/v1/nodes/NAME/facts`` and enrolling with a join token (which carries facts).
    facts: int = 4 * MIB
    #: ``POST /api/v1/nodes/NAME/reports`` and task job results.
    reports: int = 16 * MIB
    #: Every other route (proposals, queries, MCP messages, ...).
    default: int = 4 * MIB


#: (pattern, the BodyLimits field, the configuration setting that sets it), first match wins.
_ROUTES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"/api/v1/nodes/[^/]+/facts"), "facts", "max_facts_bytes"),
    (re.compile(r"/api/v1/nodes/[^/]+/reports"), "reports", "max_report_bytes"),
    (re.compile(r"/api/v1/nodes/[^/]+/jobs/[^/]+/result"), "reports", "max_report_bytes"),
    (re.compile(r"/api/v1/enroll"), "facts", "max_facts_bytes"),
)
#: Body-bearing routes that take no token (the enrollment route takes one or none).
_OPEN = frozenset({"/api/v1/enroll"})
#: Prefixes whose routes authenticate with Steward tokens through :func:`authenticated`; the
#: MCP endpoint (``/mcp``) authenticates in its SDK's middleware, before its body is read.
_AUTHENTICATED_PREFIXES = ("/api/", "/pdb/")


class RequestTooLarge(Exception):
    """Raised inside :class:`RequestLimits` when a streamed body passes its limit."""


class RequestLimits:
    """The ASGI middleware; ``services`` is a callable because they exist only after start-up."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits,
                 services: Callable[[], Services]) -> None:
        self.app = app
        self.limits = limits
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _answer(send, 400, "the request's path or query string contains a NUL "
                          "character (U+0000), which Steward does not accept in any value")
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = _headers(scope)
        token = _token(headers)
        limit, setting = self._limit(path, token)
        steward_route = path.startswith(_AUTHENTICATED_PREFIXES)
        if steward_route and not (path in _OPEN and token is None):
            identity = await self._authenticate(scope, token, send)
            if identity is None:
                return
            scope.setdefault("state", {})[IDENTITY_KEY] = identity
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "invalid Content-Length header")
                return
            if int(declared) > limit:
                await _too_large(send, method, path, limit, setting)
                return
        if not steward_route and not await self._valid(token):
            # /mcp authenticates in the SDK's middleware, from the headers: a caller without a
            # valid token is passed on unread (the SDK answers 401 with its resource-metadata
            # challenge), the guard only a backstop should anything read it.
            await self._guarded(scope, receive, send, limit, setting)
            return
        try:
            body = await _read_body(receive, limit)
        except RequestTooLarge:
            await _too_large(send, method, path, limit, setting)
            return
        if has_nul(body):
            await _answer(send, 400, f"{method} {path}: the request body contains a NUL "
                          "character (U+0000), which Steward does not accept in any value")
            return
        await self.app(scope, _replay(body, receive), send)

    def _limit(self, path: str, token: str | None) -> tuple[int, str]:
        if path in _OPEN and token is None:
            return self.limits.unauthenticated, "max_unauthenticated_bytes"
        for pattern, field, setting in _ROUTES:
            if pattern.fullmatch(path):
                return int(getattr(self.limits, field)), setting
        return self.limits.default, "max_request_bytes"

    async def _valid(self, token: str | None) -> bool:
        """Whether ``token`` is a live Steward token (nothing audited: the route audits)."""
        if token is None:
            return False
        try:
            await run_in_threadpool(self.services().tokens.authenticate, token)
        except AuthenticationError:
            return False
        return True

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int,
                       setting: str) -> None:
        """Run the app on the unbuffered body, answering 413 once it reads past ``limit``."""
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > limit:
                raise RequestTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except RequestTooLarge:
            if started:
                raise
            await _too_large(send, scope["method"], scope["path"], limit, setting)

    async def _authenticate(self, scope: Scope, token: str | None,
                            send: Send) -> Principal | None:
        """The caller's identity, or None once a 401 has been sent (and a bad token audited)."""
        if token is None:
            await _answer(send, 401, "authentication required: send 'Authorization: Bearer "
                          "TOKEN' (or 'X-Authentication: TOKEN')",
                          [(b"www-authenticate", b"Bearer")])
            return None
        services = self.services()
        try:
            identity: Principal = await run_in_threadpool(services.tokens.authenticate, token)
        except AuthenticationError as exc:
            reason = f"invalid credentials ({exc})"
            client = scope.get("client")
            await run_in_threadpool(
                lambda: services.audit.record(
                    actor=None, action=f"{scope['method']} {scope['path']}", target=None,
                    outcome="denied", reason=reason, remote=client[0] if client else None))
            await _answer(send, 401, reason, [(b"www-authenticate", b"Bearer")])
            return None
        return identity


def has_nul(body: bytes) -> bool:
    """A NUL byte, or JSON's ``\\u0000`` escape (not an escaped backslash before "u0000").

    PostgreSQL's text and JSONB hold no NUL; refusing it at the door keeps both backends
    alike and no value half-stored.
    """
    if b"\x00" in body:
        return True
    start = body.find(b"\\u0000")
    while start != -1:
        before = start
        while before > 0 and body[before - 1] == 0x5C:  # backslashes escaping this one
            before -= 1
        if (start - before) % 2 == 0:
            return True
        start = body.find(b"\\u0000", start + 1)
    return False


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())}


def _token(headers: dict[str, str]) -> str | None:
    """The token as :func:`steward.server.app.authenticated` reads it (Bearer, then X-Auth)."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-authentication") or None


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, never holding more than ``limit`` bytes of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then the connection's own messages
    (a long-running route still learns of a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send: Send, method: str, path: str, limit: int, setting: str) -> None:
    await _answer(send, 413, f"request body too large: {method} {path} accepts at most "
                  f"{limit} bytes (server setting {setting}; docs/server.md#request-limits)")


async def _answer(send: Send, status: int, error: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps({"error": error}, separators=(",", ":")).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def limits_of(config: Any) -> BodyLimits:
    """The limits a :class:`~steward.server.config.ServerConfig` sets."""
    return BodyLimits(unauthenticated=config.max_unauthenticated_bytes,
                      facts=config.max_facts_bytes, reports=config.max_report_bytes,
                      default=config.max_request_bytes)
