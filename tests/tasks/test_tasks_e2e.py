"""Tasks end to end: a real server process, real pull agents in sandboxes, real git.

Runs the shipped ``disk_usage`` and ``restart_service --noop`` on two nodes through the
run-wait long poll, reads the stored per-node results back over REST and PQL, and checks the
rules: RBAC per task (debugger: read-only tasks only; planner: none), noop refusal,
parameters validated before any job exists, sensitive values never stored or returned.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from tests.e2e.harness import (
    AgentNode,
    Server,
    call,
    create_identity,
    database_url,
    make_node,
    ok,
    pipeline_server,
    steward_env,
)
from tests.e2e.test_pipeline import _write_repo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "repo" / "tasks"
NODES = ("task1", "task2")
SECRET = "hunter2-do-not-store"


def _repo(repo: Path) -> Path:
    _write_repo(repo)
    shutil.copytree(EXAMPLES, repo / "tasks")
    (repo / "tasks" / "no_noop.yaml").write_text(
        "description: Cannot pretend\nread_only: true\n", encoding="utf-8")
    (repo / "tasks" / "no_noop.sh").write_text("echo ran\n", encoding="utf-8")
    (repo / "tasks" / "greet.yaml").write_text(
        "description: Uses a secret\nread_only: true\nparameters:\n"
        "  token: {type: string, sensitive: true, required: true}\n"
        "  who: {type: string, default: world}\n", encoding="utf-8")
    (repo / "tasks" / "greet.sh").write_text(
        'echo "hello $PT_who, the token is $PT_token"\n', encoding="utf-8")
    return repo


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"tasks-{request.param}")
    with database_url(str(request.param), tmp, "tasks") as url, \
            pipeline_server(tmp, _repo(tmp / "repo"), url) as srv:
        yield srv


def _run(server: Server, token: str, task: str, **body: Any) -> Any:
    return call(server, "POST", f"/api/v1/tasks/{task}/run", token,
                json={"nodes": 'nodes[certname] { certname ~ "^task" }', "wait": 90, **body})


def _jobs(server: Server) -> int:
    return len(server.api("GET", "/pdb/query/v4", params={"query": "jobs[id] {}"}))


def test_tasks_run_on_pull_agents_with_rbac_noop_and_results(server: Server,
                                                             tmp_path: Path) -> None:
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "tasks", "expires_in": 600})["token"]
    nodes: list[AgentNode] = [make_node(tmp_path, name, server) for name in NODES]
    for node in nodes:
        first = node.once(join_token=join)
        assert first.returncode in (0, 2), first.stdout + first.stderr
        node.start("--interval", "1h")
    try:
        executor = create_identity(server, "task-exec", "agent", "executor")
        debugger = create_identity(server, "task-debug", "agent", "debugger")
        planner = create_identity(server, "task-plan", "agent", "planner")

        listed = ok(call(server, "GET", "/api/v1/tasks?environment=staging", executor))
        assert [t["name"] for t in listed["tasks"]] == [
            "disk_usage", "file_info", "greet", "journal", "no_noop", "port_check",
            "restart_service", "service_status"]

        # -- a read-only task on both nodes, results per node ------------------------------
        job = ok(_run(server, executor, "disk_usage", params={"path": "/etc"}))
        assert job["state"] == "finished", (job["results"], [n.read()[-8:] for n in nodes])
        assert job["counts"] == {"succeeded": 2}
        assert [r["certname"] for r in job["results"]] == list(NODES)
        for result in job["results"]:
            assert result["result"]["path"] == "/etc"
            assert result["result"]["total"] > 0
            assert result["exit_code"] == 0

        # -- the remediation task in noop says what it would do -----------------------------
        noop = ok(_run(server, executor, "restart_service", params={"name": "nginx"},
                       noop=True, concurrency=1))
        assert noop["noop"] is True
        assert noop["counts"] == {"succeeded": 2}, noop
        for result in noop["results"]:
            assert result["result"]["noop"] is True
            assert "nginx" in result["result"]["would"]

        # -- the CLI: waits and prints per-node results ------------------------------------
        out = server.cli("task", "run", "disk_usage", "--nodes",
                         'nodes[certname] { certname ~ "^task" }', "--param", "path=/etc")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "task1: succeeded (exit 0)" in out.stdout
        assert "task2: succeeded (exit 0)" in out.stdout
        shown = server.cli("job", "show", job["id"])
        assert shown.returncode == 0, shown.stderr
        assert "[finished] task disk_usage" in shown.stdout
        listed_cli = server.cli("task", "list", "-e", "staging")
        assert "restart_service      changes, noop" in listed_cli.stdout, listed_cli.stdout
        bad_cli = server.cli("task", "run", "port_check", "--nodes", "certname = 'x'",
                             "--param", "port")
        assert bad_cli.returncode != 0
        assert "--param 'port': write NAME=VALUE" in bad_cli.stderr

        # -- queryable: PQL over jobs and job_results --------------------------------------
        rows = server.api("GET", "/pdb/query/v4", params={
            "query": f'job_results[certname, state, exit_code] {{ job = "{noop["id"]}" }}'})
        assert sorted((r["certname"], r["state"], r["exit_code"]) for r in rows) == \
            [("task1", "succeeded", 0), ("task2", "succeeded", 0)]
        jobs = server.api("GET", "/pdb/query/v4", params={
            "query": 'jobs[id, task, noop, requested_by] { task = "restart_service" }'})
        assert jobs == [{"id": noop["id"], "task": "restart_service", "noop": 1,
                         "requested_by": "agent:task-exec"}]
        assert ok(call(server, "GET", f"/api/v1/jobs/{job['id']}", debugger))["id"] == job["id"]

        # -- RBAC per task ------------------------------------------------------------------
        assert ok(_run(server, debugger, "disk_usage"))["counts"] == {"succeeded": 2}
        denied = _run(server, debugger, "restart_service", params={"name": "nginx"},
                      noop=True)
        assert denied.status_code == 403, denied.text
        assert "task:run" in denied.text
        before = _jobs(server)
        refused = _run(server, planner, "disk_usage")
        assert refused.status_code == 403, refused.text
        assert "task:run_readonly" in refused.text

        # -- noop refusal and parameter validation happen before any job exists -------------
        no_noop = _run(server, executor, "no_noop", noop=True)
        assert no_noop.status_code == 400, no_noop.text
        assert "does not support noop" in no_noop.text
        bad = _run(server, executor, "port_check", params={"port": 70000})
        assert bad.status_code == 400, bad.text
        assert "parameter 'port' must be at most 65535" in bad.text
        missing = _run(server, executor, "nope")
        assert missing.status_code == 404, missing.text
        none = call(server, "POST", "/api/v1/tasks/disk_usage/run", executor,
                    json={"nodes": 'nodes[certname] { certname = "ghost" }'})
        assert none.status_code == 400, none.text
        assert "selects no node" in none.text
        assert _jobs(server) == before

        # -- sensitive parameters: used on the node, never stored or returned ---------------
        greet = ok(_run(server, executor, "greet", params={"token": SECRET, "who": "ops"}))
        assert greet["counts"] == {"succeeded": 2}, greet
        assert greet["parameters"]["token"] == "[redacted]"
        assert "hello ops, the token is [redacted]" in \
            greet["results"][0]["output"]
        shown = call(server, "GET", f"/api/v1/jobs/{greet['id']}", executor).text
        audit = call(server, "GET", "/api/v1/audit", server.admin_token).text
        assert SECRET not in shown
        assert SECRET not in audit
    finally:
        for node in nodes:
            node.stop()


def test_a_job_started_by_steward_mcp_over_stdio_is_served_by_the_server(
        server: Server, tmp_path: Path) -> None:
    """``steward mcp`` is its own process on the data directory's database: the job it starts
    is a row the *server* hands to the node (the script is stored with the job), while a
    sensitive value, which only the starting process could hold, is refused up front."""
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "stdio", "expires_in": 600})["token"]
    node = make_node(tmp_path, "stdio1", server)
    first = node.once(join_token=join)
    assert first.returncode in (0, 2), first.stdout + first.stderr
    node.start("--interval", "1h")
    try:
        executor = create_identity(server, "task-stdio", "agent", "executor")
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "steward", "mcp", "--data-dir", str(server.data_dir)],
            env=steward_env(STEWARD_TOKEN=executor))

        async def run() -> tuple[CallToolResult, CallToolResult]:
            async with Client(params) as client:
                job = await client.call_tool("run_task", {
                    "name": "disk_usage", "nodes": 'certname = "stdio1"',
                    "params": {"path": "/etc"}, "wait": 60})
                secret = await client.call_tool("run_task", {
                    "name": "greet", "nodes": 'certname = "stdio1"',
                    "params": {"token": SECRET}, "wait": 0})
                return job, secret

        job, secret = asyncio.run(run())
        assert not job.is_error, job.content
        document = job.structured_content
        assert document is not None
        assert document["state"] == "finished", document
        [result] = document["untrusted_data_from_nodes"]
        assert result["state"] == "succeeded", result
        assert result["result"]["path"] == "/etc"
        assert document["requested_by"] == "agent:task-stdio"
        assert secret.is_error
        text = secret.content[0].text  # type: ignore[union-attr]
        assert "cannot be passed through `steward mcp` over stdio" in text
        assert SECRET not in text
    finally:
        node.stop()
