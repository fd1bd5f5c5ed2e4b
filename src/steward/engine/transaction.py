"""One run over a catalog: order the graph, check and sync each resource, refresh, report.

Failure, noop and refresh all travel along the catalog's edges:

* a failed resource skips everything that depends on it, directly or not, and each skipped
  resource names the failure that caused it;
* in noop, a resource whose state cannot be read because a dependency is not there yet (the
  package that ships a unit, the user that should own a file) is *pending*, not failed;
* a change (or, in noop, a would-be change) of the source of a ``notifies`` or
  ``subscription-of`` edge triggers one refresh of the target.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steward.catalog.model import REFRESH_RELATIONSHIPS, Catalog, Resource
from steward.catalog.sensitive import REDACTED, is_sensitive_placeholder, placeholder_key
from steward.catalog.types import TYPES
from steward.engine.context import Context
from steward.engine.provider import Change, Pending, Provider, ProviderError, Unresolved
from steward.engine.providers import provider_class
from steward.engine.runner import CommandTimeout
from steward.engine.state import NodeState, fingerprint
from steward.errors import CatalogError


@dataclass
class Event:
    property: str
    old_value: Any
    new_value: Any
    status: str  # success | failure | noop | skipped
    message: str
    corrective_change: bool = False
    diff: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "property": self.property,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "status": self.status,
            "message": self.message,
            "corrective_change": self.corrective_change,
        }
        if self.diff is not None:
            document["diff"] = self.diff
        return document


@dataclass
class ResourceResult:
    resource: Resource
    status: str = "unchanged"  # unchanged | changed | failed | skipped | noop | pending
    events: list[Event] = field(default_factory=list)
    message: str | None = None
    failed_dependencies: list[str] = field(default_factory=list)
    evaluation_time: float = 0.0
    #: Skipped because --root cannot confine it (not because anything failed).
    unconfined: bool = False

    @property
    def out_of_sync(self) -> bool:
        return any(e.property != "refresh" for e in self.events)

    @property
    def corrective_change(self) -> bool:
        return any(e.corrective_change for e in self.events)

    @property
    def would_change(self) -> bool:
        """Changed, or would change in noop: what triggers refreshes and pending dependents."""
        return self.status in ("changed", "noop", "pending")


@dataclass
class RunResult:
    catalog: Catalog
    noop: bool
    results: list[ResourceResult]
    start: float
    end: float
    sensitive: frozenset[str]
    logs: list[dict[str, str]]


def _resolve_params(
    resource: Resource, sensitive_values: Mapping[str, str]
) -> tuple[dict[str, Any], frozenset[str]]:
    """Fill type defaults and the namevar; swap sensitive placeholders for their values."""
    rtype = TYPES.get(resource.type)
    if rtype is None:
        raise ProviderError(f"unknown resource type {resource.type!r}")
    params: dict[str, Any] = {}
    for param in rtype.params:
        if param.default is not None:
            params[param.name] = param.default
    params[rtype.namevar] = resource.title
    sensitive: set[str] = set()
    for name, given in resource.parameters.items():
        value = given
        if is_sensitive_placeholder(given):
            key = placeholder_key(given)
            if key not in sensitive_values:
                raise ProviderError(
                    f"parameter {name!r} is sensitive ({key}) and its value was not delivered "
                    "with the catalog (pass --secrets)"
                )
            value = sensitive_values[key]
            sensitive.add(name)
        params[name] = value
    return params, frozenset(sensitive)


def _managed_paths(catalog: Catalog) -> list[str]:
    """Every path some resource manages, so a purging directory leaves them alone."""
    paths: list[str] = []
    for r in catalog.resources:
        if r.type in ("file", "directory", "symlink"):
            paths.append(str(r.parameters.get("path", r.title)))
        elif r.type == "line" and isinstance(r.parameters.get("path"), str):
            paths.append(r.parameters["path"])
        elif r.type == "host":
            paths.append(str(r.parameters.get("target", "/etc/hosts")))
    return paths


def _order(catalog: Catalog) -> tuple[list[int], dict[int, list[int]], dict[int, list[int]]]:
    """Topological order, ties broken by catalog order so runs are reproducible."""
    index = {r.ref: i for i, r in enumerate(catalog.resources)}
    preds: dict[int, list[int]] = {i: [] for i in range(len(catalog.resources))}
    refresh_from: dict[int, list[int]] = {}
    for edge in catalog.edges:
        source, target = index[edge.source], index[edge.target]
        preds[target].append(source)
        if edge.relationship in REFRESH_RELATIONSHIPS:
            refresh_from.setdefault(target, []).append(source)
    succs: dict[int, list[int]] = {i: [] for i in preds}
    indegree = {i: len(p) for i, p in preds.items()}
    for target, sources in preds.items():
        for source in sources:
            succs[source].append(target)
    ready = [i for i, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        current = heapq.heappop(ready)
        order.append(current)
        for nxt in succs[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, nxt)
    if len(order) != len(preds):
        stuck = sorted(catalog.resources[i].ref for i, d in indegree.items() if d > 0)
        raise CatalogError("dependency cycle among: " + ", ".join(stuck))
    return order, preds, refresh_from


class Transaction:
    def __init__(
        self,
        catalog: Catalog,
        ctx: Context,
        sensitive_values: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.ctx = ctx
        self.sensitive_values = dict(sensitive_values or {})
        self.state = NodeState.load(ctx.state_dir / "state.json")

    def run(self) -> RunResult:
        start = time.time()
        catalog, ctx = self.catalog, self.ctx
        order, preds, refresh_from = _order(catalog)
        ctx.managed_paths = frozenset(_managed_paths(catalog))
        results = [ResourceResult(r) for r in catalog.resources]
        providers: dict[int, Provider] = {}
        by_class: dict[type[Provider], list[Provider]] = {}
        for i, resource in enumerate(catalog.resources):
            result = results[i]
            rtype = TYPES.get(resource.type)
            if rtype is not None and ctx.root is not None and not rtype.path_based:
                result.status = "skipped"
                result.unconfined = True
                result.message = (
                    f"not enforced under --root: {resource.type} resources act on the whole "
                    "system, which a --root sandbox does not confine"
                )
                continue
            try:
                params, sensitive = _resolve_params(resource, self.sensitive_values)
                cls = provider_class(resource.type)
            except (ProviderError, KeyError) as exc:
                result.status = "failed"
                result.message = str(exc) if isinstance(exc, ProviderError) else (
                    f"no provider for type {resource.type!r}")
                continue
            provider = cls(resource, params, ctx, sensitive)
            providers[i] = provider
            by_class.setdefault(cls, []).append(provider)
        prefetch_errors: dict[type[Provider], str] = {}
        for cls, members in by_class.items():
            try:
                cls.prefetch(ctx, members)
            except (ProviderError, CommandTimeout, OSError) as exc:
                prefetch_errors[cls] = f"reading current state failed: {exc}"

        for i in order:
            result = results[i]
            if result.status in ("skipped", "failed") and i not in providers:
                continue
            began = time.perf_counter()
            failed_deps = self._failed_dependencies(i, preds, results)
            if failed_deps:
                result.status = "skipped"
                result.failed_dependencies = failed_deps
                result.message = "skipped because of failed dependencies: " + ", ".join(
                    failed_deps
                )
            else:
                provider = providers[i]
                error = prefetch_errors.get(type(provider))
                if error:
                    result.status, result.message = "failed", error
                else:
                    self._evaluate(provider, result, i, preds, results)
                    self._maybe_refresh(provider, result, i, refresh_from, results)
            result.evaluation_time = time.perf_counter() - began

        if not ctx.noop:
            self._record_history(providers, results)
        return RunResult(
            catalog=catalog,
            noop=ctx.noop,
            results=[results[i] for i in order],
            start=start,
            end=time.time(),
            sensitive=frozenset(self.sensitive_values.values()),
            logs=[entry.to_json() for entry in ctx.logs],
        )

    @staticmethod
    def _failed_dependencies(
        i: int, preds: dict[int, list[int]], results: list[ResourceResult]
    ) -> list[str]:
        failed: list[str] = []
        for p in preds[i]:
            dep = results[p]
            if dep.status == "failed":
                failed.append(dep.resource.ref)
            elif dep.status == "skipped" and dep.failed_dependencies:
                failed.extend(dep.failed_dependencies)
        return sorted(set(failed))

    @staticmethod
    def _dependencies_where(
        i: int, preds: dict[int, list[int]], results: list[ResourceResult], attribute: str
    ) -> list[str]:
        """Dependencies, direct or transitive, whose result has ``attribute`` set."""
        seen: set[int] = set()
        stack = list(preds[i])
        found: list[str] = []
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            if getattr(results[p], attribute):
                found.append(results[p].resource.ref)
            stack.extend(preds[p])
        return sorted(found)

    def _evaluate(
        self,
        provider: Provider,
        result: ResourceResult,
        i: int,
        preds: dict[int, list[int]],
        results: list[ResourceResult],
    ) -> None:
        noop = self.ctx.noop or provider.params.get("noop") is True
        try:
            changes = provider.check()
        except Pending as exc:
            result.status, result.message = "pending", str(exc)
            return
        except Unresolved as exc:
            # What is missing may be what a dependency would create: in noop a dependency
            # with pending changes, under --root one the sandbox does not enforce.
            pending = (self._dependencies_where(i, preds, results, "would_change")
                       if noop else [])
            unconfined = self._dependencies_where(i, preds, results, "unconfined")
            if pending:
                result.status = "pending"
                result.message = f"{exc}; expected after pending changes to {', '.join(pending)}"
            elif unconfined:
                result.status = "skipped"
                result.message = (f"{exc}; depends on {', '.join(unconfined)}, which --root "
                                  "does not enforce")
            else:
                result.status, result.message = "failed", str(exc)
            return
        except (ProviderError, CommandTimeout, OSError) as exc:
            result.status, result.message = "failed", str(exc)
            return
        if not changes:
            return
        desired = provider.desired()
        corrective = {c.property: self._is_corrective(provider, c, desired) for c in changes}
        if noop:
            result.status = "noop"
            for change in changes:
                result.events.append(self._event(provider, change, "noop", corrective))
            return
        try:
            provider.sync(changes)
        except (ProviderError, CommandTimeout, OSError) as exc:
            result.status, result.message = "failed", str(exc)
            for change in changes:
                event = self._event(provider, change, "failure", corrective)
                event.message = f"{event.message}: {exc}"
                result.events.append(event)
            return
        result.status = "changed"
        for change in changes:
            result.events.append(self._event(provider, change, "success", corrective))

    def _is_corrective(self, provider: Provider, change: Change, desired: dict[str, Any]) -> bool:
        historical = self.state.historical(provider.resource.ref, change.property)
        if historical is None or change.property not in desired:
            return False
        return bool(historical == fingerprint(desired[change.property]))

    @staticmethod
    def _event(
        provider: Provider, change: Change, status: str, corrective: dict[str, bool]
    ) -> Event:
        sensitive = change.property in provider.sensitive
        message = (f"changed {change.property} (sensitive value redacted)" if sensitive
                   else change.message)
        if status == "noop" and not message.startswith("would"):
            message = f"would have {message}"
        if sensitive:
            return Event(change.property, REDACTED, REDACTED, status, message,
                         corrective[change.property])
        return Event(change.property, change.old, change.new, status, message,
                     corrective[change.property], change.diff)

    def _maybe_refresh(
        self,
        provider: Provider,
        result: ResourceResult,
        i: int,
        refresh_from: dict[int, list[int]],
        results: list[ResourceResult],
    ) -> None:
        if result.status in ("failed", "pending"):
            return
        triggers = sorted(
            results[s].resource.ref for s in refresh_from.get(i, ()) if results[s].would_change
        )
        if not triggers or not provider.rtype.refreshable:
            return
        source = ", ".join(triggers)
        noop = self.ctx.noop or provider.params.get("noop") is True
        if noop:
            result.events.append(Event("refresh", None, None, "noop",
                                       f"would have refreshed (triggered by {source})"))
            if result.status == "unchanged":
                result.status = "noop"
            return
        try:
            message = provider.refresh()
        except (ProviderError, CommandTimeout, OSError) as exc:
            result.status = "failed"
            result.message = f"refresh failed: {exc}"
            result.events.append(Event("refresh", None, None, "failure",
                                       f"refresh triggered by {source} failed: {exc}"))
            return
        if message is None:
            return
        result.events.append(Event("refresh", None, None, "success",
                                   f"{message} (triggered by {source})"))
        if result.status == "unchanged":
            result.status = "changed"

    def _record_history(
        self, providers: dict[int, Provider], results: list[ResourceResult]
    ) -> None:
        """Remember the desired values of every resource now in sync; forget unmanaged ones."""
        history: dict[str, dict[str, Any]] = {}
        for i, provider in providers.items():
            ref = provider.resource.ref
            if results[i].status in ("unchanged", "changed"):
                history[ref] = {k: fingerprint(v) for k, v in provider.desired().items()}
            elif ref in self.state.resources:
                history[ref] = self.state.resources[ref]
        self.state.resources = history
        try:
            self.state.save()
        except OSError as exc:
            self.ctx.log("warning", "engine", f"could not save drift history: {exc}")


def apply_catalog(
    catalog: Catalog, ctx: Context, sensitive_values: Mapping[str, str] | None = None
) -> RunResult:
    return Transaction(catalog, ctx, sensitive_values).run()
