"""What every MCP tool runs with: the server's pipeline, the caller, rollouts, tasks, a model.

:func:`steward.mcpserver.server.build_mcp` makes a :class:`StewardMCP`, the SDK's server
carrying a :class:`ToolContext`; the tools are plain module-level functions (one module per
concept) that find it through the SDK's ``Context`` (:func:`tool_context`), so they hold no
closure over the server and each module registers its own. :func:`call` is how a tool runs:
it resolves the caller from the request's access token, runs the tool's body in a thread
(the pipeline and the store are synchronous) and turns a refusal into the tool's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from steward.access.principal import Principal
from steward.errors import StewardError
from steward.mcpserver.auth import IdentityResolver, request_access_token
from steward.pipeline.deploy import ServerNodeRunner
from steward.pipeline.service import Pipeline
from steward.server.runs import RunSignals
from steward.tasks.service import TaskService

T = TypeVar("T")

#: Gives the model to answer with and its output mode; raises AssistantConfigError (saying
#: how to configure one) when there is none.
ModelProvider = Callable[[], tuple[Any, str]]

#: Reads Steward's state, changes nothing.
READ: Final = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                              idempotent_hint=True, open_world_hint=False)
#: Records something in Steward (a change, a verdict, an approval); no node is touched.
WRITE: Final = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                               idempotent_hint=False, open_world_hint=False)
#: Acts on nodes (a rollout, a task): destructive, and outside Steward.
DESTRUCTIVE: Final = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                     idempotent_hint=False, open_world_hint=True)


class Rollouts:
    """Runs the rollouts ``deploy_change`` starts, in the background, as the REST route does.

    ``signals`` gives the run-now signals of the process (the server's, or a stdio process's
    own: run requests are rows, so the server's long polls see them); ``tasks`` is where the
    running rollouts are kept (the server cancels them at shutdown, stdio waits for them).
    """

    def __init__(self, signals: Callable[[], RunSignals | None],
                 tasks: Callable[[], set[asyncio.Task[Any]]]) -> None:
        self._signals = signals
        self._tasks = tasks

    def start(self, pipeline: Pipeline, deployment_id: str, actor: Principal) -> None:
        signals = self._signals()
        if signals is None:
            raise StewardError("this MCP server cannot run rollouts (no run-now signals)")
        runner = ServerNodeRunner(signals, pipeline.services.engine)
        tasks = self._tasks()
        task = asyncio.create_task(pipeline.run_deploy(deployment_id, runner, actor),
                                   name=f"deploy-{deployment_id}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class TaskToolError(StewardError):
    """A task tool cannot serve this call here (e.g. sensitive values over stdio)."""


@dataclass(frozen=True)
class TaskAccess:
    """How the MCP server reaches tasks in its process.

    ``service`` gives the process's :class:`TaskService` (None: no change pipeline);
    ``signals`` wakes the selected nodes' long polls at once. ``holds_secrets`` is False for
    ``steward mcp`` over stdio: the values of sensitive parameters are kept only in the memory
    of the process that started the job, and the nodes take their parts from the *server*
    process, which would not have them — so such a run is refused up front instead of failing
    on every node.
    """

    service: Callable[[], TaskService | None]
    signals: Callable[[], RunSignals | None]
    holds_secrets: bool = True

    def current(self) -> TaskService:
        found = self.service()
        if found is None:
            raise TaskToolError("tasks need the change pipeline: the server's repository is a "
                                "plain directory, not desired.git")
        return found


@dataclass(frozen=True)
class Caller:
    """Who calls a tool, the pipeline it acts on and the HTTP request (for audit entries)."""

    pipeline: Pipeline
    identity: Principal
    request: Request


def _stdio_request() -> Request:
    """A stand-in HTTP request for audit entries of calls that came over stdio."""
    return Request({"type": "http", "method": "POST", "path": "/mcp/stdio", "headers": [],
                    "query_string": b"", "scheme": "mcp", "server": None, "client": None,
                    "root_path": ""})


@dataclass(frozen=True)
class ToolContext:
    """The server's dependencies, looked up per call (the server builds its pipeline at
    start-up). ``tasks`` and ``assistant`` are None when those tools are not served."""

    pipeline: Callable[[], Pipeline | None]
    identity: IdentityResolver
    rollouts: Rollouts
    tasks: TaskAccess | None = None
    assistant: ModelProvider | None = None

    def current_pipeline(self) -> Pipeline:
        found = self.pipeline()
        if found is None:
            raise StewardError("the change pipeline is not available: the server's repository "
                               "is a plain directory, not desired.git")
        return found

    async def caller(self, request: Any) -> Caller:
        """The caller of the MCP message ``request`` came with (an HTTP request, or none)."""
        access = request_access_token(request)
        pipeline = self.current_pipeline()
        who = await run_in_threadpool(self.identity, access)
        return Caller(pipeline, who, request if isinstance(request, Request) else _stdio_request())

    def task_access(self) -> TaskAccess:
        if self.tasks is None:
            raise TaskToolError("this MCP server does not serve tasks")
        return self.tasks

    def model(self) -> ModelProvider:
        if self.assistant is None:
            raise StewardError("this MCP server has no assistant model")
        return self.assistant


class StewardMCP(MCPServer[Any]):
    """The SDK's server with the :class:`ToolContext` Steward's tools run in."""

    def __init__(self, context: ToolContext, **settings: Any) -> None:
        super().__init__(**settings)
        self.context = context


def tool_context(ctx: Context) -> ToolContext:
    """The context of the server a tool call arrived at."""
    server = ctx.mcp_server
    if not isinstance(server, StewardMCP):
        raise ToolError("this tool needs Steward's MCP server (steward.mcpserver.build_mcp)")
    return server.context


async def caller(ctx: Context) -> Caller:
    """The caller of a tool call (raises StewardError: no identity, no pipeline)."""
    return await tool_context(ctx).caller(ctx.request_context.request)


async def call(ctx: Context, fn: Callable[[Caller], T]) -> T:
    """Run a tool's body for its caller in a thread; a StewardError becomes the tool's error."""
    try:
        found = await caller(ctx)
        return await run_in_threadpool(fn, found)
    except StewardError as exc:
        raise ToolError(str(exc)) from None
