"""The document policies see as ``input``, and only as much of it as they can read.

rego-cpp ingests input at roughly a third of a millisecond per impact-report node, so a
3,000-node report would cost over a second before any rule runs. Two things keep evaluation
proportional to what policies actually need, without changing what any policy can observe:

- ``resource_changes``: the per-node resource diffs grouped by identical diff, each with the
  certnames it applies to (Terraform's plan JSON uses the same name for the same idea). A
  one-data-key change to 3,000 nodes is one entry, not 3,000.
- projection: every path through which a module can reach the input is a literal reference
  starting with ``input`` (Rego has no other way in). We collect them from the source; parts of
  the document no module refers to are left out. Any reference we cannot bound (bare
  ``input``, ``input[x]``) keeps the whole document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from steward.pipeline.policy.rego import RegoModule, blank_strings_and_comments

#: Keys of a per-node resource diff that ``resource_changes`` copies (plus ``nodes``).
RESOURCE_KEYS = ("resource", "type", "title", "action", "before", "after", "properties",
                 "content_diff", "sensitive")

InputPath = tuple[str, ...]


def policy_input(impact: Mapping[str, Any], *, title: str = "",
                 environment: str | None = None, kind: str = "normal") -> dict[str, Any]:
    """The documented policy input for an impact report (see docs/policy.md)."""
    change = impact.get("change") or {}
    proposer = change.get("proposer") or {}
    env = environment if environment is not None else change.get("environment")
    return {
        "environment": env,
        "change": {
            "id": change.get("id"),
            "environment": change.get("environment", env),
            "proposer": {"name": proposer.get("name"), "kind": proposer.get("kind")},
            "changed_files": list(change.get("changed_files") or []),
            "changed_data_keys": list(change.get("changed_data_keys") or []),
            "title": title,
            "kind": kind,
        },
        "impact": impact,
    }


def resource_changes(impact: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-node resource diffs grouped by identical diff, sorted, each with its certnames."""
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    nodes = impact.get("nodes") if isinstance(impact, Mapping) else None
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, Mapping):
            continue
        certname = node.get("certname")
        for resource in node.get("resources") or []:
            if not isinstance(resource, Mapping):
                continue
            entry = {key: resource[key] for key in RESOURCE_KEYS if key in resource}
            key = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            found = groups.get(key)
            if found is None:
                groups[key] = (entry, [certname] if isinstance(certname, str) else [])
            elif isinstance(certname, str):
                found[1].append(certname)
    ordered = sorted(groups.items(), key=lambda item: (str(item[1][0].get("resource")), item[0]))
    return [{**entry, "nodes": sorted(set(certnames))} for _, (entry, certnames) in ordered]


# -- which parts of the input modules can reach -----------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INPUT = re.compile(r"(?<![A-Za-z0-9_.])input(?![A-Za-z0-9_])")
_BRACKET_STRING = re.compile(r'\[\s*"((?:[^"\\]|\\.)*)"\s*\]')


def referenced_paths(modules: Iterable[RegoModule]) -> frozenset[InputPath]:
    """Every input path the modules can read; ``()`` means the whole input."""
    paths: set[InputPath] = set()
    for module in modules:
        blanked = blank_strings_and_comments(module.source)
        for match in _INPUT.finditer(blanked):
            paths.add(_path_after(module.source, blanked, match.end()))
    return frozenset(_minimal(paths))


def _path_after(source: str, blanked: str, index: int) -> InputPath:
    """The literal path following an ``input`` at ``index``: ``.a.b`` and ``["a"]`` steps."""
    path: list[str] = []
    while index < len(blanked):
        if blanked[index] == ".":
            ident = _IDENT.match(blanked, index + 1)
            if ident is None:
                break
            path.append(ident.group(0))
            index = ident.end()
        elif blanked[index] == "[":
            literal = _BRACKET_STRING.match(source, index)
            if literal is None:
                break
            path.append(json.loads(f'"{literal.group(1)}"'))
            index = literal.end()
        else:
            break
    return tuple(path)


def _minimal(paths: set[InputPath]) -> set[InputPath]:
    """Drop paths inside another kept path (``a.b`` is covered by ``a``)."""
    kept: set[InputPath] = set()
    for path in sorted(paths, key=len):
        if not any(path[:len(prefix)] == prefix for prefix in kept):
            kept.add(path)
    return kept


def project(document: Any, paths: frozenset[InputPath]) -> Any:
    """The parts of ``document`` under ``paths`` (all of it when ``()`` is among them)."""
    if () in paths or not isinstance(document, Mapping):
        return document
    result: dict[str, Any] = {}
    for key in sorted({path[0] for path in paths}):
        if key not in document:
            continue
        rest = frozenset(path[1:] for path in paths if path[0] == key)
        result[key] = project(document[key], rest)
    return result


def needs(paths: frozenset[InputPath], key: str) -> bool:
    """Whether any referenced path reaches ``key`` at the top of the input."""
    return any(not path or path[0] == key for path in paths)
