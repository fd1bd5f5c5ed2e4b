"""The pipeline's sub-packages are used through their surfaces, and it reads the store
through the store's read API.

Outside ``steward.pipeline`` (the interfaces, tasks, benchmarks) a sub-package is imported
as ``from steward.pipeline.impact import X``, never its inner modules, so those can be split
and renamed freely; what a sub-package exports (``__all__``) is what somebody outside it
uses, no more. The pipeline never names the store's tables (``steward.store.models``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "steward"
PIPELINE = SRC / "pipeline"
#: The sub-packages with a surface (migrations are Alembic's, imported by path).
SUBPACKAGES = sorted(p.parent.name for p in PIPELINE.glob("*/__init__.py")
                     if p.parent.name != "migrations")


def _imports(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` of each absolute import, at any depth of the module."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _inner(module: str, names: tuple[str, ...]) -> str | None:
    """The inner module of a pipeline sub-package this import reaches, if any."""
    pieces = module.split(".")
    if pieces[:2] != ["steward", "pipeline"] or len(pieces) < 3 or pieces[2] not in SUBPACKAGES:
        return None
    if len(pieces) > 3:
        return module
    package = PIPELINE / pieces[2]
    for name in names:
        if (package / f"{name}.py").exists() or (package / name / "__init__.py").exists():
            return f"{module}.{name}"
    return None


def _outside() -> list[Path]:
    sources = [p for p in SRC.rglob("*.py") if PIPELINE not in p.parents]
    return sorted(sources + list((ROOT / "benchmarks").rglob("*.py")))


def _exports(package: str) -> list[str]:
    tree = ast.parse((PIPELINE / package / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def test_sub_packages_are_imported_through_their_surface() -> None:
    offenders = []
    for path in _outside():
        for line, module, names in _imports(path):
            if (inner := _inner(module, names)) is not None:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {inner}")
    assert offenders == []


def test_each_sub_package_exports_what_others_use() -> None:
    """``__all__`` names every binding of the ``__init__`` and each one has a user outside
    the sub-package (the Pipeline service, another sub-package, an interface)."""
    used: dict[str, set[str]] = {package: set() for package in SUBPACKAGES}
    for path in [*_outside(), *PIPELINE.rglob("*.py")]:
        for _line, module, names in _imports(path):
            pieces = module.split(".")
            if pieces[:2] == ["steward", "pipeline"] and len(pieces) == 3 \
                    and pieces[2] in used and PIPELINE / pieces[2] not in path.parents:
                used[pieces[2]].update(names)
    for package in SUBPACKAGES:
        exports = _exports(package)
        assert exports, f"steward.pipeline.{package} has no __all__"
        tree = ast.parse((PIPELINE / package / "__init__.py").read_text(encoding="utf-8"))
        bound = {alias.asname or alias.name for node in tree.body
                 if isinstance(node, ast.ImportFrom) and node.module != "__future__"
                 for alias in node.names}
        assert sorted(bound) == sorted(exports), package
        assert sorted(set(exports) - used[package]) == [], f"{package}: exported, unused"


def test_the_pipeline_does_not_read_the_store_tables() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(PIPELINE.rglob("*.py"))
        for line, module, names in _imports(path)
        if module == "steward.store.models"
        or (module == "steward.store" and "models" in names)
    ]
    assert offenders == []
