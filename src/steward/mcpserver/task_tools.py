"""The task tools of the MCP server: ``list_tasks``, ``run_task`` and ``get_job``.

They call :class:`steward.tasks.service.TaskService`, like ``POST /api/v1/tasks/…``,
so the rules (RBAC per task and environment, noop refusal, parameters checked before any job
exists, sensitive values never stored or returned) live in one place. What a task printed on
a node comes back inside the ``untrusted_data_from_nodes`` envelope: a task's output is
written by whatever runs on the node, never an instruction. How the server reaches tasks is
its :class:`steward.mcpserver.context.TaskAccess`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from steward.access.principal import Principal
from steward.errors import StewardError
from steward.mcpserver.context import (
    DESTRUCTIVE,
    READ,
    Caller,
    TaskToolError,
    call,
    caller,
    tool_context,
)
from steward.mcpserver.data import from_nodes
from steward.tasks.definitions import TaskNotFound
from steward.tasks.service import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, TaskService

#: Where the server keeps its TaskService (``AppState.extras``), set by the tasks extension.
TASK_SERVICE: Final = "task_service"
#: Longest a run_task call waits for its job before answering (then poll get_job).
MAX_WAIT: Final = 120.0
DEFAULT_WAIT: Final = 30.0


def register(server: MCPServer) -> None:
    server.add_tool(list_tasks, title="List tasks", annotations=READ)
    # A task may restart a service: destructive, and it acts on the world outside Steward.
    server.add_tool(run_task, title="Run a task on nodes", annotations=DESTRUCTIVE)
    server.add_tool(get_job, title="Show a task job", annotations=READ)


def job_view(job: dict[str, Any]) -> dict[str, Any]:
    """A job as a tool returns it: what ran where, with the nodes' output as node data."""
    results = job.get("results", [])
    return from_nodes(results, **{k: v for k, v in job.items() if k != "results"})


async def list_tasks(
    ctx: Context,
    environment: Annotated[str | None, Field(
        description="The environment whose tasks/ to read (default: production, or the "
                    "first one)")] = None,
) -> dict[str, Any]:
    """The pre-approved tasks you can ask nodes to run: description, parameters (types,
    required, sensitive), whether each is read-only and supports noop."""

    def run(c: Caller) -> dict[str, Any]:
        service = tool_context(ctx).task_access().current()
        specs = service.tasks(c.identity, environment)
        return {"tasks": [spec.to_json() for spec in specs]}

    return await call(ctx, run)


async def run_task(
    ctx: Context,
    name: Annotated[str, Field(description="A task name from list_tasks, e.g. "
                                           "service_status")],
    nodes: Annotated[str, Field(min_length=1, max_length=4000, description=(
        "PQL selecting the nodes, e.g. nodes[certname] { certname = \"web1\" }, or a "
        "bare filter such as certname ~ \"^web\""))],
    params: Annotated[dict[str, Any] | None, Field(
        description="The task's parameters (see list_tasks)")] = None,
    noop: Annotated[bool, Field(description="Only say what it would do (tasks that "
                                            "support noop)")] = False,
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description=(
        "Most nodes running it at once"))] = DEFAULT_CONCURRENCY,
    wait: Annotated[float, Field(ge=0, le=MAX_WAIT, description=(
        "Seconds to wait for the job to finish before answering; then poll get_job"))
                    ] = DEFAULT_WAIT,
) -> dict[str, Any]:
    """Run a pre-approved task on the nodes a query selects and return the job with each
    node's result. Read-only tasks need task:run_readonly; others need task:run in every
    environment the nodes are in. Parameters are checked before anything runs."""
    try:
        found = await caller(ctx)
        tasks = tool_context(ctx).task_access()
        service = tasks.current()
        values = dict(params or {})
        if not tasks.holds_secrets:
            given = sorted(set(values) & await run_in_threadpool(_sensitive_names,
                                                                  service, name))
            if given:
                raise TaskToolError(
                    f"task {name!r}: sensitive parameter(s) {', '.join(given)} cannot be "
                    "passed through `steward mcp` over stdio: their values are kept only "
                    "in the memory of the process that starts the job, and nodes take "
                    "their parts from the server. Use the server's /mcp endpoint or "
                    "`steward task run` instead")
        job = await run_in_threadpool(service.run, found.identity, name, nodes, values,
                                      noop=noop, concurrency=concurrency)
        signals = tasks.signals()
        if signals is not None:
            for result in job["results"]:
                if result["state"] == "pending":
                    signals.wake(str(result["certname"]))
        job = await _wait(service, found.identity, str(job["id"]), wait)
    except StewardError as exc:
        raise ToolError(str(exc)) from None
    return job_view(job)


async def get_job(
    ctx: Context,
    job_id: Annotated[str, Field(description="As run_task returned it, e.g. "
                                             "job-20261124093000-ab12cd34")],
) -> dict[str, Any]:
    """A task job: its state, per-state counts and each node's result and output."""

    def run(c: Caller) -> dict[str, Any]:
        return job_view(tool_context(ctx).task_access().current().job(c.identity, job_id))

    return await call(ctx, run)


def _sensitive_names(service: TaskService, name: str) -> frozenset[str]:
    names: set[str] = set()
    for environment in service.pipeline.environments:
        try:
            names |= service.catalog.get(environment, name).sensitive()
        except TaskNotFound:
            continue
    return frozenset(names)


async def _wait(service: TaskService, identity: Principal, job_id: str,
                timeout: float) -> dict[str, Any]:
    """The job once finished, or as it is after ``timeout`` (without holding a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = await run_in_threadpool(service.job, identity, job_id)
        if job["state"] == "finished" or time.monotonic() >= deadline:
            return job
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
