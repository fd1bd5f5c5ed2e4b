#!/usr/bin/env python3
"""Write the repository-format JSON Schemas to schemas/repo/ (run after changing the models
or the resource types; tests/compiler/test_schema.py fails while they are stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from steward.language.schema import render_schemas

TARGET = Path(__file__).resolve().parent.parent / "schemas" / "repo"


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, text in render_schemas().items():
        path = TARGET / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(TARGET.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
