"""The change pipeline's REST routes: thin, every rule lives in :class:`Pipeline`."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from enum import Enum
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from steward.access.principal import Principal
from steward.pipeline.approvals import StaleApprovalError
from steward.pipeline.deploy import ServerNodeRunner, Strategy
from steward.pipeline.impact import LivePredictor, render_text
from steward.pipeline.service import Pipeline
from steward.server.app import MAX_TOKEN_SECONDS
from steward.server.deps import Authenticated, json_response, state
from steward.server.errors import public_message


class ProposeBody(BaseModel):
    environment: str = Field(description="The target environment (a branch)")
    title: str = Field(min_length=1, max_length=255)
    message: str = ""
    base: str | None = Field(default=None, description="Base commit (default: the tip)")
    edits: dict[str, str | None] | None = Field(
        default=None, description="Path -> new content; null deletes the file")
    patch: str | None = Field(default=None, description="A unified diff (git format)")
    branch: str | None = Field(default=None, description="Propose a pushed branch instead")


class AnalyseBody(BaseModel):
    live: bool = Field(default=False, description="Also ask the affected nodes for a noop run "
                       "of the proposed catalog (live prediction)")
    timeout: float = Field(default=120.0, gt=0, le=900,
                           description="Seconds to wait for the nodes' reports (live only)")


def _head() -> Any:
    return Field(min_length=40, max_length=64, pattern=r"^[0-9a-f]+$",
                 description="The head commit the caller reviewed (the change's 'head')")


def _digest() -> Any:
    return Field(min_length=1, max_length=80, description="The impact digest the caller "
                 "reviewed (the change's 'impact_digest')")


class Reviewed(BaseModel):
    """What the caller read: a verdict, an override or a deploy binds to exactly this.

    Both fields are required; a mismatch with the change is refused (409) naming the
    change's current head and digest.
    """

    head: str = _head()
    digest: str = _digest()


class ReviewBody(Reviewed):
    comment: str | None = Field(default=None, max_length=2000)


class RejectBody(BaseModel):
    reason: str = Field(min_length=1)
    head: str = _head()
    digest: str | None = Field(max_length=80, description="The impact digest the caller "
                               "reviewed; null for a change that has none yet")


class OverrideBody(Reviewed):
    policy: str
    reason: str = Field(min_length=1)


class ValidateBody(BaseModel):
    verdict: Literal["pass", "fail"]
    evidence: str = ""


class TranscriptBody(BaseModel):
    agent: str = Field(min_length=1, max_length=64, description="The agent's role, e.g. planner")
    kind: str = Field(description="prompt, tool_call, tool_result, message or diagnosis")
    content: dict[str, Any] = Field(default_factory=dict)


class DeployBody(Reviewed):
    """``head``/``digest``: the ones the change was approved at (what the deployer read)."""

    strategy: dict[str, Any] | None = None


class PromoteBody(BaseModel):
    environment: str


class IdentityCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    kind: Literal["human", "agent"]
    roles: list[str] = Field(default_factory=list,
                             description="ROLE or ROLE@ENVIRONMENT (default every environment)")
    expires_in: float | None = Field(default=None, gt=0, le=MAX_TOKEN_SECONDS,
                                     description="Seconds (at most ten years)")


class GrantBody(BaseModel):
    role: str
    environment: str = "*"


def _pipeline(request: Request) -> Pipeline:
    pipeline = state(request).extras.get("pipeline")
    if pipeline is None:
        raise HTTPException(503, "the change pipeline is not available: the server's "
                                 "repository is a plain directory, not desired.git")
    assert isinstance(pipeline, Pipeline)
    return pipeline


def _role(text: str) -> tuple[str, str]:
    role, _, env = text.partition("@")
    return role, env or "*"


def install(app: FastAPI) -> None:
    tags: list[str | Enum] = ["changes"]

    @app.post("/api/v1/changes", tags=tags, status_code=201)
    def propose(request: Request, body: ProposeBody, identity: Authenticated) -> Response:
        """Propose file edits, a patch, or a pushed branch; analysed at once."""
        p = _pipeline(request)
        if body.branch is not None:
            view = p.propose_branch(identity, body.branch, body.environment,
                                    body.message or body.title)
        else:
            view = p.propose(identity, body.environment, edits=body.edits, patch=body.patch,
                             base=body.base, title=body.title, message=body.message)
        return json_response(view.to_json(), 201)

    @app.get("/api/v1/changes", tags=tags)
    def list_changes(request: Request, identity: Authenticated, state: str | None = None,
                     environment: str | None = None) -> Response:
        changes = _pipeline(request).list(identity, state=state, environment=environment)
        return json_response([c.to_json() for c in changes])

    @app.get("/api/v1/changes/{change_id}", tags=tags)
    def get_change(request: Request, change_id: str, identity: Authenticated) -> Response:
        p = _pipeline(request)
        document = p.view(identity, change_id).to_json()
        document["history"] = [h.to_json() for h in p.changes.history(change_id)]
        document["deployments"] = [d.to_json() for d in p.deployments.for_change(change_id)]
        return json_response(document)

    @app.get("/api/v1/changes/{change_id}/impact", tags=tags)
    def impact(request: Request, change_id: str, identity: Authenticated,
               format: Literal["json", "text"] = "json") -> Response:
        report = _pipeline(request).impact_report(identity, change_id)
        if format == "text":
            return PlainTextResponse(render_text(report))
        return json_response(report.to_json())

    @app.post("/api/v1/changes/{change_id}/analyse", tags=tags)
    async def analyse(request: Request, change_id: str, identity: Authenticated,
                      body: AnalyseBody | None = None) -> Response:
        """Re-run the impact analysis; with ``live``, ask the affected nodes too."""
        p = _pipeline(request)
        if body is not None and body.live:
            signals = state(request).signals
            assert signals is not None
            predictor = LivePredictor(signals, p.services.engine, p.services.enrollment,
                                      secrets=p.services.catalogs.secrets)
            await p.analyse_live(identity, change_id, predictor, timeout=body.timeout)
        else:
            await run_in_threadpool(p.analyse, identity, change_id)
        view = await run_in_threadpool(p.view, identity, change_id)
        return json_response(view.to_json())

    @app.exception_handler(StaleApprovalError)
    async def stale(_request: Request, exc: StaleApprovalError) -> Response:
        """409 with the change's current head and digest as fields, to review again."""
        return json_response({"error": public_message(exc), "head": exc.head, "digest": exc.digest},
                     409)

    @app.post("/api/v1/changes/{change_id}/approve", tags=tags)
    def approve(request: Request, change_id: str, body: ReviewBody,
                identity: Authenticated) -> Response:
        """Approve the head and impact digest the caller reviewed (409 if either moved on)."""
        view = _pipeline(request).approve(identity, change_id, head=body.head,
                                          digest=body.digest, comment=body.comment)
        return json_response(view.to_json())

    @app.post("/api/v1/changes/{change_id}/reject", tags=tags)
    def reject(request: Request, change_id: str, body: RejectBody,
               identity: Authenticated) -> Response:
        """Reject the head and impact digest the caller reviewed (409 if either moved on)."""
        view = _pipeline(request).reject(identity, change_id, body.reason, head=body.head,
                                         digest=body.digest)
        return json_response(view.to_json())

    @app.post("/api/v1/changes/{change_id}/override", tags=tags)
    def override(request: Request, change_id: str, body: OverrideBody,
                 identity: Authenticated) -> Response:
        """Override a soft-mandatory policy on the report the caller reviewed."""
        view = _pipeline(request).override_policy(identity, change_id, body.policy, body.reason,
                                                  head=body.head, digest=body.digest)
        return json_response(view.to_json())

    @app.post("/api/v1/changes/{change_id}/validate", tags=tags)
    def validate(request: Request, change_id: str, body: ValidateBody,
                 identity: Authenticated) -> Response:
        return json_response(_pipeline(request).record_validation(identity, change_id, body.verdict,
                                                          body.evidence))

    @app.post("/api/v1/changes/{change_id}/transcript", tags=tags, status_code=201)
    def transcript(request: Request, change_id: str, body: TranscriptBody,
                   identity: Authenticated) -> Response:
        """One step of an agent's work, filed in the change's audit trail as its caller."""
        return json_response(_pipeline(request).record_transcript(identity, change_id, body.agent,
                                                          body.kind, body.content), 201)

    @app.post("/api/v1/changes/{change_id}/deploy", tags=tags, status_code=202)
    async def deploy(request: Request, change_id: str, body: DeployBody,
                     identity: Authenticated) -> Response:
        """Merge and start the rollout of the head and digest the change was approved at
        (409 if they are not the ones sent); poll GET /api/v1/deployments/ID for progress."""
        p = _pipeline(request)
        app_state = state(request)
        strategy = Strategy.from_json(body.strategy)
        deployment = await run_in_threadpool(functools.partial(
            p.start_deploy, identity, change_id, strategy, head=body.head, digest=body.digest))
        actor = p.actor(identity)
        signals = app_state.signals
        assert signals is not None
        runner = ServerNodeRunner(signals, p.services.engine)
        tasks: set[asyncio.Task[Any]] = app_state.extras["pipeline_tasks"]
        task = asyncio.create_task(p.run_deploy(deployment.id, runner, actor),
                                   name=f"deploy-{deployment.id}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return json_response(deployment.to_json(), 202)

    @app.get("/api/v1/deployments/{deployment_id}", tags=tags)
    def get_deployment(request: Request, deployment_id: str,
                       identity: Authenticated) -> Response:
        p = _pipeline(request)
        deployment = p.deployments.get(deployment_id)
        p.authorise(identity, "desired_state:read", deployment.environment,
                    action="deployment.read", target=f"deployment:{deployment_id}")
        document = deployment.to_json()
        document["change_state"] = p.changes.get(deployment.change_id).state
        return json_response(document)

    @app.post("/api/v1/changes/{change_id}/rollback", tags=tags, status_code=201)
    def rollback(request: Request, change_id: str, identity: Authenticated) -> Response:
        return json_response(_pipeline(request).rollback(identity, change_id).to_json(), 201)

    @app.post("/api/v1/changes/{change_id}/promote", tags=tags, status_code=201)
    def promote(request: Request, change_id: str, body: PromoteBody,
                identity: Authenticated) -> Response:
        view = _pipeline(request).promote(identity, change_id, body.environment)
        return json_response(view.to_json(), 201)

    @app.get("/api/v1/changes/{change_id}/trace", tags=tags)
    def trace(request: Request, change_id: str, identity: Authenticated) -> Response:
        p = _pipeline(request)
        change = p.changes.get(change_id)
        p.authorise(identity, "audit:read", change.environment, action="audit.trace",
                    target=f"change:{change_id}")
        return json_response(p.trace(change_id))

    # -- identities ------------------------------------------------------------------------

    id_tags: list[str | Enum] = ["identities"]

    def _manager(p: Pipeline, identity: Principal, action: str, target: str | None) -> None:
        p.authorise(identity, "token:manage", None, action=action, target=target)

    @app.post("/api/v1/identities", tags=id_tags, status_code=201)
    def create_identity(request: Request, body: IdentityCreate,
                        identity: Authenticated) -> Response:
        """Create a human or agent identity with roles; its token is shown only here."""
        p = _pipeline(request)
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
                             201, headers={"Cache-Control": "no-store"})

    @app.get("/api/v1/identities", tags=id_tags)
    def list_identities(request: Request, identity: Authenticated) -> Response:
        p = _pipeline(request)
        _manager(p, identity, "identity.list", None)
        return json_response([b.to_json() for b in p.rbac.bindings()])

    @app.post("/api/v1/identities/{principal}/roles", tags=id_tags, status_code=201)
    def grant(request: Request, principal: str, body: GrantBody,
              identity: Authenticated) -> Response:
        p = _pipeline(request)
        _manager(p, identity, "role.grant", principal)
        if identity.credential != "admin":
            p.rbac.check_no_escalation(p.actor(identity), body.role, body.environment)
        binding = p.rbac.grant(principal, body.role, body.environment,
                               granted_by=identity.label)
        p.services.audit.record(actor=identity, action="role.grant", target=principal,
                                outcome="succeeded",
                                parameters={"role": body.role, "environment": body.environment})
        return json_response(binding.to_json(), 201)

    @app.delete("/api/v1/identities/{principal}/roles/{role}", tags=id_tags)
    def revoke_role(request: Request, principal: str, role: str, identity: Authenticated,
                    environment: str = "*") -> Response:
        p = _pipeline(request)
        _manager(p, identity, "role.revoke", principal)
        p.rbac.revoke_role(principal, role, environment)
        p.services.audit.record(actor=identity, action="role.revoke", target=principal,
                                outcome="succeeded",
                                parameters={"role": role, "environment": environment})
        return json_response({"revoked": {"identity": principal, "role": role,
                                  "environment": environment}})

    @app.get("/api/v1/audit/verify", tags=["audit"])
    def audit_verify(request: Request, identity: Authenticated) -> Response:
        p = _pipeline(request)
        p.authorise(identity, "audit:read", None, action="audit.verify", target=None)
        return json_response(p.services.audit.verify().to_json())
