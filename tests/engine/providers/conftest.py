"""Fixtures for the provider tests: a sandboxed root per test (path providers), and a fresh
Debian root per module with the engine in it (system providers, under chroot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.providers.debian_root import ChrootSession, private_root, unpack_root
from tests.engine.providers.harness import Sandbox
from tests.engine.providers.node import Node


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A fresh root and state directory per test."""
    root = tmp_path / "root"
    root.mkdir()
    return Sandbox(root=root, state=tmp_path / "state")


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChrootSession]:
    """A private copy of the cached bookworm root; deleted after the module."""
    yield from private_root(tmp_path_factory, "debian", unpack_root)


@pytest.fixture(scope="module")
def node(debian_root: ChrootSession) -> Node:
    return Node(debian_root)
