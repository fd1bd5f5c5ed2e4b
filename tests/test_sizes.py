"""Sizes a reader can hold: no module over 600 lines, no function over 100 (migrations aside),
and test directories that mirror ``src/steward/``.

A module past the limit is split by what it holds (see docs/architecture.md), not exempted:
there is no allow-list.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "steward"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100



def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _sizes() -> dict[str, int]:
    """Every module (``path``) and function (``path:name``) over its limit, with its lines."""
    found = {}
    for path in _sources():
        rel = str(path.relative_to(SRC))
        text = path.read_text(encoding="utf-8")
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            found[rel] = lines
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    found[f"{rel}:{node.name}"] = length
    return found


def test_no_module_or_function_is_over_the_limits() -> None:
    assert _sizes() == {}


def test_tests_mirror_the_source_tree() -> None:
    """Each test directory names a package or module of src/steward, or is one of the
    suites that cut across packages (security, e2e)."""
    cross = {"security", "e2e"}
    stray = []
    for directory in sorted(p for p in (ROOT / "tests").rglob("*") if p.is_dir()):
        rel = directory.relative_to(ROOT / "tests")
        if rel.parts[0] in cross or "__pycache__" in rel.parts or "fixtures" in rel.parts:
            continue
        if not (SRC / rel).is_dir() and not (SRC / rel).with_suffix(".py").is_file():
            stray.append(str(rel))
    assert stray == []
