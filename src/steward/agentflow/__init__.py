"""The reference multi-agent workflow: planner, validator, executor and debugger agents.

Each agent is a pydantic-ai agent whose tools are the Steward MCP server's tools, reached
over its own streamable-HTTP session with its own identity's token: what an agent may do is
decided by Steward on every call, never by its prompt.
"""

from steward.agentflow.flow import (
    EXIT_FAILED,
    EXIT_NEEDS_APPROVAL,
    AgentFlowError,
    Endpoint,
    FlowResult,
    McpSession,
    Models,
    Step,
    Tokens,
    Transcript,
    resume,
    run,
)

__all__ = ["EXIT_FAILED", "EXIT_NEEDS_APPROVAL", "AgentFlowError", "Endpoint", "FlowResult",
           "McpSession", "Models", "Step", "Tokens", "Transcript", "resume", "run"]
