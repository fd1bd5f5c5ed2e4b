"""``steward mcp``: the MCP server over stdio (see docs/agents.md).

Registered on the main typer app by :func:`register`; the server stack is imported inside
the command so ``steward --help`` stays quick.
"""

from __future__ import annotations

import os

import typer

from steward.cli.settings import settings, with_data_dir


@with_data_dir
def mcp(ctx: typer.Context) -> None:
    """Serve the MCP tools over stdin/stdout as the identity whose token is in STEWARD_TOKEN.

    For local MCP clients (Claude Desktop, Claude Code, Cursor); remote clients use the
    server's /mcp endpoint with a bearer token instead.
    """
    from steward.mcpserver.stdio import serve_stdio

    serve_stdio(settings(ctx).data_dir, os.environ.get("STEWARD_TOKEN"))


def register(app: typer.Typer) -> None:
    """Add ``steward mcp`` to the main CLI."""
    app.command(name="mcp")(mcp)
