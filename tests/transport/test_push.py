"""Agentless push for real: facts and applies over SSH into two sshd-fronted Debian roots.

Node alpha is reached as root; node beta as ``deploy`` with ``sudo -n``. Every change lands in
the node's root (checked from the host through the root's path) and never on the host.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from steward.transport import TransportError
from steward.transport.bundle import Bundle
from steward.transport.fanout import run_many
from steward.transport.ssh import apply_catalog, collect_facts, open_session
from steward.transport.target import SSHTarget
from tests.engine.providers.debs import build_deb, write_flat_repo
from tests.engine.providers.node import EXIT_CHANGED, EXIT_PENDING, edge, resource
from tests.transport.sshd import SSHNode

pytestmark = [pytest.mark.chroot, pytest.mark.slow]


def catalog(*resources: dict[str, Any], edges: tuple[dict[str, str], ...] = ()) -> dict[str, Any]:
    return {"catalog_format": 1, "node": "push.test", "environment": "test",
            "resources": list(resources), "edges": list(edges)}


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {r["ref"]: r["status"] for r in report["resources"]}


@pytest.fixture(scope="module")
def local_repo(node_a: SSHNode) -> SSHNode:
    """A flat apt repository inside alpha's root as its only source: no network."""
    session = node_a.session
    build_deb(session, "/srv/repo", "steward-pushed", "1.0",
              files={"/usr/share/steward-pushed/VERSION": "1.0\n"})
    write_flat_repo(session.path("/srv/repo"))
    session.sh(
        "mkdir -p /etc/apt/sources.disabled\n"
        "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do\n"
        "  [ -e \"$f\" ] && mv \"$f\" /etc/apt/sources.disabled/\n"
        "done\n"
        "echo 'deb [trusted=yes] file:/srv/repo ./' > /etc/apt/sources.list.d/local.list\n"
        "apt-get update -q -o Acquire::Languages=none >/dev/null\n"
    )
    return node_a


def test_facts_come_from_each_node_root(node_a: SSHNode, node_b: SSHNode, bundle: Bundle) -> None:
    targets = [node_a.target(), node_b.target(user="deploy")]
    outcomes = asyncio.run(run_many(targets, lambda t: collect_facts(t, bundle=bundle), 2))
    assert [o.error for o in outcomes] == [None, None]
    host_packages = int(subprocess.run(["dpkg-query", "-W", "-f", ".\n"], capture_output=True,
                                       text=True, check=True).stdout.count("."))
    for outcome, user in zip(outcomes, ("root", "deploy"), strict=True):
        facts = outcome.value
        assert facts is not None
        assert facts["os"]["family"] == "Debian"
        assert facts["identity"]["user"] == user
        # The root's python and package set, not the host's.
        assert facts["python"]["executable"] == "/usr/bin/python3"
        assert facts["packages"]["count"] < host_packages


def test_bundle_is_uploaded_once_per_content_hash(node_a: SSHNode, bundle: Bundle) -> None:
    cached = node_a.session.path(f"/root/.cache/steward/{bundle.remote_name}")
    cached.unlink(missing_ok=True)

    async def twice() -> tuple[bool, bool, list[str]]:
        async with open_session(node_a.target(), bundle) as first:
            await first.facts()
        async with open_session(node_a.target(), bundle) as second:
            await second.facts()
        return first.uploaded, second.uploaded, second.commands

    uploaded_first, uploaded_second, commands = asyncio.run(twice())
    assert (uploaded_first, uploaded_second) == (True, False)
    assert cached.read_bytes() == bundle.data
    assert oct(cached.stat().st_mode & 0o777) == "0o600"
    assert list(cached.parent.glob(".upload.*")) == []
    assert len(commands) == 2  # probe and facts: no upload the second time


def test_apply_changes_then_is_unchanged_then_noop_predicts(
    local_repo: SSHNode, bundle: Bundle
) -> None:
    node = local_repo
    target = node.target()
    conf = "/etc/steward-push/app.conf"
    assert not Path(conf).exists()
    resources = [
        resource("directory", "/etc/steward-push", mode="0755"),
        resource("file", conf, content="greeting=hello\n", mode="0640", owner="pushy"),
        resource("user", "pushy", uid=4321, shell="/bin/sh", managehome=False),
        resource("package", "steward-pushed", ensure="installed"),
    ]
    edges = (edge("directory[/etc/steward-push]", f"file[{conf}]"),
             edge("user[pushy]", f"file[{conf}]"))

    code, report = asyncio.run(apply_catalog(target, catalog(*resources, edges=edges),
                                             bundle=bundle))
    assert code == EXIT_CHANGED, json.dumps(report, indent=1)
    assert set(statuses(report).values()) == {"changed"}
    assert node.session.read(conf) == "greeting=hello\n"
    assert "pushy:x:4321:" in node.session.read("/etc/passwd")
    assert node.session.read("/usr/share/steward-pushed/VERSION") == "1.0\n"
    installed = node.session.run(["dpkg-query", "-W", "-f", "${Status}", "steward-pushed"])
    assert installed.stdout == "install ok installed"
    assert not Path(conf).exists()  # the host is untouched

    code, report = asyncio.run(apply_catalog(target, catalog(*resources, edges=edges),
                                             bundle=bundle))
    assert code == 0, json.dumps(report, indent=1)
    assert set(statuses(report).values()) == {"unchanged"}

    resources[1] = resource("file", conf, content="greeting=bonjour\n", mode="0640",
                            owner="pushy")
    code, report = asyncio.run(apply_catalog(target, catalog(*resources, edges=edges),
                                             noop=True, bundle=bundle))
    assert code == EXIT_PENDING, json.dumps(report, indent=1)
    assert report["noop"] is True
    events = [e for r in report["resources"] for e in r["events"]]
    assert [(e["property"], e["status"]) for e in events] == [("content", "noop")]
    assert node.session.read(conf) == "greeting=hello\n"


def test_sudo_push_as_an_unprivileged_user(with_sudo: SSHNode, bundle: Bundle) -> None:
    node = with_sudo
    target = node.target(user="deploy", sudo=True)
    motd = resource("file", "/etc/motd", content="managed by steward\n", mode="0644")
    code, report = asyncio.run(apply_catalog(target, catalog(motd), bundle=bundle))
    assert code == EXIT_CHANGED, json.dumps(report, indent=1)
    path = node.session.path("/etc/motd")
    assert path.read_text() == "managed by steward\n"
    assert path.stat().st_uid == 0
    facts = asyncio.run(collect_facts(target, bundle=bundle))
    assert facts["identity"]["user"] == "root"
    # The bundle lives in the login user's cache, uploaded without privileges.
    cached = node.session.path(f"/home/deploy/.cache/steward/{bundle.remote_name}")
    assert cached.stat().st_uid == 1000


def test_sudo_that_wants_a_password_is_refused_clearly(
    with_sudo: SSHNode, bundle: Bundle
) -> None:
    target = with_sudo.target(user="needpw", sudo=True)
    with pytest.raises(TransportError) as caught:
        asyncio.run(collect_facts(target, bundle=bundle))
    message = str(caught.value)
    assert target.label in message
    assert "a password is required" in message
    assert "NOPASSWD" in message


def test_secrets_stay_out_of_argv_environment_and_disk(
    with_sudo: SSHNode, bundle: Bundle
) -> None:
    node = with_sudo
    token = "s3cr3t-" + secrets.token_hex(12)
    snapshot = "/root/process-snapshot.txt"
    # While the engine runs, record every process of the node (argv and environment): the
    # engine itself, sudo, the SSH session's shell and sshd are all in the node's PID space.
    ps = ("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; "
          "tr '\\0' '\\n' < $p/environ; done > " + snapshot + " 2>/dev/null; true")
    resources = [
        resource("file", "/etc/app-db.conf", content={"__sensitive__": "db"}, mode="0600"),
        resource("exec", "snapshot processes", command=ps),
    ]
    target = node.target(user="deploy", sudo=True)

    async def push() -> tuple[int, dict[str, Any], list[str]]:
        async with open_session(target, bundle) as session:
            code, report = await session.apply(catalog(*resources), {"db": f"password={token}\n"})
            return code, report, session.commands

    code, report, commands = asyncio.run(push())
    assert code == EXIT_CHANGED, json.dumps(report, indent=1)
    assert node.session.read("/etc/app-db.conf") == f"password={token}\n"
    assert token not in json.dumps(report)
    assert commands
    assert not any(token in c for c in commands)
    processes = node.session.read(snapshot)
    assert "apply --catalog - --secrets-on-stdin" in processes  # the engine was seen
    assert token not in processes
    # On the node's disk, the secret is in the file the catalog asked for, and nowhere else
    # (no temp file, no state, no log).
    found = subprocess.run(
        ["grep", "-r", "-l", "-F", "--exclude-dir=proc", "--exclude-dir=sys",
         "--exclude-dir=dev", token, str(node.session.root)],
        capture_output=True, text=True, check=False,
    )
    assert found.stdout.splitlines() == [str(node.session.path("/etc/app-db.conf"))]


def test_run_many_reports_each_host_and_respects_the_limit(
    node_a: SSHNode, node_b: SSHNode, bundle: Bundle
) -> None:
    down = node_a.target(port=1)  # nothing listens there
    targets = [node_a.target(), down, node_b.target(user="deploy")]
    running = 0
    peak = 0

    async def facts(target: SSHTarget) -> dict[str, Any]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await collect_facts(target, bundle=bundle)
        finally:
            running -= 1

    outcomes = asyncio.run(run_many(targets, facts, limit=2))
    assert [o.target for o in outcomes] == targets
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, TransportError)
    assert "127.0.0.1:1" in str(outcomes[1].error)
    assert peak == 2
