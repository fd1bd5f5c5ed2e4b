"""A deployment reaches both kinds of node: a pull agent (woken by run-now) and an agentless
node behind a real sshd (pushed by the server's scheduler), in one rollout.

development needs no approval (the default rules), so an analysed change is approved as
soon as its gates hold; the test is about the rollout's two transports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Server, make_node, pipeline_server
from tests.e2e.test_pipeline import _write_repo
from tests.transport.conftest import Keys, running_node
from tests.transport.sshd import SSHNode

pytestmark = [pytest.mark.chroot, pytest.mark.slow]


@pytest.fixture(scope="module")
def ssh_node(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[SSHNode]:
    with running_node("deployed", tmp_path_factory, keys) as node:
        yield node


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("pipeline-ssh")
    repo = _write_repo(tmp / "repo")
    (repo / "steward.yaml").write_text("default_environment: development\n", encoding="utf-8")
    with pipeline_server(tmp, repo, f"sqlite:///{tmp / 'steward.db'}") as srv:
        yield srv


def _until(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_rollout_reaches_a_pull_agent_and_an_ssh_node(
    dev_server: Server, ssh_node: SSHNode, keys: Keys, tmp_path: Path
) -> None:
    server = dev_server
    added = server.cli("node", "add-ssh", "pushed1", "--host", "127.0.0.1",
                       "--port", str(ssh_node.port), "--user", "root",
                       "--key-file", str(keys.client),
                       "--known-hosts", str(ssh_node.known_hosts))
    assert added.returncode == 0, added.stderr
    greeting = ssh_node.session.path("/etc/app/greeting")
    _until("the first push", lambda: greeting.exists()
           and greeting.read_text() == "hello pushed1\n")
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "dev", "expires_in": 600})["token"]
    pulled = make_node(tmp_path, "pulled1", server)
    first = pulled.once(join_token=join)
    assert first.returncode == 2, first.stdout + first.stderr
    # The scheduler stores the SSH node's catalog after its push; wait for it.
    _until("both catalogs", lambda: len(server.api(
        "GET", "/pdb/query/v4", params={"query": "catalogs[certname] {}"})) == 2)
    pulled.start("--interval", "1h")
    try:
        change = server.api("POST", "/api/v1/changes", json={
            "environment": "development", "title": "Greet warmly",
            "edits": {"data/common.yaml": "app::greeting: welcome\n"}})
        assert change["state"] == "approved", change["gates"]
        assert sorted(n["certname"] for n in server.api(
            "GET", f"/api/v1/changes/{change['id']}/impact")["nodes"]) == \
            ["pulled1", "pushed1"]
        started = server.api("POST", f"/api/v1/changes/{change['id']}/deploy",
                             json={"strategy": {"canary": 1, "batch_size": "1",
                                                "node_timeout": 90},
                                   "head": change["head"], "digest": change["impact_digest"]})
        def finished() -> Any:
            deployment = server.api("GET", f"/api/v1/deployments/{started['id']}")
            return deployment if deployment["change_state"] != "deploying" else None

        done = _until("the deployment", finished)
        assert done["state"] == "succeeded", done
        assert {n["certname"]: n["status"] for n in done["nodes"]} == \
            {"pulled1": "succeeded", "pushed1": "succeeded"}
        assert greeting.read_text() == "welcome pushed1\n"
        assert (pulled.root / "etc/app/greeting").read_text() == "welcome pulled1\n"
    finally:
        pulled.stop()
