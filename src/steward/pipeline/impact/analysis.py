"""Impact analysis: "what will happen if this change runs?" (docs/pipeline.md, format 1).

    fleet = StoreFleet(store.engine)
    report = analyse_impact(ChangeInfo("production", base_sha, head_sha, id="chg-3",
                                       changed_files=("data/roles/web.yaml",)),
                            base_repo, head_repo, fleet, secrets=secrets)
    print(render_text(report))

The stages, each in its own module:

1. :mod:`~steward.pipeline.impact.select` — which nodes the change can affect, from the
   ``inputs`` recorded in each node's current catalog (cost follows the change, not the
   fleet); classification or settings changes recompile the whole environment;
2. :mod:`~steward.pipeline.impact.compile` — each candidate compiled at base and at head
   with its latest facts (a process pool for large sets); a failing compile is that node's
   ``failed`` entry;
3. :mod:`~steward.pipeline.impact.diff` — resource by resource, property by property, file
   content as a unified diff, secrets redacted, provenance of both sides;
4. :mod:`~steward.pipeline.impact.summary` — counts, blast radius, risk with reasons;
5. :mod:`~steward.pipeline.impact.render` — the text a person reads.

The report is an :class:`~steward.pipeline.impact.report.ImpactReport`, whose JSON is
canonical: the same change, fleet and secrets give the same bytes, and ``digest``
(``sha256:`` of the canonical JSON of everything else) is what approvals bind to.
Live prediction (asking agents for a noop run) is a later stage: every node's ``live`` is
null here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from steward.language import Repository
from steward.pipeline.impact.compile import (
    PARALLEL_MIN_NODES,
    analyse_nodes,
    as_batches,
    default_workers,
    make_sides,
)
from steward.pipeline.impact.fleet import FACTS_BATCH, StoreFleet
from steward.pipeline.impact.model import (
    REPORT_FORMAT,
    ChangeInfo,
    FleetNode,
    ImpactError,
    NodeTask,
    Timings,
)
from steward.pipeline.impact.render import render_text
from steward.pipeline.impact.report import (
    ImpactChange,
    ImpactReport,
    ImpactSelection,
)
from steward.pipeline.impact.select import Selection, scope_change, select_nodes
from steward.pipeline.impact.summary import summarise
from steward.secrets.store import SecretStore

__all__ = [
    "REPORT_FORMAT",
    "ChangeInfo",
    "Fleet",
    "FleetNode",
    "ImpactError",
    "ImpactReport",
    "StoreFleet",
    "Timings",
    "analyse_impact",
    "render_text",
]


class Fleet(Protocol):
    """Where the nodes come from (:class:`StoreFleet` reads the state store)."""

    def nodes(self, environment: str | None = None) -> list[FleetNode]: ...

    def facts(self, certnames: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]: ...


def analyse_impact(
    change: ChangeInfo,
    base: Repository,
    head: Repository,
    fleet: Fleet,
    *,
    secrets: SecretStore | None = None,
    pins: Mapping[str, str] | None = None,
    workers: int | None = None,
    recompile_all: bool = False,
    parallel_min: int | None = None,
    timings: Timings | None = None,
) -> ImpactReport:
    """The impact report of ``change`` on its environment's nodes.

    ``pins`` maps certnames to the environment the server pins them to (classification
    cannot move those). ``workers`` bounds the compile processes (default: the usable
    CPUs); below ``parallel_min`` candidates everything runs in this process.
    ``recompile_all`` ignores the recorded inputs and recompiles every node (the naive
    analysis, for comparison). Raises :class:`ImpactError` only when the fleet cannot be
    read; nodes whose compile fails are reported, not raised.
    """
    env = change.environment
    if not isinstance(env, str) or not env:
        raise ImpactError("impact analysis needs the change's target environment")
    pinned = dict(pins or {})
    clock = _Clock(timings)
    scope = scope_change(base, head, change.changed_files, env, change.default_environment)
    members = fleet.nodes(env)
    clock.lap("fleet")
    if recompile_all:
        selection = Selection("all", f"every node of {env} recompiled, recorded inputs "
                              "ignored (as requested)", list(members), len(members),
                              sum(1 for node in members if node.inputs is None))
    else:
        selection = select_nodes(scope, members, env)
    outsiders: list[FleetNode] = []
    if scope.moves:
        outsiders = [node for node in fleet.nodes(None)
                     if node.environment != env and node.certname not in pinned]
    clock.lap("select")

    stored = {node.certname: node.catalog_hash for node in selection.candidates}
    kinds = {node.certname: "member" for node in selection.candidates}
    kinds.update((node.certname, "outsider") for node in outsiders)
    order = [node.certname for node in selection.candidates] + [n.certname for n in outsiders]

    def tasks() -> Iterator[NodeTask]:
        for certname, facts in fleet.facts(order):
            yield NodeTask(certname, facts, kinds[certname], stored.get(certname),
                           scope.moves and certname not in pinned)

    sides = make_sides(base, head, env, change.base, change.head, secrets,
                       scope.code_files)
    count = workers if workers is not None else default_workers()
    entries, used = analyse_nodes(
        sides, as_batches(tasks(), FACTS_BATCH), total=len(order), workers=count,
        parallel_min=PARALLEL_MIN_NODES if parallel_min is None else parallel_min,
    )
    clock.lap("compile")
    if timings is not None:
        timings.workers = used
    entries.sort(key=lambda entry: entry.certname)
    report = ImpactReport(
        format=REPORT_FORMAT,
        change=ImpactChange(
            id=change.id,
            environment=env,
            base=change.base,
            head=change.head,
            proposer=change.proposer,
            changed_files=tuple(scope.changed_files),
            changed_data_keys=tuple(scope.changed_data_keys),
        ),
        selection=ImpactSelection(
            mode=selection.mode,
            reason=selection.reason,
            nodes_in_environment=selection.nodes_in_environment,
            nodes_recompiled=len(selection.candidates),
            nodes_without_inputs=selection.nodes_without_inputs,
            nodes_classified_from_other_environments=len(outsiders),
        ),
        summary=summarise(entries, environment=env,
                          nodes_in_environment=selection.nodes_in_environment,
                          widened=bool(scope.widen)),
        nodes=tuple(entries),
        digest="",
    ).sealed()
    clock.lap("report")
    return report


class _Clock:
    def __init__(self, timings: Timings | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()

    def lap(self, phase: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.timings is not None:
            phases, used = self.timings.phases, self.timings.cpu
            phases[phase] = phases.get(phase, 0.0) + now - self.last
            used[phase] = used.get(phase, 0.0) + cpu - self.last_cpu
        self.last, self.last_cpu = now, cpu
