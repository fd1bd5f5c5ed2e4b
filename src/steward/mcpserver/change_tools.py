"""The change tools: propose, analyse, read, validate, approve and reject a change.

Each is one call into :class:`steward.pipeline.service.Pipeline`, like the REST routes, so
the permission in the change's environment, the gates, separation of duties and the audit
live there. Approvals and rejections name the head and impact digest reviewed, so a change
that moved on since is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from steward.mcpserver.context import READ, WRITE, Caller, call
from steward.mcpserver.query_tools import MAX_ROWS


def register(server: MCPServer) -> None:
    server.add_tool(propose_change, title="Propose a change", annotations=WRITE)
    server.add_tool(run_impact_analysis, title="Impact analysis of a change", annotations=READ)
    server.add_tool(get_change, title="Show a change", annotations=READ)
    server.add_tool(get_deployment, title="Show a deployment", annotations=READ)
    server.add_tool(record_validation, title="Record a validation verdict", annotations=WRITE)
    server.add_tool(approve_change, title="Approve a change", annotations=WRITE)
    server.add_tool(reject_change, title="Reject a change", annotations=WRITE)


async def propose_change(
    ctx: Context,
    environment: Annotated[str, Field(description="The target environment")],
    title: Annotated[str, Field(min_length=1, max_length=255)],
    message: Annotated[str, Field(description="Why")] = "",
    edits: Annotated[dict[str, str | None] | None, Field(
        description="Path -> new file content; null deletes the file")] = None,
    patch: Annotated[str | None, Field(description="Or a unified diff")] = None,
    base: Annotated[str | None, Field(description="Base commit (default: the tip)")
                    ] = None,
) -> dict[str, Any]:
    """Propose desired-state edits as a change; it is analysed (impact, policies) at once.
    Nothing reaches a node until the change is approved and deployed."""

    def run(c: Caller) -> dict[str, Any]:
        view = c.pipeline.propose(c.identity, environment, edits=edits, patch=patch,
                                  base=base, title=title, message=message)
        return view.to_json()

    return await call(ctx, run)


async def run_impact_analysis(
    ctx: Context,
    change_id: Annotated[str, Field(description="e.g. chg-3")],
    again: Annotated[bool, Field(description="Re-run the analysis instead of "
                                             "returning the latest one")] = False,
    max_nodes: Annotated[int, Field(ge=0, le=MAX_ROWS,
                                    description="Most per-node entries returned")] = 50,
) -> dict[str, Any]:
    """What the change would do on every affected node (resources and properties before
    and after), its risk and the policy verdicts: the stored report of the change's head
    and digest (any reviewer may read it). again re-runs it (needs change:impact)."""

    def run(c: Caller) -> dict[str, Any]:
        policy: dict[str, Any] | None
        if again:
            analysis = c.pipeline.analyse(c.identity, change_id)
            report, policy = analysis.report, analysis.policy
        else:
            report = c.pipeline.impact_report(c.identity, change_id)
            change = c.pipeline.changes.get(change_id)
            policy = (c.pipeline.analyses.latest(change.id, change.impact_digest).policy
                      if change.impact_digest else None)
        nodes = (document := report.to_json()).pop("nodes")
        return {**document,
                "policy": policy, "nodes": nodes[:max_nodes], "nodes_total": len(nodes),
                "nodes_truncated": len(nodes) > max_nodes}

    return await call(ctx, run)


async def get_change(
    ctx: Context,
    change_id: Annotated[str, Field(description="e.g. chg-3")],
) -> dict[str, Any]:
    """A change: state, gates (what it waits for), approvals, history and deployments."""

    def run(c: Caller) -> dict[str, Any]:
        document = c.pipeline.view(c.identity, change_id).to_json()
        document["history"] = [h.to_json() for h in c.pipeline.changes.history(change_id)]
        document["deployments"] = [d.to_json()
                                   for d in c.pipeline.deployments.for_change(change_id)]
        return document

    return await call(ctx, run)


async def get_deployment(
    ctx: Context,
    deployment_id: Annotated[str, Field(description="As deploy_change returned it")],
) -> dict[str, Any]:
    """A deployment's progress: batches, per-node results, state."""

    def run(c: Caller) -> dict[str, Any]:
        deployment = c.pipeline.deployments.get(deployment_id)
        c.pipeline.authorise(c.identity, "desired_state:read", deployment.environment,
                             action="deployment.read", target=f"deployment:{deployment_id}")
        document = deployment.to_json()
        document["change_state"] = c.pipeline.changes.get(deployment.change_id).state
        return document

    return await call(ctx, run)


async def record_validation(
    ctx: Context,
    change_id: Annotated[str, Field(description="e.g. chg-3")],
    verdict: Literal["pass", "fail"],
    evidence: Annotated[str, Field(description="What was checked and found")] = "",
) -> dict[str, Any]:
    """Record a validator's verdict on the change's current impact analysis. A verdict is
    evidence for the approvers, not an approval."""

    def run(c: Caller) -> dict[str, Any]:
        return c.pipeline.record_validation(c.identity, change_id, verdict, evidence)

    return await call(ctx, run)


async def approve_change(
    ctx: Context,
    change_id: Annotated[str, Field(description="e.g. chg-3")],
    head: Annotated[str, Field(min_length=40, max_length=64, description=(
        "The head commit you reviewed (get_change: head)"))],
    digest: Annotated[str, Field(min_length=1, max_length=80, description=(
        "The impact digest you reviewed (get_change: impact_digest)"))],
    comment: Annotated[str | None, Field(max_length=2000, description="Why")] = None,
) -> dict[str, Any]:
    """Approve the head and impact analysis you reviewed; refused if the change has moved
    on since (the error names its current head and digest: review them first). The
    proposer can never approve its own change, and an agent's approval never counts as
    a human's."""

    def run(c: Caller) -> dict[str, Any]:
        return c.pipeline.approve(c.identity, change_id, head=head, digest=digest,
                                  comment=comment).to_json()

    return await call(ctx, run)


async def reject_change(
    ctx: Context,
    change_id: Annotated[str, Field(description="e.g. chg-3")],
    reason: Annotated[str, Field(min_length=1, max_length=2000, description="Why")],
    head: Annotated[str, Field(min_length=40, max_length=64, description=(
        "The head commit you reviewed (get_change: head)"))],
    digest: Annotated[str | None, Field(max_length=80, description=(
        "The impact digest you reviewed (get_change: impact_digest; null if none)"))],
) -> dict[str, Any]:
    """Reject the head and impact analysis you reviewed; refused if the change has moved
    on since (the error names its current head and digest)."""

    def run(c: Caller) -> dict[str, Any]:
        return c.pipeline.reject(c.identity, change_id, reason, head=head,
                                 digest=digest).to_json()

    return await call(ctx, run)
