"""The node tools: ``get_node`` (enrollment, status, latest facts) and ``get_report``.

What nodes reported — facts, logs, resource events — comes back inside the
``untrusted_data_from_nodes`` envelope, secret-looking entries redacted.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from steward.errors import NotFoundError, StewardError
from steward.mcpserver.context import READ, Caller, call
from steward.mcpserver.data import from_nodes


def register(server: MCPServer) -> None:
    server.add_tool(get_node, title="Show one node", annotations=READ)
    server.add_tool(get_report, title="Show one run report", annotations=READ)


async def get_node(
    ctx: Context,
    certname: Annotated[str, Field(description="The node's name")],
) -> dict[str, Any]:
    """A node's enrollment record, store status and latest facts."""

    def run(c: Caller) -> dict[str, Any]:
        c.pipeline.authorise(c.identity, "query", None, action="node.read",
                             target=f"node:{certname}")
        svc = c.pipeline.services
        try:
            record: dict[str, Any] | None = svc.enrollment.get(certname)
        except NotFoundError:
            record = None
        status = svc.store.query_entity("nodes", ["=", "certname", certname], limit=1)
        if record is None and not status:
            raise StewardError(f"no node named {certname!r}")
        enrollment = None
        if record is not None:
            enrollment = {k: record.get(k) for k in (
                "status", "transport", "environment", "approved_at", "approved_by",
                "last_seen_at", "last_run_at", "last_catalog_hash", "last_environment")}
        return from_nodes({"node": status[0] if status else None,
                           "facts": svc.store.latest_facts(certname)},
                          certname=certname, enrollment=enrollment)

    return await call(ctx, run)


async def get_report(
    ctx: Context,
    hash: Annotated[str, Field(description="The report's hash (reports[hash] {...})")],
) -> dict[str, Any]:
    """A run report with its logs, metrics and resource events."""

    def run(c: Caller) -> dict[str, Any]:
        c.pipeline.authorise(c.identity, "report:read", None, action="report.read",
                             target=f"report:{hash}")
        rows = c.pipeline.services.store.query_entity("reports", ["=", "hash", hash],
                                                      limit=1)
        if not rows:
            raise StewardError(f"no report with hash {hash!r}")
        return from_nodes(rows[0], hash=hash)

    return await call(ctx, run)
