"""What operators call: nodes (list, add over SSH, approve, revoke, run now), tokens (mint,
list, revoke) and the audit log. Each route needs the permission its dependency names."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from steward.errors import NotFoundError
from steward.server import deps
from steward.server.deps import (
    AuditRead,
    NodeManage,
    QueryPermission,
    ServicesDep,
    Signals,
    TokenManage,
    authorise,
)
from steward.server.enrollment import check_certname
from steward.server.errors import EnrollmentError
from steward.server.models import (
    COMMON_ERRORS,
    AuditEntry,
    NodeApproved,
    NodeDetail,
    NodeListed,
    NodeRevoked,
    RunRequestBody,
    RunRequested,
    SshNode,
    Token,
    TokenCreate,
    TokenCreated,
)

router = APIRouter(tags=["operators"], responses=COMMON_ERRORS)

#: Token kinds that ``token:manage`` alone may revoke (the ones it may mint).
MANAGED_TOKEN_KINDS = frozenset({"join", "user", "agent"})


@router.get("/api/v1/nodes", response_model=list[NodeListed])
def list_nodes(_identity: QueryPermission, svc: ServicesDep,
               status: str | None = None) -> Response:
    """Every node with its enrollment status, including pending requests."""
    return deps.json_response(svc.enrollment.list_nodes(status=status))


@router.post("/api/v1/nodes", status_code=201, response_model=NodeDetail)
def add_ssh_node(request: Request, body: SshNode, identity: NodeManage,
                 svc: ServicesDep) -> Response:
    """Add an agentless node, reached over SSH by the server's scheduler."""
    check_certname(body.certname)
    result = svc.enrollment.register_ssh(
        body.certname,
        body.model_dump(exclude={"certname", "environment"}),
        identity, body.environment,
    )
    deps.allowed(request, identity, "node.add_ssh", body.certname)
    return deps.json_response(result, 201)


@router.post("/api/v1/nodes/{certname}/approve", response_model=NodeApproved)
def approve(request: Request, certname: str, identity: NodeManage,
            svc: ServicesDep) -> Response:
    result = svc.enrollment.approve(certname, identity)
    deps.allowed(request, identity, "node.approve", certname)
    return deps.json_response(result)


@router.post("/api/v1/nodes/{certname}/revoke", response_model=NodeRevoked)
def revoke(request: Request, certname: str, identity: NodeManage,
           svc: ServicesDep) -> Response:
    """Revoke the node's credentials; its next request is refused."""
    result = svc.enrollment.revoke(certname, identity)
    deps.allowed(request, identity, "node.revoke", certname)
    return deps.json_response(result)


@router.post("/api/v1/nodes/{certname}/run", status_code=202, response_model=RunRequested)
async def run_now(request: Request, certname: str, identity: NodeManage, svc: ServicesDep,
                  signals: Signals, body: RunRequestBody | None = None) -> Response:
    """Ask the node to run now; a listening agent starts within seconds."""
    node_status = await run_in_threadpool(svc.enrollment.status_of, certname)
    if node_status is None:
        raise NotFoundError(f"no node named {certname!r}")
    if node_status != "approved":
        raise EnrollmentError(f"node {certname!r} is {node_status}, not approved")
    noop = body.noop if body is not None else False
    request_id = await signals.request(certname, identity.label, noop=noop)
    await run_in_threadpool(deps.allowed, request, identity, "node.run", certname)
    return deps.json_response({"certname": certname, "request_id": request_id, "noop": noop},
                              202)


@router.post("/api/v1/tokens", status_code=201, response_model=TokenCreated)
def create_token(request: Request, body: TokenCreate, identity: TokenManage,
                 svc: ServicesDep) -> Response:
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
    created = svc.tokens.create(
        body.kind, body.name, created_by=identity.label,
        expires_in=timedelta(seconds=expires_in) if expires_in else None,
        max_uses=body.max_uses,
    )
    deps.allowed(request, identity, "token.create", f"{body.kind}:{body.name}",
                 reason=f"token id {created['id']}")
    return deps.json_response(created, 201, headers=deps.NO_STORE)


@router.get("/api/v1/tokens", response_model=list[Token])
def list_tokens(_identity: TokenManage, svc: ServicesDep,
                include_revoked: bool = False) -> Response:
    """Token metadata (never the tokens or their hashes)."""
    return deps.json_response(svc.tokens.list_tokens(include_revoked=include_revoked))


@router.delete("/api/v1/tokens/{token_id}", response_model=Token)
def revoke_token(request: Request, token_id: str, identity: TokenManage,
                 svc: ServicesDep) -> Response:
    """Revoke a token. Join, user and agent tokens need ``token:manage``; the others
    (admin, operator, node and enrollment tokens) ``admin`` (a node: revoke the node).
    """
    token = svc.tokens.get(token_id)
    if token["kind"] not in MANAGED_TOKEN_KINDS:
        authorise(request, identity, "admin", action="token.revoke", target=token_id,
                  context=f"{token['kind']} tokens are revoked by an admin only")
    result = svc.tokens.revoke(token_id)
    deps.allowed(request, identity, "token.revoke", token_id)
    return deps.json_response(result)


@router.get("/api/v1/audit", response_model=list[AuditEntry])
def audit_log(
    _identity: AuditRead,
    svc: ServicesDep,
    outcome: Literal["allowed", "denied"] | None = None,
    actor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> Response:
    """The audit log, newest first (denials and operator actions)."""
    return deps.json_response(svc.audit.entries(outcome=outcome, actor=actor, limit=limit))
