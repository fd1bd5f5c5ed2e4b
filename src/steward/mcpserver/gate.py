"""The permission gate in front of every tool: tool lists filtered, calls bounded and refused.

The gate is SDK middleware, so it sees every ``tools/list`` and ``tools/call`` before a tool
does. A list shows only the tools the caller's roles allow (no identity: no tools). A call is
refused when its arguments exceed the bounds below (over stdio as over HTTP, where the request
body limit applies too), or, audited, when the caller holds the tool's permission in no
environment; the tool then asks the pipeline, which checks the permission again in the
environment concerned.
"""

from __future__ import annotations

from typing import Any, Final

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp_types import CallToolResult, ListToolsResult, TextContent
from starlette.concurrency import run_in_threadpool

from steward.errors import StewardError
from steward.mcpserver.context import ToolContext
from steward.mcpserver.permissions import TOOL_PERMISSIONS, held_permissions, visible_tools

#: Bounds on every tool call's arguments: no argument may make a tool hold or parse an
#: unbounded value.
MAX_ARGUMENT_CHARS: Final = 1024 * 1024
MAX_ARGUMENT_ITEMS: Final = 10_000
MAX_ARGUMENT_DEPTH: Final = 32
#: Characters of all the string arguments (and keys) of one call together.
MAX_ARGUMENTS_TOTAL: Final = 4 * 1024 * 1024


def argument_problem(tool: str, arguments: Any) -> str | None:
    """Why ``arguments`` exceed the bounds (naming the argument and the limit), or None."""
    pending: list[tuple[str, Any, int]] = [("", arguments, 0)]
    total = 0
    while pending:
        where, value, depth = pending.pop()
        name = where or "arguments"
        if depth > MAX_ARGUMENT_DEPTH:
            return (f"tool {tool}: argument {name} is nested more than {MAX_ARGUMENT_DEPTH} "
                    "levels deep")
        if isinstance(value, str):
            if "\x00" in value:
                return (f"tool {tool}: argument {name} contains a NUL character (U+0000), "
                        "which Steward does not accept in any value")
            if len(value) > MAX_ARGUMENT_CHARS:
                return (f"tool {tool}: argument {name} is {len(value)} characters; the limit "
                        f"is {MAX_ARGUMENT_CHARS}")
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(str(key)) for key in value)
        if total > MAX_ARGUMENTS_TOTAL:
            return (f"tool {tool}: the arguments are more than {MAX_ARGUMENTS_TOTAL} "
                    "characters together")
        if isinstance(value, dict | list) and len(value) > MAX_ARGUMENT_ITEMS:
            return (f"tool {tool}: argument {name} has {len(value)} entries; the limit is "
                    f"{MAX_ARGUMENT_ITEMS}")
        if isinstance(value, dict):
            pending.extend((f"{where}.{key}" if where else str(key), item, depth + 1)
                           for key, item in value.items())
        elif isinstance(value, list):
            pending.extend((f"{name}[{index}]", item, depth + 1)
                           for index, item in enumerate(value))
    return None


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def permission_gate(context: ToolContext) -> ServerMiddleware[Any]:
    """The middleware filtering and refusing for the server of ``context``."""

    async def gate(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            return await _filtered(context, ctx, await call_next(ctx))
        if ctx.method == "tools/call":
            name = str((ctx.params or {}).get("name", ""))
            problem = argument_problem(name, (ctx.params or {}).get("arguments"))
            if problem is not None:
                return _error(problem)
            permission = TOOL_PERMISSIONS.get(name)
            if permission is not None:
                refusal = await _refusal(context, ctx.request, name, permission)
                if refusal is not None:
                    return _error(refusal)
        return await call_next(ctx)

    return gate


async def _filtered(context: ToolContext, ctx: ServerRequestContext[Any, Any],
                    result: HandlerResult) -> HandlerResult:
    """``result`` of tools/list with only the tools the caller is shown."""
    try:
        found = await context.caller(ctx.request)
        shown = set(await run_in_threadpool(visible_tools, found.pipeline, found.identity))
    except StewardError:
        shown = set()  # fail closed: no identity, no tools
    if isinstance(result, ListToolsResult):
        result.tools = [t for t in result.tools if t.name in shown]
    elif isinstance(result, dict):
        result["tools"] = [t for t in result.get("tools", []) if t.get("name") in shown]
    return result


async def _refusal(context: ToolContext, request: Any, name: str,
                   permission: str) -> str | None:
    """Why the caller may not call ``name`` at all (audited), or None."""
    try:
        found = await context.caller(request)
    except StewardError as exc:
        return str(exc)

    def check() -> str | None:
        if permission in held_permissions(found.pipeline, found.identity):
            return None
        reason = (f"{found.identity.label} lacks permission {permission} (no role grants "
                  f"it in any environment): tool {name} is not among its tools")
        found.pipeline.services.audit.record(
            actor=found.identity, action=f"mcp.{name}", target=None, outcome="denied",
            reason=reason, parameters={"permission": permission})
        return reason

    return await run_in_threadpool(check)
