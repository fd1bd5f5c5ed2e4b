"""Fixtures for the push tests: client keys, a bundle in a private cache, and SSH nodes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from steward.transport.bundle import Bundle, build_bundle
from tests.engine.providers.debian_root import RootUnavailable, remove_tree, unpack_root
from tests.transport.sshd import SSHNode, generate_key, sshd_unavailable_reason, sudo_deb


@dataclass(frozen=True)
class Keys:
    client: Path
    stranger: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """The key every node authorizes, and one that no node knows."""
    work = tmp_path_factory.mktemp("keys")
    return Keys(client=generate_key(work / "client", "steward-tests"),
                stranger=generate_key(work / "stranger", "stranger"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Built into a private cache, so tests never write to the runner's ~/.cache."""
    return build_bundle(cache_dir=tmp_path_factory.mktemp("bundle-cache"))


@contextmanager
def running_node(
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    keys: Keys,
    *,
    users: Sequence[str] = (),
    sudoers: dict[str, str] | None = None,
    with_sudo: bool = False,
) -> Iterator[SSHNode]:
    """A fresh root with its own sshd; both gone afterwards."""
    reason = sshd_unavailable_reason()
    if reason:
        pytest.skip(reason)
    sudo = sudo_deb() if with_sudo else None
    base = tmp_path_factory.mktemp(name)
    root = base / "root"
    try:
        session = unpack_root(root)
    except RootUnavailable as exc:
        pytest.skip(str(exc))
    work = base / "sshd"
    work.mkdir()
    node = SSHNode(name, session, work, keys.client)
    try:
        node.prepare(users=users, sudoers=sudoers if sudo else None, sudo=sudo)
        node.has_sudo = sudo is not None
        node.start()
        yield node
    finally:
        node.stop()
        remove_tree(root)


@pytest.fixture(scope="module")
def node_a(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[SSHNode]:
    """Reached as root, like a host whose operators push with a root key."""
    with running_node("alpha", tmp_path_factory, keys) as node:
        yield node


@pytest.fixture(scope="module")
def node_b(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[SSHNode]:
    """Reached as ``deploy`` with passwordless sudo; ``needpw`` may sudo only with a password."""
    with running_node(
        "beta", tmp_path_factory, keys, users=("deploy", "needpw"), with_sudo=True,
        sudoers={"deploy": "deploy ALL=(ALL:ALL) NOPASSWD: ALL",
                 "needpw": "needpw ALL=(ALL:ALL) ALL"},
    ) as node:
        yield node


@pytest.fixture
def with_sudo(node_b: SSHNode) -> SSHNode:
    if not node_b.has_sudo:
        pytest.skip("sudo's .deb could not be fetched (apt-get download sudo) for the root")
    return node_b
