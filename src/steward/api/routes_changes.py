"""The change pipeline's REST routes for changes: propose, read, analyse, review, validate,
transcripts and the trace. Thin: every rule lives in :class:`Pipeline`."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from steward.api.deps import PipelineDep
from steward.api.models_changes import (
    CHANGE_ERRORS,
    AnalyseBody,
    ChangeDetail,
    ChangeDocument,
    ChangeRecord,
    ImpactReport,
    OverrideBody,
    ProposeBody,
    RejectBody,
    ReviewBody,
    Trace,
    TranscriptBody,
    TranscriptStep,
    ValidateBody,
    Validation,
)
from steward.pipeline.approvals import StaleApprovalError
from steward.pipeline.impact import LivePredictor, render_text
from steward.server.deps import Authenticated, Signals, json_response
from steward.server.errors import public_message

router = APIRouter(tags=["changes"], responses=CHANGE_ERRORS)


async def stale_approval(_request: Request, exc: StaleApprovalError) -> Response:
    """409 with the change's current head and digest as fields, to review again."""
    return json_response({"error": public_message(exc), "head": exc.head, "digest": exc.digest},
                         409)


@router.post("/api/v1/changes", status_code=201, response_model=ChangeDocument)
def propose(body: ProposeBody, identity: Authenticated, p: PipelineDep) -> Response:
    """Propose file edits, a patch, or a pushed branch; analysed at once."""
    if body.branch is not None:
        view = p.propose_branch(identity, body.branch, body.environment,
                                body.message or body.title)
    else:
        view = p.propose(identity, body.environment, edits=body.edits, patch=body.patch,
                         base=body.base, title=body.title, message=body.message)
    return json_response(view.to_json(), 201)


@router.get("/api/v1/changes", response_model=list[ChangeRecord])
def list_changes(identity: Authenticated, p: PipelineDep, state: str | None = None,
                 environment: str | None = None) -> Response:
    changes = p.list(identity, state=state, environment=environment)
    return json_response([c.to_json() for c in changes])


@router.get("/api/v1/changes/{change_id}", response_model=ChangeDetail)
def get_change(change_id: str, identity: Authenticated, p: PipelineDep) -> Response:
    document = p.view(identity, change_id).to_json()
    document["history"] = [h.to_json() for h in p.changes.history(change_id)]
    document["deployments"] = [d.to_json() for d in p.deployments.for_change(change_id)]
    return json_response(document)


@router.get("/api/v1/changes/{change_id}/impact", response_model=ImpactReport, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}},
          "description": "The impact report (as text with format=text)"}})
def impact(change_id: str, identity: Authenticated, p: PipelineDep,
           format: Literal["json", "text"] = "json") -> Response:
    report = p.impact_report(identity, change_id)
    if format == "text":
        return PlainTextResponse(render_text(report))
    return json_response(report.to_json())


@router.post("/api/v1/changes/{change_id}/analyse", response_model=ChangeDocument)
async def analyse(change_id: str, identity: Authenticated, p: PipelineDep, signals: Signals,
                  body: AnalyseBody | None = None) -> Response:
    """Re-run the impact analysis; with ``live``, ask the affected nodes too."""
    if body is not None and body.live:
        predictor = LivePredictor(signals, p.services.engine, p.services.enrollment,
                                  secrets=p.services.catalogs.secrets, clock=p.services.clock)
        await p.analyse_live(identity, change_id, predictor, timeout=body.timeout)
    else:
        await run_in_threadpool(p.analyse, identity, change_id)
    view = await run_in_threadpool(p.view, identity, change_id)
    return json_response(view.to_json())


@router.post("/api/v1/changes/{change_id}/approve", response_model=ChangeDocument)
def approve(change_id: str, body: ReviewBody, identity: Authenticated,
            p: PipelineDep) -> Response:
    """Approve the head and impact digest the caller reviewed (409 if either moved on)."""
    view = p.approve(identity, change_id, head=body.head, digest=body.digest,
                     comment=body.comment)
    return json_response(view.to_json())


@router.post("/api/v1/changes/{change_id}/reject", response_model=ChangeDocument)
def reject(change_id: str, body: RejectBody, identity: Authenticated,
           p: PipelineDep) -> Response:
    """Reject the head and impact digest the caller reviewed (409 if either moved on)."""
    view = p.reject(identity, change_id, body.reason, head=body.head, digest=body.digest)
    return json_response(view.to_json())


@router.post("/api/v1/changes/{change_id}/override", response_model=ChangeDocument)
def override(change_id: str, body: OverrideBody, identity: Authenticated,
             p: PipelineDep) -> Response:
    """Override a soft-mandatory policy on the report the caller reviewed."""
    view = p.override_policy(identity, change_id, body.policy, body.reason,
                             head=body.head, digest=body.digest)
    return json_response(view.to_json())


@router.post("/api/v1/changes/{change_id}/validate", response_model=Validation)
def validate(change_id: str, body: ValidateBody, identity: Authenticated,
             p: PipelineDep) -> Response:
    return json_response(p.record_validation(identity, change_id, body.verdict, body.evidence))


@router.post("/api/v1/changes/{change_id}/transcript", status_code=201,
             response_model=TranscriptStep)
def transcript(change_id: str, body: TranscriptBody, identity: Authenticated,
               p: PipelineDep) -> Response:
    """One step of an agent's work, filed in the change's audit trail as its caller."""
    return json_response(p.record_transcript(identity, change_id, body.agent, body.kind,
                                             body.content), 201)


@router.get("/api/v1/changes/{change_id}/trace", response_model=Trace)
def trace(change_id: str, identity: Authenticated, p: PipelineDep) -> Response:
    change = p.changes.get(change_id)
    p.authorise(identity, "audit:read", change.environment, action="audit.trace",
                target=f"change:{change_id}")
    return json_response(p.trace(change_id))
