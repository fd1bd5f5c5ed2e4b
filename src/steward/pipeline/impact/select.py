"""Which nodes a change can affect, from what each node's last compile read.

A catalog's ``inputs`` name every repository file the compile read, every hierarchy path it
resolved (present or not) and every data key it looked up (docs/catalog.md). A node is a
candidate when:

* a changed file other than a data file is among its ``inputs.files`` (a profile, a role,
  a template or any template including it, a static file);
* a data file at one of its ``inputs.data_paths`` changed a top-level key it looked up
  (``inputs.data_keys``; a lookup of ``a.b`` reads the key ``a``), comparing both versions
  of the file key by key, nested mappings as a whole under their top-level key;
* a data file was created or deleted at one of its ``inputs.data_paths``;
* a template or static file was added that one of its inputs could now reach: a template
  whose include closure names it (dynamic includes name every template), or a profile whose
  ``template:``/``source:`` is an expression;
* it has no recorded inputs (no catalog yet, or one without them).

``classification.yaml`` and ``steward.yaml`` decide roles, environments and the hierarchy
itself, so a change to either recompiles every node of the environment; when the target is
the environment classification is evaluated on, nodes may also move between environments.
Changed files no compile reads (a README) affect nothing.

Cost: one pass over the fleet's recorded inputs, set lookups per node; nothing is compiled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from steward.catalog.canonical import canonical_json
from steward.language.declarations import DataFile
from steward.language.repository import (
    CLASSIFICATION_FILE,
    FILES_DIR,
    SETTINGS_FILE,
    Repository,
)
from steward.language.values import Const
from steward.pipeline.impact.model import FleetNode

TEMPLATES_PREFIX = "templates/"
FILES_PREFIX = f"{FILES_DIR}/"
#: Files whose change may reclassify or re-hierarchy any node.
WIDENING_FILES = (CLASSIFICATION_FILE, SETTINGS_FILE)


@dataclass(frozen=True, slots=True)
class ChangeScope:
    """What a change touches, in the terms selection matches against recorded inputs."""

    #: Every changed path: the ones given, plus any loaded file whose digest differs.
    changed_files: tuple[str, ...]
    #: Data file path → the top-level keys that differ between base and head.
    data_keys: Mapping[str, frozenset[str]]
    #: Data files that exist on one side only.
    data_files_added_or_removed: frozenset[str]
    #: Changed files other than data files that a compile reads.
    code_files: frozenset[str]
    #: Existing files whose readers may now reach a newly added template or static file.
    reach_files: frozenset[str]
    #: Why every node must be recompiled (empty: inputs decide).
    widen: tuple[str, ...]
    #: Whether classification may move nodes into or out of the environment.
    moves: bool
    #: Changed files no compile reads.
    ignored: tuple[str, ...]

    @property
    def changed_data_keys(self) -> list[str]:
        return sorted({key for keys in self.data_keys.values() for key in keys})


@dataclass(frozen=True, slots=True)
class Selection:
    mode: str
    reason: str
    candidates: list[FleetNode]
    nodes_in_environment: int
    nodes_without_inputs: int


def scope_change(
    base: Repository,
    head: Repository,
    changed_files: Iterable[str],
    environment: str,
    default_environment: str | None = None,
) -> ChangeScope:
    """Classify the changed files; data files are compared key by key."""
    changed = set(changed_files)
    for path in set(base.digests) | set(head.digests):
        if base.digests.get(path) != head.digests.get(path):
            changed.add(path)
    base_data = {data.path: data for data in base.data.values()}
    head_data = {data.path: data for data in head.data.values()}
    data_keys: dict[str, frozenset[str]] = {}
    added_removed: set[str] = set()
    code: set[str] = set()
    widen: list[str] = []
    ignored: list[str] = []
    for path in sorted(changed):
        if path not in base.digests and path not in head.digests:
            ignored.append(path)
        elif path in WIDENING_FILES:
            widen.append(path)
        elif path in base_data or path in head_data:
            before, after = base_data.get(path), head_data.get(path)
            if before is None or after is None:
                added_removed.add(path)
            keys = _changed_keys(before, after)
            if keys:
                data_keys[path] = keys
        else:
            code.add(path)
    default = default_environment or base.settings.default_environment
    return ChangeScope(
        changed_files=tuple(sorted(changed)),
        data_keys=data_keys,
        data_files_added_or_removed=frozenset(added_removed),
        code_files=frozenset(code),
        reach_files=frozenset(_reach_files(base, head, code)),
        widen=tuple(widen),
        moves=bool(widen) and environment in (default, head.settings.default_environment),
        ignored=tuple(ignored),
    )


def select_nodes(scope: ChangeScope, nodes: Sequence[FleetNode], environment: str) -> Selection:
    """The candidates among ``nodes`` (the environment's), with the reason in words."""
    without_inputs = [node for node in nodes if node.inputs is None]
    if scope.widen:
        files = " and ".join(scope.widen)
        reason = (
            f"{files} changed: classification and the data hierarchy may differ for any node, "
            f"so every node of {environment} is recompiled"
        )
        if scope.moves:
            reason += ", and nodes of other environments are classified again"
        return Selection("all", reason, list(nodes), len(nodes), len(without_inputs))
    candidates = [node for node in nodes if node.inputs is None or _affected(scope, node.inputs)]
    reasons = _reasons(scope)
    if without_inputs:
        reasons.append(
            f"{len(without_inputs)} node{'s' if len(without_inputs) != 1 else ''} without "
            "recorded inputs recompiled"
        )
    if not reasons:
        reasons.append("no file a compile reads changed")
    return Selection(
        "inputs", "; ".join(reasons), candidates, len(nodes), len(without_inputs)
    )


def _affected(scope: ChangeScope, inputs: Mapping[str, Any]) -> bool:
    files = inputs["files"]
    if any(path in files for path in scope.code_files) or any(
        path in files for path in scope.reach_files
    ):
        return True
    paths = inputs["data_paths"]
    if not scope.data_keys and not scope.data_files_added_or_removed:
        return False
    resolved = set(paths)
    if not resolved.isdisjoint(scope.data_files_added_or_removed):
        return True
    looked_up: set[str] | None = None
    for path, keys in scope.data_keys.items():
        if path in resolved:
            if looked_up is None:
                looked_up = {str(key).split(".", 1)[0] for key in inputs["data_keys"]}
            if not looked_up.isdisjoint(keys):
                return True
    return False


def _changed_keys(before: DataFile | None, after: DataFile | None) -> frozenset[str]:
    old: Mapping[str, Any] = before.data if before is not None else {}
    new: Mapping[str, Any] = after.data if after is not None else {}
    return frozenset(
        key for key in set(old) | set(new)
        if key not in old or key not in new or not _same(old[key], new[key])
    )


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (so ``1`` and ``true`` differ, as they do in a catalog)."""
    try:
        return canonical_json(a) == canonical_json(b)
    except (TypeError, ValueError):
        return repr(a) == repr(b)


def _reach_files(base: Repository, head: Repository, code: set[str]) -> set[str]:
    """Existing files through which a compile may now read a newly added template or file."""
    added_templates = {
        p for p in code if p.startswith(TEMPLATES_PREFIX) and p not in base.digests
    }
    added_static = {p for p in code if p.startswith(FILES_PREFIX) and p not in base.digests}
    reach: set[str] = set()
    if added_templates:
        for template in head.templates.values():
            if template.path in base.digests and not added_templates.isdisjoint(
                template.closure
            ):
                reach.add(template.path)
    for kind, added in (("template", added_templates), ("source", added_static)):
        if not added:
            continue
        for profile in head.profiles.values():
            if profile.file in base.digests and any(
                decl.content_source is not None
                and decl.content_source.name == kind
                and not isinstance(decl.content_source.value, Const)
                for decl in profile.resources
            ):
                reach.add(profile.file)
    return reach


def _reasons(scope: ChangeScope) -> list[str]:
    reasons: list[str] = []
    for path, keys in sorted(scope.data_keys.items()):
        if path in scope.data_files_added_or_removed:
            continue
        noun = "data key" if len(keys) == 1 else "data keys"
        reasons.append(f"{noun} {', '.join(sorted(keys))} changed in {path}")
    for path in sorted(scope.data_files_added_or_removed):
        reasons.append(f"data file {path} added or removed: nodes resolving that path")
    if scope.code_files:
        reasons.append(f"{', '.join(sorted(scope.code_files))} changed: nodes that read it")
    if scope.reach_files:
        reasons.append(
            f"new templates or files reachable through {', '.join(sorted(scope.reach_files))}"
        )
    if scope.ignored:
        reasons.append(f"{', '.join(scope.ignored)} read by no compile")
    return reasons
