from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A fresh root and state directory per test."""
    root = tmp_path / "root"
    root.mkdir()
    return Sandbox(root=root, state=tmp_path / "state")
