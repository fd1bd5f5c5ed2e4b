"""The layers import one way, and the node side needs nothing but the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "steward"

#: Node-side packages: shipped to hosts with only python3.
STDLIB_ONLY = ("catalog", "engine", "facts", "agent")
#: What each node-side package may import from steward itself.
ALLOWED_INTERNAL = {
    "catalog": {"steward.catalog", "steward.errors", "steward.clock"},
    "engine": {"steward.catalog", "steward.errors", "steward.clock", "steward.engine", "steward.facts",
               "steward"},
    "facts": {"steward.facts", "steward.errors", "steward.clock", "steward"},
    "agent": {"steward.agent", "steward.catalog", "steward.engine", "steward.facts",
              "steward.errors", "steward.clock", "steward"},
}
#: Layer order: a package may import only from packages at the same or an earlier position.
#: (``query`` precedes ``store``: the store runs the query compiler; the compiler needs no store.)
LAYERS = ["errors", "clock", "catalog", "language", "secrets", "compiler", "facts", "engine", "agent",
          "transport", "query", "store", "gitrepo", "access", "server", "pipeline", "tasks", "assistant", "mcpserver",
          "agentflow", "api", "demo", "cli"]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("package", STDLIB_ONLY)
def test_node_side_uses_only_the_standard_library(package: str) -> None:
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top == "steward":
                if not any(module == a or module.startswith(a + ".")
                           for a in ALLOWED_INTERNAL[package]) and module != "steward":
                    offenders.append(f"{path.relative_to(SRC)}:{line}: {module}")
            elif top not in sys.stdlib_module_names and top != "__future__":
                offenders.append(f"{path.relative_to(SRC)}:{line}: {module}")
    assert offenders == []


def test_layers_import_one_way() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        layer = parts[0] if parts[0] in rank else None
        if layer is None:
            continue
        for line, module in _imports(path):
            pieces = module.split(".")
            if pieces[0] != "steward" or len(pieces) < 2 or pieces[1] not in rank:
                continue
            if rank[pieces[1]] > rank[layer]:
                offenders.append(f"{path.relative_to(SRC)}:{line}: {layer} imports {module}")
    assert offenders == []
