"""Who am I, how is the server, and the OpenAPI document (to authenticated callers only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from steward import __version__
from steward.server.deps import (
    Authenticated,
    ConfigDep,
    QueryPermission,
    ServicesDep,
    json_response,
)
from steward.server.models import COMMON_ERRORS, Status, Whoami

router = APIRouter(tags=["identity"], responses=COMMON_ERRORS)


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _identity: Authenticated) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api/v1/whoami", response_model=Whoami)
def whoami(identity: Authenticated) -> Response:
    """The identity behind the token sent (a cheap way to check a credential)."""
    return json_response({"kind": identity.credential, "name": identity.name,
                          "certname": identity.certname, "token_id": identity.token_id})


@router.get("/api/v1/status", response_model=Status)
def status(svc: ServicesDep, config: ConfigDep, _identity: QueryPermission) -> Response:
    return json_response({"version": __version__, "repo": str(config.repo_path),
            "catalog_cache": {"hits": svc.catalogs.hits, "misses": svc.catalogs.misses},
            "nodes": len(svc.enrollment.list_nodes())})
