"""The MCP server mounted on Steward's HTTP server at ``/mcp`` (streamable HTTP).

Bearer tokens are Steward tokens, verified by :class:`StewardTokenVerifier` on every request
through the SDK's own bearer middleware; a request without a valid principal token is 401
with ``WWW-Authenticate`` pointing at the protected-resource metadata, which the SDK serves at
``/.well-known/oauth-protected-resource/mcp`` (RFC 9728). Steward is its own token issuer:
tokens are minted with ``steward identity create`` (or the identities API), not by OAuth.

Plugged in like the pipeline, as an :class:`steward.server.app.AppExtension`: the SDK's
Starlette routes are added to the application, and its session manager runs for as long as
the application does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.routing import Route

from steward.assistant.config import MODEL_EXTRA, resolve_model
from steward.mcpserver.auth import StewardTokenVerifier, identity_from_access_token
from steward.mcpserver.context import Rollouts, TaskAccess
from steward.mcpserver.server import build_mcp
from steward.mcpserver.task_tools import TASK_SERVICE
from steward.pipeline.service import Pipeline
from steward.server.app import AppState
from steward.server.config import ServerConfig
from steward.tasks.service import TaskService

MCP_PATH = "/mcp"


class McpExtension:
    """Serves :func:`build_mcp` at ``/mcp`` over the application's pipeline and services."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._state: AppState | None = None
        self._stack = contextlib.AsyncExitStack()
        self.server: MCPServer = build_mcp(
            self._pipeline, identity_from_access_token,
            rollouts=Rollouts(self._signals, self._tasks),
            tasks=TaskAccess(self._task_service, self._signals),
            assistant=self._assistant_model,
            auth=AuthSettings(issuer_url=config.server_url,  # type: ignore[arg-type]
                              resource_server_url=config.server_url + MCP_PATH,  # type: ignore[arg-type]
                              validate_token_resource=False),
            token_verifier=StewardTokenVerifier(self._services))

    def _live(self) -> AppState:
        if self._state is None:
            raise RuntimeError("the MCP server is used before the application started")
        return self._state

    def _pipeline(self) -> Pipeline | None:
        found = self._live().extras.get("pipeline")
        return found if isinstance(found, Pipeline) else None

    def _services(self) -> Any:
        return self._live().services

    def _signals(self) -> Any:
        return self._live().signals

    def _assistant_model(self) -> tuple[Any, str]:
        return resolve_model(self.config.data_dir, self._live().extras.get(MODEL_EXTRA))

    def _task_service(self) -> TaskService | None:
        found = self._live().extras.get(TASK_SERVICE)
        return found if isinstance(found, TaskService) else None

    def _tasks(self) -> set[asyncio.Task[Any]]:
        tasks: set[asyncio.Task[Any]] = self._live().extras.setdefault("pipeline_tasks", set())
        return tasks

    def install(self, app: FastAPI) -> None:
        self._state = app.state.steward
        inner = self.server.streamable_http_app(
            streamable_http_path=MCP_PATH, json_response=True, host=self.config.host)
        # The SDK's app carries its own bearer middleware; each of its paths is routed to it
        # whole, so the rest of the application is untouched.
        for route in inner.routes:
            path = getattr(route, "path", None)
            if isinstance(path, str):
                app.router.routes.append(Route(path, endpoint=inner, include_in_schema=False))

    async def startup(self, state: AppState) -> None:
        self._state = state
        await self._stack.enter_async_context(self.server.session_manager.run())

    async def shutdown(self, state: AppState) -> None:
        await self._stack.aclose()
