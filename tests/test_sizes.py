"""Sizes a reader can hold: no module over 600 lines, no function over 100 (migrations aside),
and every test module under the path of the source it tests (``tests/`` mirrors ``src/``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "steward"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_over_600_lines() -> None:
    long = [f"{p.relative_to(SRC)}: {n} lines" for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert long == []


def test_no_function_over_100_lines() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.name}, "
                                f"{lines} lines")
    assert long == []


def test_tests_mirror_the_source_tree() -> None:
    """Each test directory names a package or module of src/steward (or is one of the
    suites that cut across packages: security, e2e)."""
    cross = {"security", "e2e"}
    stray = []
    for directory in sorted(p for p in (ROOT / "tests").rglob("*") if p.is_dir()):
        rel = directory.relative_to(ROOT / "tests")
        if rel.parts[0] in cross or "__pycache__" in rel.parts or "fixtures" in rel.parts:
            continue
        if not (SRC / rel).is_dir() and not (SRC / rel).with_suffix(".py").is_file():
            stray.append(str(rel))
    assert stray == []
