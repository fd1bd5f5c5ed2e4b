"""Agentless nodes through the server: the scheduler pushes over SSH into a real sshd.

The node is a Debian root behind its own sshd (``tests/transport/sshd.py``); the server
process is the real one. One backend suffices here (the scheduler's database use is the
same code the pull-agent tests run on both); the root unpacking makes this the slow one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import SECRET_VALUE, Server, free_port, init_data_dir
from tests.transport.conftest import Keys, running_node
from tests.transport.sshd import SSHNode

pytestmark = [pytest.mark.chroot, pytest.mark.slow]


@pytest.fixture(scope="module")
def ssh_node(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[SSHNode]:
    with running_node("pushed", tmp_path_factory, keys) as node:
        yield node


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ssh-server")
    port = free_port()
    data, token = init_data_dir(tmp, f"sqlite:///{tmp / 'steward.db'}", port=port)
    srv = Server(data, token, port=port)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _wait_reports(server: Server, certname: str, count: int,
                  timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reports = server.reports(certname)
        if len(reports) >= count:
            return reports
        time.sleep(0.5)
    raise AssertionError(f"{certname}: fewer than {count} report(s) after {timeout}s:\n"
                         + server.log())


def test_the_server_pushes_to_an_ssh_node_on_schedule_and_on_request(
    server: Server, ssh_node: SSHNode, keys: Keys
) -> None:
    added = server.cli("node", "add-ssh", "pushed1", "--host", "127.0.0.1",
                       "--port", str(ssh_node.port), "--user", "root",
                       "--key-file", str(keys.client),
                       "--known-hosts", str(ssh_node.known_hosts))
    assert added.returncode == 0, added.stderr
    # A new node is due at once: the scheduler pushes without being asked.
    first = _wait_reports(server, "pushed1", 1)
    assert first[0]["status"] == "changed"
    greeting = ssh_node.session.path("/etc/app/greeting")
    assert greeting.read_text() == "hello pushed1\n"
    assert ssh_node.session.path("/etc/app/token").read_text() == SECRET_VALUE
    facts = server.api("GET", "/pdb/query/v4/facts/os",
                       params={"query": '["=", "certname", "pushed1"]'})
    assert facts[0]["value"]["family"] == "Debian"
    # Drift on the node, then "run now": corrected over SSH and reported as drift.
    greeting.write_text("edited on the host\n")
    asked = server.cli("node", "run", "pushed1")
    assert asked.returncode == 0, asked.stderr
    reports = _wait_reports(server, "pushed1", 2)
    latest = max(reports, key=lambda r: r["end_time"])
    assert latest["corrective_change"] is True
    assert greeting.read_text() == "hello pushed1\n"
