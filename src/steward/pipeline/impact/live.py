"""Live prediction: what a change would really do on each machine, asked of the machines.

The static impact analysis compares two compiles; it cannot see the machine. Live
prediction asks every affected node to run the change's **proposed catalog** (compiled at
the change's head, for that node) in **noop**, and attaches what the node reports to the
impact report's ``live`` field, including drift that exists today (``corrective_change``).

How a node is asked: a run-now request carrying the commit (``steward_run_requests``).
A pull agent's long poll answers with the commit, the agent fetches
``/api/v1/nodes/{certname}/catalog?commit=SHA`` (allowed only while that request grants it),
runs it in noop and submits the report as usual; the SSH scheduler pushes the catalog
compiled at that commit. The report's ``code_id`` is the head commit, so the answer is the
first noop report of that commit the node sends after the request.

Per node, ``live`` is::

    {"status": "reported" | "timeout" | "unreachable", "exit_code": int | null,
     "report": "<report hash>" | null, "events": [{"resource", "property", "old", "new",
     "corrective_change", "diff"?}], "failures": [{"resource", "message"}], "detail": str | null}

``timeout``: no such report within the timeout (an agent that is not running, or an old
agent that ignores the commit); ``unreachable``: the node cannot be asked at all (not
enrolled or not approved here, or the SSH push could not reach it). Secret values never
appear: reports are scrubbed by the engine, and every value is checked again here against
the secret store.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from steward.catalog.canonical import content_hash
from steward.clock import SYSTEM_CLOCK, Clock, utcnow
from steward.pipeline.impact.model import SENSITIVE_TEXT
from steward.secrets.store import SecretStore
from steward.server.enrollment import Enrollment
from steward.server.runs import RunSignals
from steward.store.reading import other_noop_commit, report_resources, reports_of_commit

LiveStatus = Literal["reported", "timeout", "unreachable"]

#: Impact statuses whose nodes are asked (their proposed catalog exists and differs).
LIVE_NODE_STATUSES = ("changed", "new")
#: Nodes asked at once (requests written, not runs: the agents run on their own).
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """One node to ask, and the environment its proposed catalog is compiled for."""

    certname: str
    environment: str


@dataclass(frozen=True, slots=True)
class LiveResult:
    """One node's answer, as the impact report's ``live`` field shows it."""

    certname: str
    status: LiveStatus
    exit_code: int | None = None
    report: str | None = None
    events: tuple[dict[str, Any], ...] = ()
    failures: tuple[dict[str, Any], ...] = ()
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "exit_code": self.exit_code, "report": self.report,
                "events": [dict(e) for e in self.events],
                "failures": [dict(f) for f in self.failures], "detail": self.detail}


@dataclass
class _Asked:
    target: LiveTarget
    request_id: int
    since: datetime


@dataclass
class _Found:
    hash: str
    exit_code: int | None
    status: str


@dataclass
class LivePredictor:
    """Asks nodes for noop runs of a commit and collects their reports (async)."""

    signals: RunSignals
    engine: Engine
    enrollment: Enrollment
    secrets: SecretStore | None = None
    poll: float = 0.5
    concurrency: int = DEFAULT_CONCURRENCY
    #: Sets the requests' expiry, which the run signals judge by the same clock.
    clock: Clock = SYSTEM_CLOCK
    _secret_values: list[str] = field(default_factory=list, init=False, repr=False)

    async def attach(self, report: Mapping[str, Any], *, commit: str, change_id: str,
                     requested_by: str, timeout: float) -> dict[str, Any]:
        """``report`` with every affected node's ``live`` filled and ``digest`` recomputed."""
        targets = live_targets(report)
        results = await self.predict(targets, commit=commit, change_id=change_id,
                                     requested_by=requested_by, timeout=timeout)
        return attach_results(report, results)

    async def predict(self, targets: Sequence[LiveTarget], *, commit: str, change_id: str,
                      requested_by: str, timeout: float) -> dict[str, LiveResult]:
        """Ask each target, wait up to ``timeout`` seconds, and return a result per node."""
        if not targets:
            return {}
        await run_in_threadpool(self._load_secrets)
        results: dict[str, LiveResult] = {}
        known = {n["certname"]: n for n in await run_in_threadpool(self.enrollment.list_nodes)}
        askable: list[LiveTarget] = []
        for target in targets:
            node = known.get(target.certname)
            if node is None:
                results[target.certname] = LiveResult(
                    target.certname, "unreachable",
                    detail="not enrolled with this server: no agent or SSH access to ask")
            elif node["status"] != "approved":
                results[target.certname] = LiveResult(
                    target.certname, "unreachable",
                    detail=f"the node is {node['status']}, not approved: it cannot be asked")
            else:
                askable.append(target)
        deadline = time.monotonic() + timeout
        expires = self.clock.now() + timedelta(seconds=timeout)
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def ask(target: LiveTarget) -> _Asked:
            async with gate:
                # Reports are stamped when received, after the request: "since" is safe.
                since = utcnow()  # reports are stamped by the store's clock: the real one
                request_id = await self.signals.request(
                    target.certname, requested_by, commit=commit,
                    environment=target.environment, change_id=change_id, expires_at=expires)
                return _Asked(target, request_id, since)

        asked = {a.target.certname: a for a in await asyncio.gather(*map(ask, askable))}
        waiting = dict(asked)
        while waiting:
            found = await run_in_threadpool(self._find_reports, waiting, commit)
            for certname, report in found.items():
                results[certname] = await run_in_threadpool(self._reported, certname, report)
                del waiting[certname]
            if waiting:
                states = await run_in_threadpool(
                    self.signals.states, [a.request_id for a in waiting.values()])
                for certname, one in list(waiting.items()):
                    state = states.get(one.request_id)
                    if state is not None and state.error is not None:
                        results[certname] = LiveResult(
                            certname, "unreachable",
                            detail=f"the run could not be carried out: {state.error}")
                        del waiting[certname]
            if not waiting or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
        for certname, one in waiting.items():
            results[certname] = await run_in_threadpool(self._timed_out, one, commit, timeout)
        return dict(sorted(results.items()))

    # -- reading what the nodes sent -------------------------------------------------------

    def _load_secrets(self) -> None:
        values: list[str] = []
        if self.secrets is not None:
            for name in self.secrets.names():
                value = self.secrets.get(name)
                if len(value) >= 4:
                    values.append(value)
        self._secret_values = sorted(values, key=len, reverse=True)

    def _find_reports(self, waiting: Mapping[str, _Asked], commit: str) -> dict[str, _Found]:
        """The first noop report of ``commit`` received after each node was asked."""
        since = min(a.since for a in waiting.values())
        found: dict[str, _Found] = {}
        for row in reports_of_commit(self.engine, sorted(waiting), commit, noop=True,
                                     since=since):
            if row.certname in found or row.receive_time < waiting[row.certname].since:
                continue
            found[row.certname] = _Found(row.hash, row.exit_code, row.status)
        return found

    def _reported(self, certname: str, found: _Found) -> LiveResult:
        resources = report_resources(self.engine, found.hash)
        events: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for resource in resources:
            ref = resource.get("ref") or f"{resource.get('resource_type')}[{resource.get('title')}]"
            for event in resource.get("events") or []:
                if event.get("property") == "refresh":
                    continue
                entry = {"resource": ref, "property": event.get("property"),
                         "old": self._clean(event.get("old_value")),
                         "new": self._clean(event.get("new_value")),
                         "corrective_change": bool(event.get("corrective_change"))}
                if isinstance(event.get("diff"), str):
                    entry["diff"] = self._clean(event["diff"])
                events.append(entry)
            if resource.get("status") == "failed":
                failures.append({"resource": ref,
                                 "message": self._clean(resource.get("message") or "failed")})
        events.sort(key=lambda e: (e["resource"], str(e["property"])))
        failures.sort(key=lambda f: f["resource"])
        return LiveResult(certname, "reported", exit_code=found.exit_code, report=found.hash,
                          events=tuple(events), failures=tuple(failures),
                          detail=f"noop run reported {found.status}")

    def _clean(self, value: Any) -> Any:
        """Any value containing a secret becomes ``[redacted]`` (defence in depth)."""
        if not self._secret_values or value is None:
            return value
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if any(secret in text for secret in self._secret_values):
            return SENSITIVE_TEXT
        return value

    def _timed_out(self, asked: _Asked, commit: str, timeout: float) -> LiveResult:
        """Why nothing came back, in words; the request is withdrawn if still pending."""
        pending = self.signals.withdraw(
            asked.request_id, f"live prediction timed out after {timeout:g} s")
        if pending:
            detail = (f"the node did not ask for the request within {timeout:g} s (its agent "
                      "is not running or cannot reach the server)")
        else:
            detail = (f"the node took the request but sent no noop report of "
                      f"{commit[:12]} within {timeout:g} s")
            other = other_noop_commit(self.engine, asked.target.certname, commit, asked.since)
            if other is not None:
                detail += (f"; it reported a noop run of {other[:12]} instead "
                           "(an agent too old for live prediction?)")
        return LiveResult(asked.target.certname, "timeout", detail=detail)


def live_targets(report: Mapping[str, Any]) -> list[LiveTarget]:
    """The nodes a live prediction asks: those the change affects (changed or new)."""
    environment = str(report["change"]["environment"])
    return [LiveTarget(node["certname"],
                       str((node.get("proposed") or {}).get("environment") or environment))
            for node in report["nodes"] if node.get("status") in LIVE_NODE_STATUSES]


def attach_results(report: Mapping[str, Any],
                   results: Mapping[str, LiveResult]) -> dict[str, Any]:
    """A copy of ``report`` with ``live`` set per node and the digest recomputed."""
    nodes = [
        {**node, "live": results[node["certname"]].to_json()}
        if node["certname"] in results else dict(node)
        for node in report["nodes"]
    ]
    body = {key: value for key, value in report.items() if key not in ("digest", "nodes")}
    body["nodes"] = nodes
    body["digest"] = content_hash(body)
    return body


def live_counts(results: Iterable[LiveResult] | Mapping[str, Any]) -> dict[str, int]:
    """How many nodes reported, timed out, were unreachable; how many drift events."""
    items = results.values() if isinstance(results, Mapping) else results
    counts = {"reported": 0, "timeout": 0, "unreachable": 0, "events": 0, "corrective": 0}
    for result in items:
        live = result.to_json() if isinstance(result, LiveResult) else result
        if not live:
            continue
        counts[live["status"]] += 1
        counts["events"] += len(live["events"])
        counts["corrective"] += sum(1 for e in live["events"] if e["corrective_change"])
    return counts
