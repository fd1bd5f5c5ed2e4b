"""What a node itself calls: upload facts, fetch its catalog, send reports, long-poll for a
run-now request, post a task job's result (and, with ``query``, anyone reads its record)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import Response

from steward.errors import NotFoundError, StewardError
from steward.server import deps
from steward.server.deps import ConfigDep, NodeOrQuery, NodeSelf, ServicesDep, Signals
from steward.server.models import (
    COMMON_ERRORS,
    CatalogAnswer,
    FactsStored,
    FactsUpload,
    JobResultRecorded,
    NodeDetail,
    ReportStored,
    RunWait,
)
from steward.server.runs import LiveCatalogRefused, live_catalog

router = APIRouter(tags=["nodes"], responses=COMMON_ERRORS)

#: A live prediction's commit: a SHA-1 or SHA-256 object name.
COMMIT_PATTERN = r"^[0-9a-f]{40}([0-9a-f]{24})?$"


@router.put("/api/v1/nodes/{certname}/facts", response_model=FactsStored)
def put_facts(certname: str, body: FactsUpload, _identity: NodeSelf,
              svc: ServicesDep) -> Response:
    """Replace the node's facts (the input of its next catalog)."""
    node = svc.enrollment.get(certname)
    environment = (body.environment or node["environment"] or node["last_environment"]
                   or svc.catalogs.default_environment())
    now = svc.clock.now()
    stamp = body.producer_timestamp or now
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    svc.store.replace_facts(certname, environment, body.values, stamp)
    svc.enrollment.touch(certname, last_seen_at=now)
    return deps.json_response({"certname": certname, "environment": environment})


@router.get("/api/v1/nodes/{certname}/catalog", response_model=CatalogAnswer)
def get_catalog(
    request: Request,
    certname: str,
    identity: NodeSelf,
    svc: ServicesDep,
    signals: Signals,
    commit: Annotated[str | None, Query(
        pattern=COMMIT_PATTERN,
        description="Live prediction: the commit a run-now request asked this node to "
                    "run in noop (the run-wait answer names it)")] = None,
) -> Response:
    """Compile (or serve from cache) the node's catalog from its latest facts.

    The answer includes the catalog's sensitive values: only the node itself gets them.
    With ``commit`` (live prediction): that commit's catalog, only while a claimed
    run-now request of this node grants it; it is neither stored nor cached.
    """
    node = svc.enrollment.get(certname)
    facts = svc.store.latest_facts(certname)
    if facts is None:
        raise HTTPException(409, f"no facts for node {certname!r} yet: upload facts "
                                 "(PUT /api/v1/nodes/{certname}/facts) first")
    if commit is not None:
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
                headers=deps.NO_STORE,
            )
    try:
        compiled = svc.catalogs.compile(certname, facts, node["environment"])
    except StewardError as exc:
        raise HTTPException(422, f"compiling the catalog of {certname!r} failed: {exc}") \
            from None
    catalog = compiled.result.catalog
    document = catalog.to_json()
    if node["last_catalog_hash"] != catalog.hash:
        svc.store.replace_catalog(document, svc.clock.now())
        svc.enrollment.touch(certname, last_catalog_hash=catalog.hash,
                             last_environment=catalog.environment)
    return deps.json_response(
        {"catalog": document, "sensitive_values": compiled.result.sensitive_values,
         "input_hash": compiled.input_hash, "cached": compiled.cached},
        headers=deps.NO_STORE,
    )


@router.post("/api/v1/nodes/{certname}/reports", status_code=201,
             response_model=ReportStored)
def post_report(request: Request, certname: str, report: Annotated[dict[str, Any], Body()],
                identity: NodeSelf, svc: ServicesDep) -> Response:
    """Store a run report (idempotent on its transaction_uuid)."""
    if report.get("node") != certname:
        deps.deny(request, identity, "report.submit", certname,
                  f"the report is for node {str(report.get('node'))[:255]!r}, not {certname!r}")
    stored = svc.store.store_report(report)
    now = svc.clock.now()
    svc.enrollment.touch(certname, last_seen_at=now, last_run_at=now)
    return deps.json_response({"certname": certname, "stored": stored,
                               "transaction_uuid": report.get("transaction_uuid")}, 201)


@router.get("/api/v1/nodes/{certname}/run-wait", response_model=RunWait)
async def run_wait(
    request: Request,
    certname: str,
    _identity: NodeSelf,
    signals: Signals,
    config: ConfigDep,
    timeout: Annotated[float, Query(ge=0, le=300)] = 25.0,
) -> Response:
    """Long poll: answers as soon as an operator asks this node to run, or at timeout."""
    claimed = await signals.wait(certname, min(timeout, config.long_poll_seconds),
                                 deps.state(request).extras.get("task_claim"))
    if claimed is None:
        return deps.json_response({"run": False})
    if isinstance(claimed, dict):
        # A task job's part for this node (docs/tasks.md): run it, post the result.
        return deps.json_response({"run": False, "task": claimed})
    answer: dict[str, Any] = {"run": True, "noop": claimed.noop,
                              "requested_by": claimed.requested_by,
                              "request_ids": list(claimed.ids)}
    if claimed.commit is not None:
        # Live prediction: fetch the catalog with ?commit= and run it in noop.
        answer.update(commit=claimed.commit, change=claimed.change_id)
    return deps.json_response(answer)


@router.post("/api/v1/nodes/{certname}/jobs/{job}/result", response_model=JobResultRecorded)
def post_job_result(request: Request, certname: str, job: str, _identity: NodeSelf,
                    body: Annotated[dict[str, Any], Body()]) -> Response:
    """The node's outcome of its part of a task job (docs/tasks.md)."""
    complete = deps.state(request).extras.get("task_complete")
    if complete is None:
        raise NotFoundError("tasks need the change pipeline (a git repository of desired "
                            "state)")
    return deps.json_response(dict(complete(certname, job, body)))


@router.get("/api/v1/nodes/{certname}", response_model=NodeDetail)
def get_node(certname: str, _identity: NodeOrQuery, svc: ServicesDep) -> Response:
    return deps.json_response(svc.enrollment.get(certname))
