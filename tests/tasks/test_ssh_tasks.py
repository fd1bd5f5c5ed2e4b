"""Tasks on agentless (SSH) nodes end to end: a real server process, a real sshd-fronted
Debian root, real git, SQLite and PostgreSQL.

The server's SSH scheduler takes the SSH nodes' parts of a job (the same claim the pull
agents' long poll uses), runs them over SSH with the bundle, and records the results. A
shipped task and one with a sensitive parameter run on the node; the result is queryable in
PQL; the secret is in no stored row, API answer, audit entry or server log; a node behind a
closed port fails with the host named; noop refusal still applies; the job's concurrency
limit holds; a new job's part starts within moments (the run's wake, not the next tick).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import inspect, text

from steward.server.db import SERVER_ENGINE
from steward.store.db import make_engine
from tests.e2e.harness import (
    Server,
    call,
    create_identity,
    database_url,
    free_port,
    ok,
    pipeline_server,
)
from tests.tasks.test_tasks_e2e import SECRET, _repo
from tests.transport.conftest import Keys, running_node
from tests.transport.sshd import SSHNode, generate_key

pytestmark = [pytest.mark.chroot, pytest.mark.slow]

NODES = 'nodes[certname] { certname ~ "^ssh" }'


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    work = tmp_path_factory.mktemp("keys")
    return Keys(client=generate_key(work / "client", "steward-server"),
                stranger=generate_key(work / "stranger", "stranger"))


@pytest.fixture(scope="module")
def ssh_node(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[SSHNode]:
    with running_node("tasked", tmp_path_factory, keys) as node:
        yield node


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp(f"ssh-tasks-{request.param}")
    with database_url(str(request.param), tmp, "ssh_tasks") as url, \
            pipeline_server(tmp, _repo(tmp / "repo"), url) as srv:
        yield srv, url


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _run(server: Server, token: str, task: str, **body: Any) -> Any:
    return call(server, "POST", f"/api/v1/tasks/{task}/run", token,
                json={"nodes": NODES, "wait": 90, **body})


def _database_text(url: str) -> str:
    """Every row of every table, as text: where a leaked value would be found."""
    engine = make_engine(url, **SERVER_ENGINE)
    try:
        names = sorted(inspect(engine).get_table_names())
        assert "steward_job_results" in names
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for name in names
                             for row in conn.execute(text(f'SELECT * FROM "{name}"')))
    finally:
        engine.dispose()


def test_tasks_run_on_ssh_nodes_through_the_scheduler(
    server: tuple[Server, str], ssh_node: SSHNode, keys: Keys
) -> None:
    srv, url = server

    def add(certname: str, port: int) -> None:
        ok(call(srv, "POST", "/api/v1/nodes", srv.admin_token, json={
            "certname": certname, "host": "127.0.0.1", "port": port, "user": "root",
            "key_file": str(keys.client), "known_hosts": str(ssh_node.known_hosts)}))

    for certname in ("sshtask1", "sshdown"):
        add(certname, ssh_node.port)
    # PQL selects nodes with facts: both once the scheduler's first pushes stored theirs.
    deadline = time.monotonic() + 120
    while len(srv.api("GET", "/pdb/query/v4", params={"query": NODES})) < 2:
        assert time.monotonic() < deadline, "the first pushes stored no facts"
        time.sleep(0.5)
    # Then sshdown's host goes away: its address is now a closed port.
    closed = free_port()
    add("sshdown", closed)
    executor = create_identity(srv, "ssh-exec", "agent", "executor")

    # -- a shipped task; the part starts within moments of the run -------------------------
    job = ok(_run(srv, executor, "disk_usage", params={"path": "/etc"}))
    assert job["state"] == "finished", job
    results = {r["certname"]: r for r in job["results"]}
    up, down = results["sshtask1"], results["sshdown"]
    assert up["state"] == "succeeded", up
    assert up["exit_code"] == 0
    assert up["result"]["path"] == "/etc"
    assert up["result"]["total"] > 0
    assert (_stamp(up["started_at"]) - _stamp(job["created_at"])).total_seconds() < 2
    # -- an unreachable host fails its part, naming the host --------------------------------
    assert down["state"] == "failed", down
    assert down["exit_code"] is None
    assert f"root@127.0.0.1:{closed}: cannot connect" in down["output"], down

    # -- a sensitive parameter: on the node only ---------------------------------------------
    greet = ok(_run(srv, executor, "greet", params={"token": SECRET, "who": "ops"},
                    concurrency=1))
    assert greet["counts"] == {"failed": 1, "succeeded": 1}, greet
    assert greet["parameters"]["token"] == "[redacted]"
    by_node = {r["certname"]: r for r in greet["results"]}
    assert "hello ops, the token is [redacted]" in by_node["sshtask1"]["output"]
    # concurrency 1: one node's part ran after the other's had finished.
    first, second = sorted(greet["results"], key=lambda r: _stamp(r["started_at"]))
    assert _stamp(second["started_at"]) >= _stamp(first["finished_at"])

    # -- queryable in PQL --------------------------------------------------------------------
    rows = srv.api("GET", "/pdb/query/v4", params={
        "query": f'job_results[certname, state, exit_code] {{ job = "{greet["id"]}" }}'})
    assert sorted((r["certname"], r["state"], r["exit_code"]) for r in rows) == \
        [("sshdown", "failed", None), ("sshtask1", "succeeded", 0)]
    out = srv.cli("query", f'job_results[certname, output] {{ job = "{greet["id"]}" }}')
    assert out.returncode == 0, out.stderr

    # -- noop: a task that supports it runs in noop; refusal for one that does not ----------
    noop = ok(_run(srv, executor, "restart_service", params={"name": "nginx"}, noop=True,
                   nodes='nodes[certname] { certname = "sshtask1" }'))
    assert noop["counts"] == {"succeeded": 1}, noop
    assert noop["results"][0]["result"]["noop"] is True
    refused = _run(srv, executor, "no_noop", noop=True)
    assert refused.status_code == 400, refused.text
    assert "does not support noop" in refused.text

    # -- the secret is nowhere: API answers, audit, database, server log, output ------------
    shown = call(srv, "GET", f"/api/v1/jobs/{greet['id']}", executor).text
    audit = call(srv, "GET", "/api/v1/audit", srv.admin_token).text
    for where, found in (("job", shown), ("audit", audit), ("database", _database_text(url)),
                        ("server log", srv.log()), ("PQL output", out.stdout)):
        assert SECRET not in found, where
    # The runner's temporary directory on the node is gone.
    assert list(ssh_node.session.path("/tmp").glob("steward-task-*")) == []
    # Every part settled; nothing is left running.
    jobs = srv.api("GET", "/pdb/query/v4", params={
        "query": 'job_results[job, state] { state = "running" or state = "pending" }'})
    assert jobs == []

