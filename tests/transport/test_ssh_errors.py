"""Host keys and failures over real SSH: every refusal is a TransportError naming the host."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.transport import TransportError
from steward.transport.bundle import Bundle
from steward.transport.ssh import apply_catalog, collect_facts
from steward.transport.target import SSHTarget
from tests.transport.conftest import Keys
from tests.transport.sshd import SSHNode, fingerprint, generate_key

pytestmark = [pytest.mark.chroot, pytest.mark.slow]


def facts(node: SSHNode, bundle: Bundle, **overrides: object) -> dict[str, object]:
    return asyncio.run(collect_facts(node.target(**overrides), bundle=bundle))


def refusal(node: SSHNode, bundle: Bundle, **overrides: object) -> str:
    with pytest.raises(TransportError) as caught:
        facts(node, bundle, **overrides)
    message = str(caught.value)
    assert node.target(**overrides).label in message
    return message


@pytest.fixture
def steward_known_hosts(tmp_path: Path) -> Path:
    return tmp_path / "state" / "steward" / "known_hosts"


def test_trust_on_first_use_records_the_key_and_trusts_it_afterwards(
    node_a: SSHNode, bundle: Bundle, steward_known_hosts: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host_key = fingerprint(node_a.host_key.with_suffix(".pub"))
    with caplog.at_level(logging.WARNING, logger="steward.transport"):
        assert facts(node_a, bundle, known_hosts=None, steward_known_hosts=steward_known_hosts,
                     trust_on_first_use=True)["os"]
    algorithm, blob = node_a.host_key.with_suffix(".pub").read_text().split()[:2]
    assert steward_known_hosts.read_text() == f"[127.0.0.1]:{node_a.port} {algorithm} {blob}\n"
    assert oct(steward_known_hosts.stat().st_mode & 0o777) == "0o600"
    assert any(host_key in r.getMessage() and "first time" in r.getMessage()
               for r in caplog.records)
    # Recorded means known: no TOFU needed any more, and nothing appended twice.
    facts(node_a, bundle, known_hosts=None, steward_known_hosts=steward_known_hosts)
    assert len(steward_known_hosts.read_text().splitlines()) == 1


def test_an_unknown_host_is_refused_without_trust_on_first_use(
    node_a: SSHNode, bundle: Bundle, steward_known_hosts: Path
) -> None:
    message = refusal(node_a, bundle, known_hosts=None, steward_known_hosts=steward_known_hosts)
    assert "unknown" in message
    assert fingerprint(node_a.host_key.with_suffix(".pub")) in message
    assert not steward_known_hosts.exists()


@pytest.mark.parametrize("where", ["steward_known_hosts", "known_hosts"])
def test_a_changed_host_key_is_refused_even_with_trust_on_first_use(
    node_a: SSHNode, bundle: Bundle, tmp_path: Path, steward_known_hosts: Path, where: str
) -> None:
    old = generate_key(tmp_path / "old_host_key", "previous install").with_suffix(".pub")
    algorithm, blob = old.read_text().split()[:2]
    recorded = tmp_path / "recorded_known_hosts"
    recorded.write_text(f"[127.0.0.1]:{node_a.port} {algorithm} {blob}\n")
    before = recorded.read_text()
    files = ({"known_hosts": None, "steward_known_hosts": recorded}
             if where == "steward_known_hosts"
             else {"known_hosts": recorded, "steward_known_hosts": steward_known_hosts})
    message = refusal(node_a, bundle, trust_on_first_use=True, **files)
    assert "HOST KEY CHANGED" in message
    assert f"[127.0.0.1]:{node_a.port}" in message
    assert fingerprint(old) in message  # the recorded one
    assert fingerprint(node_a.host_key.with_suffix(".pub")) in message  # the offered one
    assert recorded.read_text() == before
    assert not steward_known_hosts.exists()


def test_a_missing_known_hosts_file_is_named(node_a: SSHNode, bundle: Bundle,
                                             tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"known_hosts file .*nowhere does not exist"):
        facts(node_a, bundle, known_hosts=tmp_path / "nowhere")


def test_an_unknown_user_fails_authentication_clearly(node_a: SSHNode, bundle: Bundle) -> None:
    message = refusal(node_a, bundle, user="nosuchuser")
    assert "authentication failed" in message
    assert "nosuchuser" in message


def test_a_key_the_host_does_not_authorize_fails_clearly(
    node_a: SSHNode, bundle: Bundle, keys: Keys
) -> None:
    message = refusal(node_a, bundle, key_file=keys.stranger)
    assert "authentication failed" in message
    assert str(keys.stranger) in message


def test_an_unreadable_key_file_is_named(node_a: SSHNode, bundle: Bundle,
                                         tmp_path: Path) -> None:
    garbage = tmp_path / "not-a-key"
    garbage.write_text("hello\n")
    message = refusal(node_a, bundle, key_file=garbage)
    assert f"cannot load SSH key {garbage}" in message


def test_connection_refused_names_the_host(node_a: SSHNode, bundle: Bundle) -> None:
    message = refusal(node_a, bundle, port=1)
    assert "cannot connect" in message


@pytest.fixture
def without_python(node_a: SSHNode) -> Iterator[SSHNode]:
    """The node's python3 taken away for one test (every python3 on the default PATH)."""
    moved = []
    for name in ("/usr/bin/python3", "/usr/local/bin/python3"):
        path = node_a.session.path(name)
        if path.exists() or path.is_symlink():
            path.rename(path.with_name("python3.away"))
            moved.append(path)
    try:
        yield node_a
    finally:
        for path in moved:
            path.with_name("python3.away").rename(path)


def test_a_host_without_python3_is_a_clear_error(without_python: SSHNode,
                                                 bundle: Bundle) -> None:
    message = refusal(without_python, bundle)
    assert "cannot run 'python3'" in message
    assert "not found" in message


def test_output_that_is_not_json_is_a_clear_error(node_a: SSHNode, bundle: Bundle) -> None:
    # A python3 wrapper that greets before running: its output is no longer the bare JSON.
    node_a.session.write("/usr/local/bin/chatty-python",
                         '#!/bin/sh\necho "Welcome to $(hostname)!"\nexec python3 "$@"\n', 0o755)
    message = refusal(node_a, bundle, python="chatty-python")
    assert "did not print a JSON object" in message
    assert "Welcome to" in message


def test_a_server_that_never_speaks_ssh_times_out_clearly(bundle: Bundle) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts; nothing ever answers
        target = SSHTarget("127.0.0.1", port=silent.getsockname()[1], user="root",
                           connect_timeout=1)
        with pytest.raises(TransportError, match=r"no SSH connection within 1s") as caught:
            asyncio.run(collect_facts(target, bundle=bundle))
    assert target.label in str(caught.value)


def test_a_command_that_outlives_its_timeout_is_reported(node_a: SSHNode,
                                                           bundle: Bundle) -> None:
    slow = {"catalog_format": 1, "node": "slow.test", "environment": "test", "edges": [],
            "resources": [{"type": "exec", "title": "sleep", "tags": [], "file": None,
                           "line": None, "parameters": {"command": "sleep 10"}}]}
    facts(node_a, bundle)  # the bundle is on the node: only the apply is timed
    with pytest.raises(TransportError, match=r"steward apply did not finish within 2s"):
        asyncio.run(apply_catalog(node_a.target(command_timeout=2.0), slow, bundle=bundle))


def test_a_revoked_host_key_is_refused(node_a: SSHNode, bundle: Bundle, tmp_path: Path,
                                       steward_known_hosts: Path) -> None:
    algorithm, blob = node_a.host_key.with_suffix(".pub").read_text().split()[:2]
    revoked = tmp_path / "revoked_known_hosts"
    revoked.write_text(f"@revoked [127.0.0.1]:{node_a.port} {algorithm} {blob}\n")
    message = refusal(node_a, bundle, known_hosts=revoked, trust_on_first_use=True,
                      steward_known_hosts=steward_known_hosts)
    assert "@revoked" in message
    assert not steward_known_hosts.exists()
