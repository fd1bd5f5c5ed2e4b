"""PuppetDB's query API (v4) over the state store, so existing PuppetDB clients work.

``/pdb/query/v4`` takes PQL or an AST query (``query=``); ``/pdb/query/v4/<entity>`` takes
an AST query for that entity; both accept ``limit``, ``offset`` and ``order_by`` (a JSON
array of ``{"field", "order"}``), by GET parameters or a POST JSON body, as PuppetDB does.
Results are PuppetDB's JSON arrays; a query the store cannot parse or run is HTTP 400 with
the parser's message as plain text, as PuppetDB answers.

(No ``from __future__ import annotations`` here: the route signatures name a dependency that
is local to :func:`build_router`, and FastAPI must see it as an object, not a string.)
"""

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from steward.errors import StewardError
from steward.server.auth import Identity
from steward.server.services import Services

#: Entities whose ``/<entity>/<name>`` form names one certname and answers one object.
_SINGLE = {"nodes": "certname", "catalogs": "certname", "factsets": "certname"}
#: Entities whose ``/<entity>/<name>`` form filters on a field and answers a list.
_FILTER = {"facts": "name", "fact-contents": "name", "resources": "type",
           "reports": "hash", "events": "report", "environments": "name"}


class QueryInputError(StewardError):
    """A query parameter is not what PuppetDB's API accepts."""


def _parse_json_param(value: Any, name: str) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise QueryInputError(f"{name} is not valid JSON: {exc.msg} at column {exc.colno}") \
            from None


def _parse_query(value: Any) -> Any:
    """PQL stays a string; an AST (JSON array) is decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return _parse_json_param(value, "query")
    if value is not None and not isinstance(value, (str, list)):
        raise QueryInputError("query must be a PQL string or a JSON array (AST)")
    return value


def _int_param(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QueryInputError(f"{name} must be a non-negative integer, not {value!r}") from None
    if number < 0:
        raise QueryInputError(f"{name} must be a non-negative integer, not {number}")
    return number


def _order_by(value: Any) -> list[tuple[str, str]] | None:
    """PuppetDB's ``[{"field": F, "order": "asc"|"desc"}, ...]`` as (field, order) pairs."""
    value = _parse_json_param(value, "order_by")
    if value is None:
        return None
    if not isinstance(value, list):
        raise QueryInputError('order_by must be a JSON array like [{"field": "certname", '
                              '"order": "desc"}]')
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise QueryInputError(f"order_by: each entry needs a 'field', not {item!r}")
        order = item.get("order", "asc")
        if not isinstance(order, str) or order.lower() not in ("asc", "desc"):
            raise QueryInputError(f"order_by: order must be 'asc' or 'desc', not {order!r}")
        pairs.append((item["field"], order.lower()))
    return pairs


def _paging(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "limit": _int_param(params.get("limit"), "limit"),
        "offset": _int_param(params.get("offset"), "offset"),
        "order_by": _order_by(params.get("order_by")),
    }


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str),
                    status_code=status, media_type="application/json")


async def _params(request: Request) -> dict[str, Any]:
    if request.method == "POST":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise QueryInputError("the request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise QueryInputError("the request body must be a JSON object")
        return body
    return dict(request.query_params)


def build_router(
    services: Callable[[Request], Services],
    operator: Callable[..., Identity],
) -> APIRouter:
    """The ``/pdb`` routes; ``operator`` is the dependency that admits operators only."""
    router = APIRouter(prefix="/pdb/query/v4", tags=["PuppetDB query API"])
    Operator = Annotated[Identity, Depends(operator)]

    async def run(request: Request, call: Callable[[Services, dict[str, Any]], Any],
                  single: bool = False) -> Response:
        try:
            params = await _params(request)
            paging = _paging(params)
            result = await run_in_threadpool(call, services(request), {**params, **paging})
        except StewardError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if single:
            if not result:
                return _json({"error": "No information is known about that node"}, 404)
            return _json(result[0])
        return _json(result)

    @router.get("", summary="PQL or AST query")
    @router.post("", summary="PQL or AST query")
    async def root(
        request: Request,
        _identity: Operator,
        query: Annotated[str | None, Query(description="PQL, or an AST as JSON")] = None,
        limit: Annotated[int | None, Query(ge=0)] = None,
        offset: Annotated[int | None, Query(ge=0)] = None,
        order_by: Annotated[str | None, Query(description="JSON array")] = None,
    ) -> Response:
        def call(svc: Services, params: dict[str, Any]) -> Any:
            parsed = _parse_query(params.get("query"))
            if parsed is None or parsed == "":
                raise QueryInputError("missing query (PQL or AST): pass query=...")
            return svc.store.query(parsed, limit=params["limit"], offset=params["offset"],
                                   order_by=params["order_by"])

        return await run(request, call)

    @router.get("/{entity}", summary="AST query of one entity")
    @router.post("/{entity}", summary="AST query of one entity")
    async def entity_query(
        request: Request,
        entity: str,
        _identity: Operator,
        query: Annotated[str | None, Query(description="AST as JSON")] = None,
        limit: Annotated[int | None, Query(ge=0)] = None,
        offset: Annotated[int | None, Query(ge=0)] = None,
        order_by: Annotated[str | None, Query(description="JSON array")] = None,
    ) -> Response:
        def call(svc: Services, params: dict[str, Any]) -> Any:
            parsed = _parse_query(params.get("query"))
            if isinstance(parsed, str) and parsed.strip():
                raise QueryInputError(
                    f"/pdb/query/v4/{entity} takes an AST query (a JSON array); "
                    "send PQL to /pdb/query/v4"
                )
            return svc.store.query_entity(entity, parsed or None, limit=params["limit"],
                                          offset=params["offset"], order_by=params["order_by"])

        return await run(request, call)

    @router.get("/{entity}/{name}", summary="One node's object, or an entity filtered by name")
    async def named(request: Request, entity: str, name: str, _identity: Operator) -> Response:
        field = _SINGLE.get(entity) or _FILTER.get(entity)

        def call(svc: Services, params: dict[str, Any]) -> Any:
            if field is None:
                raise QueryInputError(f"/pdb/query/v4/{entity}/NAME is not supported")
            ast: list[Any] = ["=", field, name]
            user = _parse_query(params.get("query"))
            if user:
                ast = ["and", ast, user]
            return svc.store.query_entity(entity, ast, limit=params["limit"],
                                          offset=params["offset"], order_by=params["order_by"])

        return await run(request, call, single=entity in _SINGLE)

    return router
