"""The document policies see as ``input``, and only as much of it as they can read.

The pipeline builds it as a typed :class:`PolicyInput` around the typed impact report; it
becomes JSON only when it is handed to Rego (:func:`steward.pipeline.policy.evaluate.evaluate`).

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
from dataclasses import dataclass
from typing import Any

from steward.pipeline.impact.report import ImpactReport
from steward.pipeline.policy.rego import RegoModule, blank_strings_and_comments

InputPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """The change record's policy-relevant fields (``input.change``)."""

    id: str | None
    environment: str
    proposer_name: str | None
    proposer_kind: str | None
    changed_files: tuple[str, ...]
    changed_data_keys: tuple[str, ...]
    title: str
    #: ``normal`` or ``rollback``.
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "environment": self.environment,
                "proposer": {"name": self.proposer_name, "kind": self.proposer_kind},
                "changed_files": list(self.changed_files),
                "changed_data_keys": list(self.changed_data_keys),
                "title": self.title, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """What policies see as ``input`` (schemas/policy-input.schema.json), before
    ``resource_changes`` is derived and the document projected (:func:`evaluate`)."""

    environment: str
    change: PolicyChange
    impact: ImpactReport

    def to_json(self, *, with_impact: bool = True) -> dict[str, Any]:
        """The JSON document; ``with_impact=False`` leaves out the report, for policies
        that do not read it (serialising a large report is not free)."""
        document: dict[str, Any] = {"environment": self.environment,
                                    "change": self.change.to_json()}
        if with_impact:
            document["impact"] = self.impact.to_json()
        return document


def policy_input(impact: ImpactReport, *, title: str = "",
                 environment: str | None = None, kind: str = "normal") -> PolicyInput:
    """The documented policy input for an impact report (see docs/policy.md)."""
    change = impact.change
    proposer = change.proposer
    return PolicyInput(
        environment=environment if environment is not None else change.environment,
        change=PolicyChange(
            id=change.id, environment=change.environment,
            proposer_name=proposer.name if proposer is not None else None,
            proposer_kind=proposer.kind if proposer is not None else None,
            changed_files=change.changed_files, changed_data_keys=change.changed_data_keys,
            title=title, kind=kind),
        impact=impact,
    )


def resource_changes(impact: ImpactReport) -> list[dict[str, Any]]:
    """Per-node resource diffs grouped by identical diff, sorted, each with its certnames."""
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for node in impact.nodes:
        for resource in node.resources:
            entry = resource.to_json()
            key = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            found = groups.get(key)
            if found is None:
                groups[key] = (entry, [node.certname])
            else:
                found[1].append(node.certname)
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
