"""``steward mcp`` over stdio, as Claude Desktop or Cursor launch it: a real subprocess."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from steward.pipeline.schema import migrate
from steward.pipeline.service import Pipeline
from steward.server.config import load_config
from steward.server.init import init_data_dir
from steward.server.services import build_services
from tests.e2e.harness import database_url, free_port, steward, steward_env
from tests.mcpserver.conftest import write_repo


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Path, str, str]]:
    tmp = tmp_path_factory.mktemp(f"mcp-stdio-{request.param}")
    with database_url(str(request.param), tmp, "mcpstdio") as url:
        init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                      port=free_port())
        services = build_services(load_config(tmp / "data"))
        try:
            migrate(services.engine)
            pipeline = Pipeline(services)
            planner = services.tokens.create("agent", "planner-stdio", created_by="t")["token"]
            pipeline.rbac.grant("agent:planner-stdio", "planner")
            pipeline.rbac.grant("agent:planner-stdio", "debugger")  # reads jobs, approves nothing
            join = services.tokens.create("join", "j", created_by="t")["token"]
        finally:
            services.close()
        yield tmp / "data", str(planner), str(join)


def test_stdio_serves_the_callers_tools(data: tuple[Path, str, str]) -> None:
    data_dir, planner, _join = data
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "steward", "mcp", "--data-dir", str(data_dir)],
        env=steward_env(STEWARD_TOKEN=planner))

    async def run() -> tuple[set[str], bool, bool, dict[str, str]]:
        async with Client(params) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            listing = await client.call_tool("list_desired_state", {"environment": "staging"})
            approve = await client.call_tool("approve_change", {"change_id": "chg-1"})
            # The pipeline's and the tasks' own entities are queryable over stdio too.
            queried = {}
            for entity in ("changes", "deployments", "jobs", "job_results"):
                answer = await client.call_tool("query", {"query": f"{entity} {{}}"})
                queried[entity] = str(answer.content[0]) if answer.is_error else "ok"
            return tools, bool(listing.is_error), bool(approve.is_error), queried

    tools, listing_failed, approve_failed, queried = asyncio.run(run())
    assert "propose_change" in tools
    assert "approve_change" not in tools
    assert not listing_failed
    assert approve_failed
    assert queried == dict.fromkeys(("changes", "deployments", "jobs", "job_results"), "ok")


def test_stdio_refuses_missing_and_non_principal_tokens(data: tuple[Path, str, str]) -> None:
    data_dir, _planner, join = data
    missing = steward("mcp", "--data-dir", str(data_dir), stdin="")
    assert missing.returncode != 0
    assert "STEWARD_TOKEN" in missing.stderr
    assert "Traceback" not in missing.stderr
    wrong = steward("mcp", "--data-dir", str(data_dir), stdin="",
                    env=steward_env(STEWARD_TOKEN=join))
    assert wrong.returncode != 0
    assert "join credentials cannot use the MCP server" in wrong.stderr
    assert join not in wrong.stderr
