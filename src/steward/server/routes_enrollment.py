"""Enrollment: a node asks for a credential (with a join token, or pending an operator's
approval) and, when pending, polls for it with its poll token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from steward.access.principal import Principal
from steward.server import deps
from steward.server.deps import Authenticated, Bearer, ServicesDep, XAuthentication
from steward.server.errors import EnrollmentError
from steward.server.models import (
    COMMON_ERRORS,
    EnrollApproved,
    EnrollmentState,
    EnrollPending,
    EnrollRequest,
)

router = APIRouter(tags=["enrollment"], responses=COMMON_ERRORS)


@router.post("/api/v1/enroll", status_code=200, response_model=EnrollApproved,
             responses={202: {"model": EnrollPending, "description": "Pending approval"}})
def enroll(request: Request, body: EnrollRequest, bearer: Bearer, x_auth: XAuthentication,
           svc: ServicesDep) -> Response:
    """Ask to enroll. With a join token: approved at once (200, the node credential).

    Without a token: a pending request (202, a poll token for GET /api/v1/enroll/{id}).
    """
    join: Principal | None = None
    token = deps.token_of(bearer, x_auth)
    if token is not None:
        join = deps.authenticated(request, bearer, x_auth)
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
                              headers=deps.NO_STORE)


@router.get("/api/v1/enroll/{request_id}",
            response_model=EnrollApproved | EnrollmentState)
def enroll_status(request: Request, request_id: str, identity: Authenticated,
                  svc: ServicesDep) -> Response:
    """Poll a pending request with its poll token; collects the credential once approved."""
    if identity.credential != "enrollment":
        deps.deny(request, identity, "enroll.poll", request_id,
                  "only the request's own poll token can read an enrollment request")
    result = svc.enrollment.collect(request_id, identity)
    return deps.json_response(result, headers=deps.NO_STORE)
