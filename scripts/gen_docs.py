"""Regenerate docs/resource-types.md from the type registry."""

from __future__ import annotations

from pathlib import Path

from steward.catalog.reference import render_reference

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "resource-types.md"
    target.write_text(render_reference(), encoding="utf-8")
    print(f"wrote {target}")
