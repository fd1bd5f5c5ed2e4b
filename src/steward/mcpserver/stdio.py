"""``steward mcp``: the MCP server over stdio, for a local client (Claude Desktop, Cursor...).

stdio has no HTTP request to authenticate, so the identity is the token in ``STEWARD_TOKEN``,
looked up on every call (a revoked token stops working at once) and checked at start-up so a
bad token fails before the client connects. The process opens the data directory's database
like the server does; rollouts started with ``deploy_change`` run in this process (run-now
requests are rows, so the server's long polls see them), and it waits for them to finish
before it exits. Task jobs started with ``run_task`` are rows the server's long polls hand to
the nodes; a task's sensitive parameters are refused here, since only the process that
starts a job holds their values (see :mod:`steward.mcpserver.task_tools`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from steward.access.tokens import AuthenticationError
from steward.assistant.config import resolve_model
from steward.errors import StewardError
from steward.mcpserver.auth import authenticate_principal, token_resolver
from steward.mcpserver.context import Rollouts, TaskAccess
from steward.mcpserver.server import build_mcp
from steward.pipeline.schema import migrate
from steward.pipeline.service import Pipeline
from steward.server.config import load_config
from steward.server.runs import RunSignals
from steward.server.services import build_services
from steward.tasks.service import TaskService

log = logging.getLogger("steward.mcp")


class StdioTokenError(StewardError):
    """``STEWARD_TOKEN`` is missing or not a principal's token."""


def serve_stdio(data_dir: Path, token: str | None) -> None:
    """Serve MCP on stdin/stdout until the client disconnects."""
    if not token:
        raise StdioTokenError("steward mcp needs the caller's token in STEWARD_TOKEN (a user or "
                              "agent token: steward identity create NAME --kind agent --role "
                              "ROLE)")
    services = build_services(load_config(data_dir))
    try:
        try:
            authenticate_principal(services, token)
        except AuthenticationError as exc:
            raise StdioTokenError(f"STEWARD_TOKEN: {exc}") from None
        if services.catalogs.desired is None:
            raise StewardError(f"{services.config.repo_path} is a plain directory: the MCP "
                               "server needs the change pipeline (desired.git)")
        from steward.pipeline import entities as pipeline_entities
        from steward.tasks import entities as task_entities

        migrate(services.engine)
        pipeline_entities.install(services.store)
        task_entities.install(services.store)
        pipeline = Pipeline(services)
        asyncio.run(_serve(pipeline, services.engine, token))
    finally:
        services.close()


async def _serve(pipeline: Pipeline, engine: Any, token: str) -> None:
    tasks: set[asyncio.Task[Any]] = set()
    signals = RunSignals(engine, clock=pipeline.services.clock)
    task_service = TaskService(pipeline)
    server = build_mcp(lambda: pipeline, token_resolver(pipeline.services, token),
                       rollouts=Rollouts(lambda: signals, lambda: tasks),
                       tasks=TaskAccess(lambda: task_service, lambda: signals,
                                        holds_secrets=False),
                       assistant=lambda: resolve_model(pipeline.services.config.data_dir))
    await server.run_stdio_async()
    if tasks:
        print(f"steward mcp: waiting for {len(tasks)} rollout(s) to finish", file=sys.stderr)
        await asyncio.gather(*tasks, return_exceptions=True)
