"""Shared helpers: the captured fixture files and a builder for fake root trees."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

MakeRoot = Callable[[Mapping[str, str]], str]


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def make_root(tmp_path: Path) -> MakeRoot:
    """Write ``{"/etc/os-release": text, ...}`` below a temporary root and return the root."""

    def build(files: Mapping[str, str]) -> str:
        for path, text in files.items():
            target = tmp_path / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return str(tmp_path)

    return build
