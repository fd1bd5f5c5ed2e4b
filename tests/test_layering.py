"""The package graph: which package may import which (docs/architecture.md draws it).

Four rules, each a test: a package imports only what its row in :data:`MAY_IMPORT` names;
that table has no cycle (so it is a layering); no module imports a private name (``_x``) or
private module of another package; and inside a package the modules' imports form no cycle.
The node side additionally needs nothing beyond the standard library.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "steward"

_NODE = {"errors", "clock", "catalog", "facts", "engine"}
_DOCUMENTS = {"errors", "clock", "catalog", "language"}
_STATE = {*_DOCUMENTS, "query", "store"}
#: Package -> the Steward packages it may import ("steward" itself: its version string).
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "clock": set(),
    "catalog": {"errors", "clock"},
    "facts": {"errors", "clock", "steward"},
    "engine": {"errors", "clock", "catalog", "facts", "steward"},
    "agent": {*_NODE, "steward"},
    "transport": {*_NODE, "steward"},
    "language": {"errors", "clock", "catalog"},
    "secrets": {"errors"},
    "compiler": {*_DOCUMENTS, "secrets"},
    "query": {"errors", "clock"},
    "store": {"errors", "clock", "catalog", "query"},
    "gitrepo": {"errors", "clock", "language"},
    "access": {*_STATE},
    "server": {*_STATE, "access", "compiler", "gitrepo", "secrets", "transport", "steward"},
    "pipeline": {*_STATE, "access", "compiler", "gitrepo", "secrets", "server"},
    "tasks": {*_STATE, "access", "gitrepo", "pipeline", "server"},
    "assistant": {*_STATE, "access", "engine"},
    "mcpserver": {*_STATE, "access", "assistant", "gitrepo", "pipeline", "server", "tasks",
                  "steward"},
    "agentflow": {"errors", "clock"},
    "api": {*_STATE, "access", "assistant", "gitrepo", "mcpserver", "pipeline", "server",
            "tasks"},
    "demo": {"errors", "clock", "catalog", "engine"},
    "cli": {"errors", "clock", "catalog", "language", "secrets", "compiler", "facts", "engine",
            "agent", "access", "server", "pipeline", "tasks", "assistant", "mcpserver",
            "agentflow", "api", "demo", "query", "store", "gitrepo", "steward"},
}
#: Shipped to hosts that have only python3: the standard library and these packages.
STDLIB_ONLY = ("catalog", "engine", "facts", "agent")


def _package_of(path: Path) -> str:
    return path.relative_to(SRC).with_suffix("").parts[0]


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, *, top_level_only: bool = False
             ) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(line, module, names)`` of each absolute import; ``top_level_only``: those run at
    import time (not inside functions or ``if TYPE_CHECKING``), which is what can cycle."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST]
    if top_level_only:
        nodes = []
        pending: list[ast.AST] = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and not _type_checking(node):
                pending.extend(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                pending.extend(node.body + node.orelse + node.finalbody)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_has_a_row() -> None:
    packages = {_package_of(p) for p in _sources()} - {"__init__", "__main__"}
    assert sorted(packages - MAY_IMPORT.keys()) == []
    assert sorted(MAY_IMPORT.keys() - packages) == []


def test_the_allowed_graph_has_no_cycle() -> None:
    graph = {name: allowed - {"steward"} for name, allowed in MAY_IMPORT.items()}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"MAY_IMPORT has a cycle: {exc.args[1]}")
    assert set(order) == set(MAY_IMPORT)


def test_packages_import_only_what_their_row_allows() -> None:
    offenders = []
    for path in _sources():
        package = _package_of(path)
        if package not in MAY_IMPORT:
            continue
        for line, module, _names in _imports(path):
            pieces = module.split(".")
            if pieces[0] != "steward" or (len(pieces) > 1 and pieces[1] == package):
                continue
            target = pieces[1] if len(pieces) > 1 else "steward"
            if target not in MAY_IMPORT[package]:
                offenders.append(f"{path.relative_to(SRC)}:{line}: {package} imports {module}")
    assert offenders == []


def test_no_private_name_crosses_a_package() -> None:
    offenders = []
    for path in _sources():
        package = _package_of(path)
        for line, module, names in _imports(path):
            pieces = module.split(".")
            if pieces[0] != "steward" or len(pieces) < 2 or pieces[1] == package:
                continue
            private = [p for p in pieces[2:] if p.startswith("_")]
            private += [n for n in names if n.startswith("_")]
            if private:
                offenders.append(f"{path.relative_to(SRC)}:{line}: {module} {private}")
    assert offenders == []


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_import_cycle_inside_a_package(package: str) -> None:
    paths = [p for p in _sources() if _package_of(p) == package]
    modules = {_module_of(p): p for p in paths}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _line, module, names in _imports(path, top_level_only=True):
            targets = [module, *(f"{module}.{n}" for n in names)]
            graph[name].update(t for t in targets if t in modules and t != name)
    # A package's __init__ importing its own modules is how it exports; the cycle that
    # matters is between sibling modules, so the edges *into* an __init__ are dropped.
    inits = {_module_of(p) for p in paths if p.name == "__init__.py"}
    for name in graph:
        graph[name] -= inits - {name}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"{package}: import cycle {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("package", STDLIB_ONLY)
def test_node_side_uses_only_the_standard_library(package: str) -> None:
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        for line, module, _names in _imports(path):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ("__future__", "steward"):
                offenders.append(f"{path.relative_to(SRC)}:{line}: {module}")
    assert offenders == []


_ARROW = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.MULTILINE)


def test_the_architecture_document_draws_this_graph() -> None:
    """docs/architecture.md's mermaid graph has exactly the arrows of :data:`MAY_IMPORT`
    that are not implied by others (its transitive reduction), so the picture stays true."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = {(a, b) for a, b in _ARROW.findall(text)}
    assert sorted(drawn - _reduced()) == [], "arrows drawn that the table does not allow"
    assert sorted(_reduced() - drawn) == [], "arrows of the table missing from the drawing"


def _reduced() -> set[tuple[str, str]]:
    graph = {name: allowed - {"steward"} for name, allowed in MAY_IMPORT.items()}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(graph[node])
        return seen

    edges = set()
    for name, targets in graph.items():
        for target in targets:
            if not any(target in reach(other) for other in targets - {target}):
                edges.add((name, target))
    return edges
