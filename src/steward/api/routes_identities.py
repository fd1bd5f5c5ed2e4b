"""Human and agent identities over REST: create one (its token shown once), list the role
bindings, grant and revoke roles; and the audit log's integrity check."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import Response

from steward.access.principal import Principal
from steward.api.deps import PipelineDep
from steward.api.models_identities import (
    AuditVerification,
    BindingDocument,
    GrantBody,
    IdentityCreate,
    IdentityCreated,
    RoleRevoked,
)
from steward.pipeline.service import Pipeline
from steward.server.deps import NO_STORE, Authenticated, json_response
from steward.server.models import COMMON_ERRORS, errors

router = APIRouter(tags=["identities"], responses={**COMMON_ERRORS, **errors(503)})
audit_router = APIRouter(tags=["audit"], responses={**COMMON_ERRORS, **errors(503)})


def _role(text: str) -> tuple[str, str]:
    role, _, env = text.partition("@")
    return role, env or "*"


def _manager(p: Pipeline, identity: Principal, action: str, target: str | None) -> None:
    p.authorise(identity, "token:manage", None, action=action, target=target)


@router.post("/api/v1/identities", status_code=201, response_model=IdentityCreated)
def create_identity(body: IdentityCreate, identity: Authenticated, p: PipelineDep) -> Response:
    """Create a human or agent identity with roles; its token is shown only here."""
    target = f"{body.kind}:{body.name}"
    _manager(p, identity, "identity.create", target)
    for text in body.roles:
        role, env = _role(text)
        p.rbac.role(role)
        if identity.credential != "admin":
            p.rbac.check_no_escalation(p.actor(identity), role, env)
    kind = "user" if body.kind == "human" else "agent"
    created = p.services.tokens.create(
        kind, body.name, created_by=identity.label,
        expires_in=timedelta(seconds=body.expires_in) if body.expires_in else None)
    for text in body.roles:
        role, env = _role(text)
        p.rbac.grant(target, role, env, granted_by=identity.label)
    p.services.audit.record(actor=identity, action="identity.create", target=target,
                            outcome="succeeded",
                            parameters={"roles": body.roles, "token_id": created["id"]})
    return json_response({**created, "roles": [b.to_json() for b in p.rbac.bindings(target)]},
                         201, headers=NO_STORE)


@router.get("/api/v1/identities", response_model=list[BindingDocument])
def list_identities(identity: Authenticated, p: PipelineDep) -> Response:
    _manager(p, identity, "identity.list", None)
    return json_response([b.to_json() for b in p.rbac.bindings()])


@router.post("/api/v1/identities/{principal}/roles", status_code=201,
             response_model=BindingDocument)
def grant(principal: str, body: GrantBody, identity: Authenticated, p: PipelineDep) -> Response:
    _manager(p, identity, "role.grant", principal)
    if identity.credential != "admin":
        p.rbac.check_no_escalation(p.actor(identity), body.role, body.environment)
    binding = p.rbac.grant(principal, body.role, body.environment, granted_by=identity.label)
    p.services.audit.record(actor=identity, action="role.grant", target=principal,
                            outcome="succeeded",
                            parameters={"role": body.role, "environment": body.environment})
    return json_response(binding.to_json(), 201)


@router.delete("/api/v1/identities/{principal}/roles/{role}", response_model=RoleRevoked)
def revoke_role(principal: str, role: str, identity: Authenticated, p: PipelineDep,
                environment: str = "*") -> Response:
    _manager(p, identity, "role.revoke", principal)
    p.rbac.revoke_role(principal, role, environment)
    p.services.audit.record(actor=identity, action="role.revoke", target=principal,
                            outcome="succeeded",
                            parameters={"role": role, "environment": environment})
    return json_response({"revoked": {"identity": principal, "role": role,
                                      "environment": environment}})


@audit_router.get("/api/v1/audit/verify", response_model=AuditVerification)
def audit_verify(identity: Authenticated, p: PipelineDep) -> Response:
    p.authorise(identity, "audit:read", None, action="audit.verify", target=None)
    return json_response(p.services.audit.verify().to_json())
