"""Deployments: roll a merged change out to the nodes it affects, batch by batch.

The rollout is the part of the pipeline that touches machines, so its rules are explicit:

* nodes are the change's *affected* nodes only (from its impact report), in a stable order;
* the first batch is the canary (``canary`` nodes), then batches of ``batch_size`` nodes (a
  count, or a percentage of the affected nodes, rounded up);
* a node succeeds when it reports a run of the deployed commit (the report's ``code_id``)
  without failures; it fails when that run has failures, or when no such report arrives
  within ``node_timeout`` seconds;
* **halt rule:** the rollout stops after a batch in which the number of failed nodes is
  *greater than or equal to* ``max_failures`` (so ``max_failures: 1`` halts on the first
  failure). The nodes of later batches are left untouched and recorded as ``skipped``;
* one deployment per environment at a time: a row in ``steward_environment_locks`` is the
  lock, so two server processes sharing PostgreSQL cannot both deploy to one environment.
"""

from __future__ import annotations

import asyncio
import builtins
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from steward.clock import SYSTEM_CLOCK, Clock, iso, utcnow
from steward.errors import StewardError
from steward.pipeline.tables import metadata
from steward.store.db import UTCDateTime
from steward.store.reading import first_report_of_commit

NodeStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]
DeploymentState = Literal["running", "succeeded", "halted", "failed"]

deployments = Table(
    "steward_deployments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("change_id", String(32), nullable=False),
    Column("environment", String(255), nullable=False),
    Column("commit", String(64), nullable=False),
    # running | succeeded | halted | failed
    Column("state", String(16), nullable=False),
    Column("strategy", JSON, nullable=False),
    Column("started_by", String(255), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_steward_deployments_change", "change_id"),
)

deployment_nodes = Table(
    "steward_deployment_nodes",
    metadata,
    Column("deployment_id", String(32), ForeignKey("steward_deployments.id"), primary_key=True),
    Column("certname", String(255), primary_key=True),
    Column("batch", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    # pending | running | succeeded | failed | skipped
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("report", String(128), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("detail", Text, nullable=True),
)

environment_locks = Table(
    "steward_environment_locks",
    metadata,
    Column("environment", String(255), primary_key=True),
    Column("deployment_id", String(32), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
)


class DeployError(StewardError):
    """A deployment cannot start or its strategy is invalid."""


class EnvironmentLocked(DeployError):
    """Another deployment holds the environment (HTTP 409)."""


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True, slots=True)
class Strategy:
    """How a deployment proceeds; see the module docstring for the exact semantics."""

    canary: int = 1
    batch_size: str = "25%"
    max_failures: int = 1
    node_timeout: float = 600.0
    auto_rollback: bool = False

    def __post_init__(self) -> None:
        if self.canary < 0:
            raise DeployError(f"strategy: canary must be 0 or more, not {self.canary}")
        if self.max_failures < 1:
            raise DeployError(
                f"strategy: max_failures must be at least 1 (halt when a batch has that many "
                f"failures), not {self.max_failures}"
            )
        if self.node_timeout <= 0:
            raise DeployError(f"strategy: node_timeout must be positive, not {self.node_timeout}")
        self._size(100)  # validates batch_size

    def _size(self, total: int) -> int:
        text = str(self.batch_size).strip()
        match = _PERCENT.match(text)
        if match:
            percent = float(match.group(1))
            if not 0 < percent <= 100:
                raise DeployError(f"strategy: batch_size {text!r} must be between 0% and 100%")
            return max(1, math.ceil(total * percent / 100))
        if text.isdigit() and int(text) > 0:
            return int(text)
        raise DeployError(
            f"strategy: batch_size {text!r} must be a positive count (e.g. 5) or a percentage "
            "(e.g. 20%)"
        )

    def batches(self, nodes: Sequence[str]) -> list[list[str]]:
        """Canary first, then fixed-size batches; deterministic for a given node list."""
        ordered = list(nodes)
        result: list[list[str]] = []
        canary = min(self.canary, len(ordered))
        if canary:
            result.append(ordered[:canary])
        rest = ordered[canary:]
        size = self._size(len(ordered))
        result.extend(rest[i:i + size] for i in range(0, len(rest), size))
        return result

    def to_json(self) -> dict[str, Any]:
        return {"canary": self.canary, "batch_size": str(self.batch_size),
                "max_failures": self.max_failures, "node_timeout": self.node_timeout,
                "auto_rollback": self.auto_rollback}

    @classmethod
    def from_json(cls, document: dict[str, Any] | None) -> Strategy:
        document = dict(document or {})
        known = {"canary", "batch_size", "max_failures", "node_timeout", "auto_rollback"}
        unknown = sorted(set(document) - known)
        if unknown:
            raise DeployError(f"strategy: unknown field(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        try:
            return cls(
                canary=int(document.get("canary", 1)),
                batch_size=str(document.get("batch_size", "25%")),
                max_failures=int(document.get("max_failures", 1)),
                node_timeout=float(document.get("node_timeout", 600.0)),
                auto_rollback=bool(document.get("auto_rollback", False)),
            )
        except (TypeError, ValueError) as exc:
            raise DeployError(f"strategy: {exc}") from None


@dataclass(frozen=True, slots=True)
class NodeResult:
    certname: str
    status: Literal["succeeded", "failed"]
    report: str | None = None
    exit_code: int | None = None
    detail: str | None = None


class NodeRunner(Protocol):
    """The seam between the rollout and the machines (pull agents woken, SSH nodes pushed)."""

    async def start(self, certname: str, *, requested_by: str) -> datetime:
        """Ask the node to run now; returns when the request was made."""

    async def outcome(self, certname: str, *, since: datetime, commit: str,
                      timeout: float) -> NodeResult:
        """Wait for the node's run of ``commit`` reported after ``since``."""


@dataclass
class Deployment:
    id: str
    change_id: str
    environment: str
    commit: str
    state: str
    strategy: Strategy
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    detail: str | None
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_nodes(self) -> list[str]:
        return [n["certname"] for n in self.nodes if n["status"] == "failed"]

    @property
    def touched_nodes(self) -> list[str]:
        return [n["certname"] for n in self.nodes if n["status"] in ("succeeded", "failed")]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("pending", "running", "succeeded", "failed", "skipped"), 0)
        for node in self.nodes:
            counts[node["status"]] = counts.get(node["status"], 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "id": self.id, "change": self.change_id, "environment": self.environment,
            "commit": self.commit, "state": self.state, "strategy": self.strategy.to_json(),
            "started_by": self.started_by, "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at), "detail": self.detail,
            "counts": self.counts(),
            "nodes": [
                {**node, "started_at": iso(node["started_at"]),
                 "finished_at": iso(node["finished_at"])}
                for node in self.nodes
            ],
        }


ProgressCallback = Callable[[Deployment], Awaitable[None] | None]


class Deployments:
    """Deployment records, the per-environment lock and the batched rollout."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock

    # -- records ---------------------------------------------------------------------------

    def _next_id(self) -> str:
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(deployments)).scalar_one()
        return f"dep-{int(count) + 1}"

    def start(self, *, change_id: str, environment: str, commit: str, nodes: Sequence[str],
              strategy: Strategy, started_by: str) -> Deployment:
        """Take the environment's lock and record the planned batches; nothing runs yet."""
        plan = strategy.batches(sorted(set(nodes)))
        for _attempt in range(5):
            deployment_id = self._next_id()
            now = self.clock.now()
            try:
                with self.engine.begin() as conn:
                    holder = conn.execute(
                        select(environment_locks.c.deployment_id)
                        .where(environment_locks.c.environment == environment)
                    ).scalar_one_or_none()
                    if holder is not None:
                        raise EnvironmentLocked(self._locked_message(conn, environment, holder))
                    conn.execute(insert(deployments).values(
                        id=deployment_id, change_id=change_id, environment=environment,
                        commit=commit, state="running", strategy=strategy.to_json(),
                        started_by=started_by, started_at=now,
                    ))
                    conn.execute(insert(environment_locks).values(
                        environment=environment, deployment_id=deployment_id, acquired_at=now))
                    position = 0
                    for number, batch in enumerate(plan):
                        for certname in batch:
                            conn.execute(insert(deployment_nodes).values(
                                deployment_id=deployment_id, certname=certname, batch=number,
                                position=position, status="pending"))
                            position += 1
            except IntegrityError:
                # Another process took the id or the lock between our look and our write.
                with self.engine.connect() as conn:
                    holder = conn.execute(
                        select(environment_locks.c.deployment_id)
                        .where(environment_locks.c.environment == environment)
                    ).scalar_one_or_none()
                    if holder is not None:
                        raise EnvironmentLocked(
                            self._locked_message(conn, environment, holder)) from None
                continue
            return self.get(deployment_id)
        raise DeployError(f"could not allocate a deployment id for {change_id}; try again")

    @staticmethod
    def _locked_message(conn: Any, environment: str, holder: str) -> str:
        change = conn.execute(
            select(deployments.c.change_id).where(deployments.c.id == holder)
        ).scalar_one_or_none()
        return (f"environment {environment!r} is locked by deployment {holder}"
                f"{f' of {change}' if change else ''}: one deployment per environment at a "
                "time; wait for it to finish")

    def get(self, deployment_id: str) -> Deployment:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(deployments).where(deployments.c.id == deployment_id)
            ).one_or_none()
            if row is None:
                from steward.errors import NotFoundError

                raise NotFoundError(f"no deployment {deployment_id!r}")
            nodes = conn.execute(
                select(deployment_nodes).where(deployment_nodes.c.deployment_id == deployment_id)
                .order_by(deployment_nodes.c.position)
            ).all()
        return Deployment(
            id=row.id, change_id=row.change_id, environment=row.environment, commit=row.commit,
            state=row.state, strategy=Strategy.from_json(row.strategy),
            started_by=row.started_by, started_at=row.started_at,
            finished_at=row.finished_at, detail=row.detail,
            nodes=[{"certname": n.certname, "batch": n.batch, "status": n.status,
                    "started_at": n.started_at, "finished_at": n.finished_at,
                    "report": n.report, "exit_code": n.exit_code, "detail": n.detail}
                   for n in nodes],
        )

    def for_change(self, change_id: str) -> list[Deployment]:
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(deployments.c.id).where(deployments.c.change_id == change_id)
                .order_by(deployments.c.started_at, deployments.c.id)
            ).scalars().all()
        return [self.get(i) for i in ids]

    def list(self, *, environment: str | None = None, limit: int = 50) -> list[Deployment]:
        query = select(deployments.c.id).order_by(deployments.c.started_at.desc()).limit(limit)
        if environment is not None:
            query = query.where(deployments.c.environment == environment)
        with self.engine.connect() as conn:
            ids = conn.execute(query).scalars().all()
        return [self.get(i) for i in ids]

    def _set_node(self, deployment_id: str, certname: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(deployment_nodes).where(and_(
                deployment_nodes.c.deployment_id == deployment_id,
                deployment_nodes.c.certname == certname)).values(**values))

    def finish(self, deployment_id: str, state: DeploymentState, detail: str | None) -> None:
        """Record the outcome, mark untouched nodes skipped, and release the lock."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(deployments.c.environment).where(deployments.c.id == deployment_id)
            ).one()
            conn.execute(update(deployment_nodes).where(and_(
                deployment_nodes.c.deployment_id == deployment_id,
                deployment_nodes.c.status.in_(("pending", "running")))).values(status="skipped"))
            conn.execute(update(deployments).where(deployments.c.id == deployment_id)
                         .values(state=state, finished_at=self.clock.now(), detail=detail))
            conn.execute(delete(environment_locks).where(and_(
                environment_locks.c.environment == row.environment,
                environment_locks.c.deployment_id == deployment_id)))

    def abandon_running(self) -> builtins.list[str]:
        """At server start: deployments left running by a stopped server are failed."""
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(deployments.c.id).where(deployments.c.state == "running")
            ).scalars().all()
        for deployment_id in ids:
            self.finish(deployment_id, "failed", "the server stopped during the rollout")
        return list(ids)

    # -- the rollout -----------------------------------------------------------------------

    async def run(self, deployment_id: str, runner: NodeRunner,
                  progress: ProgressCallback | None = None) -> Deployment:
        """Run the batches; always releases the lock, whatever happens."""
        from starlette.concurrency import run_in_threadpool

        deployment = await run_in_threadpool(self.get, deployment_id)
        strategy = deployment.strategy
        batches: dict[int, list[str]] = {}
        for node in deployment.nodes:
            batches.setdefault(node["batch"], []).append(node["certname"])
        state: DeploymentState = "succeeded"
        detail: str | None = None
        try:
            for number in sorted(batches):
                names = batches[number]
                results = await asyncio.gather(*(
                    self._one(deployment, name, runner) for name in names
                ))
                failed = [r.certname for r in results if r.status == "failed"]
                if progress is not None:
                    outcome = progress(await run_in_threadpool(self.get, deployment_id))
                    if outcome is not None:
                        await outcome
                if len(failed) >= strategy.max_failures:
                    label = "canary batch" if number == 0 and strategy.canary else \
                        f"batch {number + 1}"
                    state = "halted"
                    detail = (f"halted after {label}: {len(failed)} of {len(names)} node(s) "
                              f"failed ({', '.join(sorted(failed))}), threshold "
                              f"max_failures={strategy.max_failures}")
                    break
        except asyncio.CancelledError:
            await run_in_threadpool(self.finish, deployment_id, "failed",
                                    "the deployment was interrupted (server stopping)")
            raise
        except Exception as exc:
            state, detail = "failed", f"the rollout stopped on an internal error: {exc}"
        await run_in_threadpool(self.finish, deployment_id, state, detail)
        final = await run_in_threadpool(self.get, deployment_id)
        if progress is not None:
            outcome = progress(final)
            if outcome is not None:
                await outcome
        return final

    async def _one(self, deployment: Deployment, certname: str,
                   runner: NodeRunner) -> NodeResult:
        from starlette.concurrency import run_in_threadpool

        started = self.clock.now()
        await run_in_threadpool(self._set_node, deployment.id, certname, status="running",
                                started_at=started)
        try:
            since = await runner.start(certname, requested_by=f"deployment {deployment.id}")
            result = await runner.outcome(certname, since=since, commit=deployment.commit,
                                          timeout=deployment.strategy.node_timeout)
        except StewardError as exc:
            result = NodeResult(certname, "failed", detail=str(exc))
        await run_in_threadpool(
            self._set_node, deployment.id, certname, status=result.status,
            finished_at=self.clock.now(), report=result.report, exit_code=result.exit_code,
            detail=result.detail,
        )
        return result


class ReportWatcher:
    """Finds the report of a node's run of a commit in the state store."""

    def __init__(self, engine: Engine, *, poll: float = 0.5) -> None:
        self.engine = engine
        self.poll = poll

    def find(self, certname: str, since: datetime, commit: str) -> NodeResult | None:
        row = first_report_of_commit(self.engine, certname, commit, noop=False, since=since)
        if row is None:
            return None
        failed = row.status == "failed" or (row.exit_code is not None and row.exit_code & 4)
        return NodeResult(
            certname, "failed" if failed else "succeeded", report=row.hash,
            exit_code=row.exit_code,
            detail=f"run of {commit[:12]} reported {row.status}" + (
                f" (exit code {row.exit_code})" if row.exit_code is not None else ""),
        )

    async def wait(self, certname: str, since: datetime, commit: str,
                   timeout: float) -> NodeResult:
        from starlette.concurrency import run_in_threadpool

        deadline = time.monotonic() + timeout
        while True:
            found = await run_in_threadpool(self.find, certname, since, commit)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                return NodeResult(certname, "failed", detail=(
                    f"no report of a run of {commit[:12]} within {timeout:g} s "
                    "(node unreachable, or its agent is not running)"))
            await asyncio.sleep(self.poll)


class ServerNodeRunner:
    """The real runner: a run-now request (pull agents' long poll, or the SSH scheduler)."""

    def __init__(self, signals: Any, engine: Engine, *, poll: float = 0.5) -> None:
        self.signals = signals
        self.watcher = ReportWatcher(engine, poll=poll)

    async def start(self, certname: str, *, requested_by: str) -> datetime:
        # Reports are stamped when received; a margin covers clock granularity.
        since = utcnow()  # reports are stamped by the store's clock: the real one
        await self.signals.request(certname, requested_by, noop=False)
        return since

    async def outcome(self, certname: str, *, since: datetime, commit: str,
                      timeout: float) -> NodeResult:
        return await self.watcher.wait(certname, since, commit, timeout)
