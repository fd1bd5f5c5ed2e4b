"""PuppetDB's query API (v4) over the state store, so existing PuppetDB clients work.

``/pdb/query/v4`` takes PQL or an AST query (``query=``); ``/pdb/query/v4/<entity>`` takes
an AST query for that entity; both accept ``limit``, ``offset`` and ``order_by`` (a JSON
array of ``{"field", "order"}``), by GET parameters or a POST JSON body, as PuppetDB does.
Results are PuppetDB's JSON arrays; a query the store cannot parse or run is HTTP 400 with
the parser's message as plain text, as PuppetDB answers.

Every route needs the ``query`` permission, and a query that reads the audit log, run
reports or the pipeline's records (in its own entity or any subquery) needs the permission
that guards them elsewhere too (:data:`steward.access.authorize.ENTITY_PERMISSIONS`): PQL is no way
around ``audit:read``. Queries made with an *agent* token are audited
(action ``query``, the entity as target, the query text cut to :data:`AUDITED_QUERY_CHARS`
and the row count as parameters): what an agent looked at is part of its trail. Node,
operator and human queries are not (their volume would drown the log).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from steward.access.authorize import Forbidden, entity_permissions
from steward.access.principal import Principal
from steward.errors import StewardError
from steward.query.limits import MAX_QUERY_CHARS, loads_ast, page_param
from steward.query.parser import parse_pql
from steward.server.deps import QueryPermission, authorise, json_response, services
from steward.server.models import Error, JsonObject, errors
from steward.server.services import Services

#: Longest query text an audit entry keeps.
AUDITED_QUERY_CHARS = 500
#: Token kinds whose queries are audited.
AUDITED_KINDS = frozenset({"agent"})

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
    return loads_ast(value, name)


def _parse_query(value: Any) -> Any:
    """PQL stays a string; an AST (JSON array) is decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return _parse_json_param(value, "query")
    if value is not None and not isinstance(value, (str, list)):
        raise QueryInputError("query must be a PQL string or a JSON array (AST)")
    return value


def _int_param(value: Any, name: str) -> int | None:
    """``limit``/``offset``: 0 to 2^31-1 (docs/query.md#limits); ``1e400``, ``Infinity``,
    ``true`` and ``1.5`` are 400s, not an overflow (a 500) or a silent truncation."""
    return page_param(name, value)


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


async def _params(request: Request) -> dict[str, Any]:
    if request.method == "POST":
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise QueryInputError("the request body must be a JSON object (UTF-8)") from None
        # Depth-checked before it is decoded: json.loads recurses.
        body = loads_ast(text, "the request body", max_chars=2 * MAX_QUERY_CHARS)
        if not isinstance(body, dict):
            raise QueryInputError("the request body must be a JSON object")
        return body
    return dict(request.query_params)


def _entity_of(ast: Any) -> str | None:
    if isinstance(ast, list) and len(ast) > 1 and ast[0] == "from" and isinstance(ast[1], str):
        return ast[1]
    return None


def audit_query(svc: Services, request: Request, identity: Principal, entity: str | None,
                 params: dict[str, Any], *, rows: int | None = None,
                 error: str | None = None) -> None:
    """One audit entry for an agent's query: what it asked and how much it got back."""
    text = params.get("query")
    if text is not None and not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, separators=(",", ":"), default=str)
    parameters: dict[str, Any] = {"path": request.url.path, "rows": rows,
                                  "query": text[:AUDITED_QUERY_CHARS] if text else None}
    if text and len(text) > AUDITED_QUERY_CHARS:
        parameters["query_chars"] = len(text)
    svc.audit.record(actor=identity, action="query", target=entity,
                     outcome="failed" if error is not None else "succeeded", reason=error,
                     remote=request.client.host if request.client else None,
                     parameters=parameters)


#: Checks what a query needs beyond ``query``: ``guard(ast, endpoint entity or None)``.
_Guard = Callable[[Any, "str | None"], None]
#: What a route runs on the store: ``(entity queried, rows)`` from the request's parameters;
#: it calls the guard with the query before running it.
_Call = Callable[[Services, dict[str, Any], _Guard], tuple[str | None, Any]]

#: A query the store cannot parse or run: the parser's message as plain text, as PuppetDB; a
#: request the server's limits refuse before any query is read is the JSON error, as elsewhere.
_QUERY_ERRORS: dict[int | str, dict[str, Any]] = {
    **errors(401, 403, 404, 413, 422),
    400: {"model": Error,
          "description": "The query cannot be parsed or run: the message as plain text (as "
                         "PuppetDB answers); a request the server's limits refuse before the "
                         "query is read (a NUL character, say): the JSON error",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}
router = APIRouter(prefix="/pdb/query/v4", tags=["PuppetDB query API"], responses=_QUERY_ERRORS)


async def run(request: Request, identity: Principal, call: _Call, single: bool = False,
              entity: str | None = None) -> Response:
    """Read the parameters, run ``call`` on the store (guarded, audited for agents), answer
    PuppetDB's JSON, or its plain-text 400 for a query the store cannot parse or run."""
    audited = identity.credential in AUDITED_KINDS
    params: dict[str, Any] = {}

    def guard(ast: Any, name: str | None) -> None:
        # Each entity's own permission, checked (and audited) as ``authorise`` does.
        for needed_by, permission in entity_permissions(ast, name):
            authorise(request, identity, permission, None, target=needed_by)

    def execute(svc: Services) -> Any:
        found = entity
        try:
            found, result = call(svc, {**params, **_paging(params)}, guard)
        except Forbidden:
            raise  # audited as a denial already
        except StewardError as exc:
            if audited:
                audit_query(svc, request, identity, found, params, error=str(exc))
            raise
        if audited:
            audit_query(svc, request, identity, found, params, rows=len(result))
        return result

    try:
        try:
            params = await _params(request)
        except StewardError as exc:
            if audited:
                await run_in_threadpool(audit_query, services(request), request,
                                        identity, entity, params, error=str(exc))
            raise
        result = await run_in_threadpool(execute, services(request))
    except Forbidden:
        raise  # HTTP 403 with the permission, as every refusal
    except StewardError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    if single:
        if not result:
            return json_response({"error": "No information is known about that node"}, 404)
        return json_response(result[0])
    return json_response(result)


def _root_call(svc: Services, params: dict[str, Any], guard: _Guard
               ) -> tuple[str | None, Any]:
    parsed = _parse_query(params.get("query"))
    if parsed is None or parsed == "":
        raise QueryInputError("missing query (PQL or AST): pass query=...")
    if isinstance(parsed, str):
        parsed = parse_pql(parsed)  # the store would parse it; this names the entities
    guard(parsed, None)
    return _entity_of(parsed), svc.store.query(
        parsed, limit=params["limit"], offset=params["offset"], order_by=params["order_by"])


@router.get("", summary="PQL or AST query", response_model=list[JsonObject])
@router.post("", summary="PQL or AST query", response_model=list[JsonObject])
async def root(
    request: Request,
    identity: QueryPermission,
    query: Annotated[str | None, Query(description="PQL, or an AST as JSON")] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    order_by: Annotated[str | None, Query(description="JSON array")] = None,
) -> Response:
    return await run(request, identity, _root_call)


def _entity_call(entity: str) -> _Call:
    def call(svc: Services, params: dict[str, Any], guard: _Guard) -> tuple[str | None, Any]:
        parsed = _parse_query(params.get("query"))
        if isinstance(parsed, str) and parsed.strip():
            raise QueryInputError(
                f"/pdb/query/v4/{entity} takes an AST query (a JSON array); "
                "send PQL to /pdb/query/v4"
            )
        guard(parsed, entity)
        return entity, svc.store.query_entity(
            entity, parsed or None, limit=params["limit"], offset=params["offset"],
            order_by=params["order_by"])

    return call


@router.get("/{entity}", summary="AST query of one entity", response_model=list[JsonObject])
@router.post("/{entity}", summary="AST query of one entity",
             response_model=list[JsonObject])
async def entity_query(
    request: Request,
    entity: str,
    identity: QueryPermission,
    query: Annotated[str | None, Query(description="AST as JSON")] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    order_by: Annotated[str | None, Query(description="JSON array")] = None,
) -> Response:
    return await run(request, identity, _entity_call(entity), entity=entity)


def _named_call(entity: str, name: str) -> _Call:
    field = _SINGLE.get(entity) or _FILTER.get(entity)

    def call(svc: Services, params: dict[str, Any], guard: _Guard) -> tuple[str | None, Any]:
        if field is None:
            raise QueryInputError(f"/pdb/query/v4/{entity}/NAME is not supported")
        ast: list[Any] = ["=", field, name]
        user = _parse_query(params.get("query"))
        if user:
            ast = ["and", ast, user]
        guard(ast, entity)
        return entity, svc.store.query_entity(
            entity, ast, limit=params["limit"], offset=params["offset"],
            order_by=params["order_by"])

    return call


@router.get("/{entity}/{name}", summary="One node's object, or an entity filtered by name",
            response_model=JsonObject | list[JsonObject])
async def named(request: Request, entity: str, name: str,
                identity: QueryPermission) -> Response:
    return await run(request, identity, _named_call(entity, name), single=entity in _SINGLE,
                     entity=entity)
