"""Generated documentation is up to date with the code it documents."""

from __future__ import annotations

from pathlib import Path

from steward.catalog.reference import render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_resource_type_reference_is_current() -> None:
    committed = (ROOT / "docs" / "resource-types.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "run: .venv/bin/python scripts/gen_docs.py"
