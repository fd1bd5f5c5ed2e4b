"""Hierarchical data (Hiera-like): the node's hierarchy, lookups and merge strategies.

The hierarchy is resolved once per node (every resolved path goes into the catalog's inputs,
present or not, so adding ``data/nodes/web1.yaml`` later is visibly relevant). Lookups are
memoised per node and return the data files' own objects: nothing here copies constant data,
and nothing downstream mutates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Undefined

from steward.compiler.context import FactView, NodeContext
from steward.language.checks import SecretText, describe
from steward.language.declarations import DataFile
from steward.language.errors import DataError
from steward.language.repository import Repository

MERGE_STRATEGIES = ("first", "unique", "hash", "deep")
MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Hit:
    value: Any
    file: DataFile
    path: tuple[Any, ...]

    @property
    def where(self) -> str:
        return self.file.source.where(self.path)


@dataclass(frozen=True, slots=True)
class Found:
    """A lookup's merged value and where its most specific part came from."""

    value: Any
    file: DataFile
    path: tuple[Any, ...]

    @property
    def where(self) -> str:
        return self.file.source.where(self.path)


class DataResolver:
    """Lookups for one node."""

    def __init__(
        self,
        repo: Repository,
        ctx: NodeContext,
        *,
        facts: FactView,
        environment: str,
        roles: tuple[str, ...],
    ) -> None:
        self.repo = repo
        self.ctx = ctx
        self.default_merge = repo.settings.merge
        self.levels: list[tuple[str, DataFile | None]] = []
        data_dir = repo.settings.data_dir
        seen: set[str] = set()
        for level in repo.settings.hierarchy:
            for rel in _interpolate(level.parts, ctx.node, environment, roles, facts):
                if rel in seen:
                    continue
                seen.add(rel)
                path = f"{data_dir}/{rel}"
                ctx.data_paths.append(path)
                self.levels.append((path, repo.data.get(rel)))
        self._memo: dict[tuple[str, str], Found | None] = {}

    def lookup(self, key: Any, default: Any = MISSING, merge: Any = None) -> Any:
        """``lookup(key, default=..., merge=...)`` as templates and YAML call it."""
        found = self.find(key, merge)
        if found is not None:
            return found.value
        if default is not MISSING:
            return default
        consulted = ", ".join(
            f"{path}{'' if data is not None else ' (absent)'}" for path, data in self.levels
        )
        raise DataError(
            f"data key {key!r} not found for node {self.ctx.node!r} and no default given; "
            f"hierarchy consulted: {consulted or '(empty hierarchy)'}"
        )

    def find(self, key: Any, merge: Any = None) -> Found | None:
        """The merged value of ``key`` or None when no level has it."""
        if isinstance(key, SecretText) or not isinstance(key, str) or not key.strip():
            raise DataError(f"lookup: the key must be a non-empty string, got {describe(key)}")
        strategy = self.default_merge if merge is None else merge
        if strategy not in MERGE_STRATEGIES:
            raise DataError(
                f"lookup {key!r}: merge must be one of {', '.join(MERGE_STRATEGIES)}, "
                f"got {strategy!r}"
            )
        self.ctx.data_keys.add(key)
        memo_key = (key, strategy)
        if memo_key in self._memo:
            return self._memo[memo_key]
        found = self._find(key, strategy)
        self._memo[memo_key] = found
        return found

    def _find(self, key: str, strategy: str) -> Found | None:
        top, *rest = key.split(".")
        files = self.ctx.files
        first = strategy == "first"
        found: list[tuple[Any, DataFile]] = []
        for _path, data in self.levels:
            if data is None:
                continue
            files[data.path] = data.digest  # consulted: an input, whether it holds the key
            mapping = data.data
            if top not in mapping:
                continue
            value = _dig(mapping[top], rest) if rest else mapping[top]
            if value is MISSING:
                continue
            found.append((value, data))
            if first:
                break
        if not found:
            return None
        path = (top, *rest)
        value, most_specific = found[0]
        if first:
            return Found(value, most_specific, path)
        hits = [_Hit(value, data, path) for value, data in found]
        if strategy == "unique":
            return Found(_unique(key, hits), most_specific, path)
        if strategy == "hash":
            return Found(_hash(key, hits), most_specific, path)
        merged = hits[0].value
        for hit in hits[1:]:
            merged = _deep(merged, hit.value)
        return Found(merged, most_specific, path)


def _interpolate(
    parts: tuple[str | tuple[str, ...], ...],
    node: str,
    environment: str,
    roles: tuple[str, ...],
    facts: FactView,
) -> list[str]:
    """Every path a hierarchy level resolves to ({role} yields one per role); [] to skip."""
    results = [""]
    for part in parts:
        if isinstance(part, str):
            results = [r + part for r in results]
            continue
        if part == ("node",):
            values = [node]
        elif part == ("environment",):
            values = [environment]
        elif part == ("role",):
            values = list(roles)
        else:
            fact = fact_at(facts, part[1:])
            values = [] if fact is MISSING else [fact]
        if not values:
            return []
        results = [r + v for r in results for v in values]
    return results


def fact_at(facts: FactView, path: tuple[str, ...]) -> Any:
    """The scalar fact at ``path`` as text, or MISSING (absent, or not a scalar)."""
    current: Any = facts
    for part in path:
        if not isinstance(current, FactView):
            return MISSING
        current = current[part]
        if isinstance(current, Undefined):
            return MISSING
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, str | int | float):
        return str(current)
    return MISSING


def _dig(value: Any, rest: list[str]) -> Any:
    for part in rest:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def _unique(key: str, hits: list[_Hit]) -> list[Any]:
    result: list[Any] = []
    seen: set[str] = set()
    for hit in hits:
        if isinstance(hit.value, dict):
            raise DataError(
                f"lookup {key!r} with merge 'unique' needs lists or scalars, but "
                f"{hit.where} holds a mapping",
                location=hit.where,
            )
        for item in hit.value if isinstance(hit.value, list) else [hit.value]:
            marker = json.dumps(item, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                result.append(item)
    return result


def _hash(key: str, hits: list[_Hit]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for hit in hits:
        if not isinstance(hit.value, dict):
            raise DataError(
                f"lookup {key!r} with merge 'hash' needs mappings, but {hit.where} holds "
                f"{describe(hit.value)}",
                location=hit.where,
            )
        for name, item in hit.value.items():
            if name not in result:
                result[name] = item
    return result


def _deep(specific: Any, general: Any) -> Any:
    """Merge ``general`` under ``specific``: mappings recursively, lists as a union."""
    if isinstance(specific, dict) and isinstance(general, dict):
        merged = dict(specific)
        for name, item in general.items():
            merged[name] = _deep(specific[name], item) if name in specific else item
        return merged
    if isinstance(specific, list) and isinstance(general, list):
        result = list(specific)
        seen = {json.dumps(item, sort_keys=True) for item in specific}
        for item in general:
            marker = json.dumps(item, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                result.append(item)
        return result
    return specific
