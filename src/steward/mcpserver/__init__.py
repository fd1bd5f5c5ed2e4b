"""The MCP interface: Steward's tools for AI agents over stdio and streamable HTTP.

See docs/agents.md. :func:`build_mcp` makes the server; :mod:`steward.mcpserver.http` mounts
it on the HTTP server at ``/mcp``; :mod:`steward.mcpserver.stdio` serves ``steward mcp``.
"""

from steward.mcpserver.context import Rollouts
from steward.mcpserver.permissions import TOOL_PERMISSIONS, visible_tools
from steward.mcpserver.server import build_mcp

__all__ = ["TOOL_PERMISSIONS", "Rollouts", "build_mcp", "visible_tools"]
