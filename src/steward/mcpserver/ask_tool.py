"""The MCP ``ask`` tool: the Infra Assistant for agents, on the same code as ``steward ask``.

A question becomes a PQL query written by the model configured for Steward (not by the
calling agent's model), checked by Steward's parser, authorised for every entity it names with
the caller's roles, and run read-only with a row limit — :func:`steward.assistant.answer`,
as ``POST /api/v1/ask`` calls it. The rows and the summary (model text written from them)
come back inside the node-data envelope; the query and the attempts beside it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from steward.assistant.config import AssistantConfigError
from steward.assistant.core import DEFAULT_LIMIT, MAX_LIMIT, AskError, answer
from steward.errors import StewardError
from steward.mcpserver.context import caller, tool_context
from steward.mcpserver.data import from_nodes

#: Read-only, but not idempotent: the model may write another query for the same question.
_ASK: Final = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                              idempotent_hint=False, open_world_hint=False)


def register(server: MCPServer) -> None:
    server.add_tool(ask, title="Ask about the fleet in plain language", annotations=_ASK)


async def ask(
    ctx: Context,
    question: Annotated[str, Field(min_length=1, max_length=4000, description=(
        "e.g. which web nodes failed their last run?"))],
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Most rows returned")
                     ] = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Answer a question about the fleet: Steward's assistant writes a PQL query, Steward
    checks and runs it read-only, and you get the query, the rows and a short summary.
    Prefer the query tool when you can write the PQL yourself."""
    try:
        found = await caller(ctx)
        chosen, output = await run_in_threadpool(tool_context(ctx).model())
        pipeline = found.pipeline
        result = await run_in_threadpool(
            lambda: answer(question, identity=found.identity, services=pipeline.services,
                           model=chosen, authorizer=pipeline.services.authorize,
                           limit=limit, output=output))
    except AskError as exc:
        tried = "; ".join(f"{a.query or '(no query)'} -> {a.error}" for a in exc.attempts)
        raise ToolError(f"{exc}" + (f" (attempts: {tried})" if tried else "")) from None
    except (AssistantConfigError, StewardError) as exc:
        raise ToolError(str(exc)) from None
    document = result.to_json()
    return from_nodes({"rows": document.pop("rows"), "summary": document.pop("summary")},
                      **document)
