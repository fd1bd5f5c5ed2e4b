"""Fixtures for the system-provider tests: a fresh Debian root per module, the engine in it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.system.debian_root import ChrootSession, private_root, unpack_root
from tests.engine.system.node import Node


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChrootSession]:
    """A private copy of the cached bookworm root; deleted after the module."""
    yield from private_root(tmp_path_factory, "debian", unpack_root)


@pytest.fixture(scope="module")
def node(debian_root: ChrootSession) -> Node:
    return Node(debian_root)
