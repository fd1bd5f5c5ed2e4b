"""The query tools: ``query`` (PQL against the state store) and ``describe_data``.

``query`` runs on the same store, with the same entity permissions and the same audit of
agents' queries as the REST query endpoint (:func:`steward.server.pdb.audit_query`); the rows
are node data and come back in the ``untrusted_data_from_nodes`` envelope.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from steward.access.authorize import ENTITY_PERMISSIONS, Forbidden, entity_permissions
from steward.catalog.types import TYPES
from steward.errors import StewardError
from steward.mcpserver.context import READ, Caller, call
from steward.mcpserver.data import from_nodes
from steward.query.examples import REFERENCE_EXAMPLES
from steward.query.limits import loads_ast
from steward.query.parser import parse_pql
from steward.server.pdb import AUDITED_KINDS, audit_query

DEFAULT_ROWS: Final = 100
#: Most rows (or per-node entries) any tool returns.
MAX_ROWS: Final = 1000


def register(server: MCPServer) -> None:
    server.add_tool(query, title="Query the fleet (PQL)", annotations=READ)
    server.add_tool(describe_data, title="Describe the queryable data", annotations=READ)


async def query(
    ctx: Context,
    query: Annotated[str, Field(description="A PQL query, e.g. nodes[certname] "
                                            "{ latest_report_status = \"failed\" }, or "
                                            "an AST as a JSON array")],
    limit: Annotated[int, Field(ge=1, le=MAX_ROWS,
                                description="Most rows returned")] = DEFAULT_ROWS,
) -> dict[str, Any]:
    """Run a read-only PQL query against the state store (nodes, facts, resources,
    reports, events, changes, deployments, audit). Call describe_data first."""

    def run(c: Caller) -> dict[str, Any]:
        params: dict[str, Any] = {"query": query}
        audited = c.identity.credential in AUDITED_KINDS
        svc = c.pipeline.services
        c.pipeline.authorise(c.identity, "query", None, action="query", target=None)
        entity: str | None = None
        try:
            text = query.strip()
            parsed: Any = loads_ast(text) if text.startswith("[") else parse_pql(text)
            entity = _entity_of(parsed)
            for needed_by, permission in entity_permissions(parsed):
                c.pipeline.authorise(c.identity, permission, None, action="query",
                                     target=needed_by)
            rows = svc.store.query(parsed, limit=limit + 1)
        except json.JSONDecodeError as exc:
            error = f"the query is not valid JSON: {exc.msg} at column {exc.colno}"
            if audited:
                audit_query(svc, c.request, c.identity, entity, params, error=error)
            raise StewardError(error) from None
        except StewardError as exc:
            if audited and not isinstance(exc, Forbidden):  # audited already
                audit_query(svc, c.request, c.identity, entity, params, error=str(exc))
            raise
        truncated = len(rows) > limit
        rows = rows[:limit]
        if audited:
            audit_query(svc, c.request, c.identity, entity, params, rows=len(rows))
        return from_nodes(rows, entity=entity, rows=len(rows), limit=limit,
                          truncated=truncated)

    return await call(ctx, run)


async def describe_data(ctx: Context) -> dict[str, Any]:
    """Entities and their fields, the fact paths and resource types known in the fleet,
    Steward's resource types and example PQL queries: what you need to write a query."""

    def run(c: Caller) -> dict[str, Any]:
        c.pipeline.authorise(c.identity, "query", None, action="query.describe",
                             target=None)
        store = c.pipeline.services.store
        fact_paths = store.query("fact_paths[path, type] { order by path }",
                                 limit=MAX_ROWS)
        fleet_types = store.query("resources[type, count()] { group by type }",
                                  limit=MAX_ROWS)
        entities = {
            name: {"fields": sorted(e.fields),
                   "dotted": [f"{d}.<path>" for d in sorted(e.dotted)],
                   "default_fields": list(e.default_fields),
                   **({"needs_permission": ENTITY_PERMISSIONS[name]}
                      if name in ENTITY_PERMISSIONS else {})}
            for name, e in store.entities.items()
        }
        types = {name: {"doc": t.doc, "parameters": sorted(p.name for p in t.params)}
                 for name, t in sorted(TYPES.items())}
        return {
            "entities": entities,
            "resource_types": types,
            "examples": list(REFERENCE_EXAMPLES),
            "syntax": "<entity>[field, ...] { <filter> [group by ...] [order by ...] "
                      "[limit N] }; operators = != < <= > >= ~ (regex) and or not, "
                      "'in' subqueries; see the resource steward://docs/query",
            **from_nodes({"fact_paths": fact_paths,
                          "resource_types_in_fleet": fleet_types}),
        }

    return await call(ctx, run)


def _entity_of(ast: Any) -> str | None:
    if isinstance(ast, list) and len(ast) > 1 and ast[0] == "from" and isinstance(ast[1], str):
        return ast[1]
    return None
