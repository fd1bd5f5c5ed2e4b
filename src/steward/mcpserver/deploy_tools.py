"""The tools that act on nodes through the pipeline: ``deploy_change`` and ``rollback_change``.

``deploy_change`` merges an approved change and starts its rollout in the background
(:class:`steward.mcpserver.context.Rollouts`), as the REST route does, and answers at once;
``rollback_change`` proposes the reverting change, deployed like any other.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from steward.errors import StewardError
from steward.mcpserver.context import DESTRUCTIVE, Caller, call, caller, tool_context
from steward.pipeline.deploy import Strategy


def register(server: MCPServer) -> None:
    server.add_tool(deploy_change, title="Deploy an approved change", annotations=DESTRUCTIVE)
    server.add_tool(rollback_change, title="Roll a change back", annotations=DESTRUCTIVE)


async def deploy_change(
    ctx: Context,
    change_id: Annotated[str, Field(description="An approved change, e.g. chg-3")],
    head: Annotated[str, Field(min_length=40, max_length=64, description=(
        "The head commit the change was approved at (get_change: head)"))],
    digest: Annotated[str, Field(min_length=1, max_length=80, description=(
        "The impact digest it was approved at (get_change: impact_digest)"))],
    strategy: Annotated[dict[str, Any] | None, Field(
        description="canary, batch_size (5 or '20%'), max_failures, node_timeout, "
                    "auto_rollback")] = None,
) -> dict[str, Any]:
    """Merge the approved change into its environment and roll it out in batches (canary
    first). head and digest must be the ones it was approved at, or nothing is deployed.
    Returns at once; poll get_deployment for progress."""
    try:
        found = await caller(ctx)
        plan = Strategy.from_json(strategy)
        deployment = await run_in_threadpool(functools.partial(
            found.pipeline.start_deploy, found.identity, change_id, plan, head=head,
            digest=digest))
        tool_context(ctx).rollouts.start(found.pipeline, deployment.id,
                                         found.pipeline.actor(found.identity))
    except StewardError as exc:
        raise ToolError(str(exc)) from None
    return dict(deployment.to_json())


async def rollback_change(
    ctx: Context,
    change_id: Annotated[str, Field(description="A deploying, deployed or failed change")],
) -> dict[str, Any]:
    """Propose the reverting change (analysed, with your fast-path approval when the rules
    allow it). It is deployed with deploy_change like any change."""

    def run(c: Caller) -> dict[str, Any]:
        return c.pipeline.rollback(c.identity, change_id).to_json()

    return await call(ctx, run)
