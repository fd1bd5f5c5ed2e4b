"""Task jobs: one run of a task on the nodes a PQL query selected, with a result per node.

A job is a row (``steward_jobs``) plus one row per node (``steward_job_results``), so results
are queryable (PQL entities ``jobs`` and ``job_results``) and survive the server. Pull agents
take their part of a job through the run-wait long poll (:meth:`JobStore.claim`) and post the
outcome to ``POST /api/v1/nodes/{certname}/jobs/{job}/result`` (:meth:`JobStore.complete`).

Everything a part needs except secrets is in the database, so a job outlives the process
that created it: the script is stored once per (job, environment) in ``steward_job_scripts``
(10,000 nodes of one environment share one row; the rows are deleted when the job finishes,
since the script stays in git at the recorded commit). A job created by one process -- e.g.
``steward mcp`` over stdio, which opens the data directory's database itself -- is therefore
served by the server process, and a job without sensitive parameters survives a restart.

Sensitive parameter *values* are never stored, only their *names*
(``steward_jobs.sensitive``); the values live in the memory of the process that created the
job until it finishes. A part of such a job claimed through a process that does not hold the
values (the creator restarted, or was another process) fails at claim with an output saying
so and asking for the task to be run again, instead of running the script without them.

The concurrency limit is enforced at claim time: a node's part starts only while fewer than
``concurrency`` parts of the job are running; the others wait for a later poll.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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

from steward.clock import SYSTEM_CLOCK, Clock, iso
from steward.errors import StewardError
from steward.pipeline.tables import metadata
from steward.store import db as store_db
from steward.store.db import UTCDateTime

jobs = Table(
    "steward_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task", String(64), nullable=False),
    Column("environment", String(255), nullable=False),
    Column("noop", Integer, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("query", Text, nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    # Names (never values) of the sensitive parameters, sorted; NULL on jobs created before
    # revision 0003 (their parts cannot be served after the upgrade anyway: no scripts).
    Column("sensitive", JSON, nullable=True),
)

job_scripts = Table(
    "steward_job_scripts",
    metadata,
    Column("job_id", String(32), ForeignKey("steward_jobs.id"), primary_key=True),
    Column("environment", String(255), primary_key=True),
    Column("script_name", String(255), nullable=False),
    Column("script", Text, nullable=False),
)

job_results = Table(
    "steward_job_results",
    metadata,
    Column("job_id", String(32), ForeignKey("steward_jobs.id"), primary_key=True),
    Column("certname", String(255), primary_key=True),
    Column("environment", String(255), nullable=False),
    Column("commit", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("result", JSON, nullable=True),
    Column("output", Text, nullable=True),
    Index("ix_steward_job_results_node", "certname", "job_id"),
)

#: Result states: waiting for the node, running on it, and the final ones.
FINAL = frozenset({"succeeded", "failed", "timeout", "skipped"})
#: Seconds a node may take beyond the task's timeout before its part counts as timed out.
GRACE_SECONDS = 30
OUTPUT_LIMIT = 64_000


class JobError(StewardError):
    """A job or a node's part of it is unknown or not in a state for that (HTTP 409)."""


class JobNotFound(JobError):
    """No such job (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class NodePart:
    certname: str
    environment: str
    commit: str
    script_name: str
    script: str


class JobStore:
    """Jobs in the database, plus the values of their sensitive parameters (memory only)."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock
        self._lock = threading.Lock()
        # job id -> sensitive values, for jobs this process created: never stored.
        self._secrets: dict[str, dict[str, Any]] = {}

    def create(self, *, task: str, environment: str, noop: bool, stored_params: dict[str, Any],
               secret_params: dict[str, Any], query: str, requested_by: str,
               concurrency: int, timeout: int, parts: list[NodePart],
               skipped: dict[str, str]) -> str:
        scripts: dict[str, NodePart] = {}
        for part in parts:
            first = scripts.setdefault(part.environment, part)
            if (first.commit, first.script_name, first.script) != \
                    (part.commit, part.script_name, part.script):
                # One stored script per environment: its nodes all run the branch's tip.
                raise JobError(f"nodes {first.certname!r} and {part.certname!r} of environment "
                               f"{part.environment!r} were given different scripts of task "
                               f"{task!r}")
        job_id = f"job-{self.clock.now():%Y%m%d%H%M%S}-{secrets.token_hex(4)}"
        now = self.clock.now()
        with self.engine.begin() as conn:
            self._forget_finished(conn)
            conn.execute(insert(jobs).values(
                id=job_id, task=task, environment=environment, noop=1 if noop else 0,
                parameters=stored_params, query=query[:4000], requested_by=requested_by,
                state="finished" if not parts else "running", concurrency=concurrency,
                timeout=timeout, created_at=now, finished_at=None if parts else now,
                sensitive=sorted(secret_params)))
            for env, part in sorted(scripts.items()):
                conn.execute(insert(job_scripts).values(
                    job_id=job_id, environment=env, script_name=part.script_name,
                    script=part.script))
            for part in parts:
                conn.execute(insert(job_results).values(
                    job_id=job_id, certname=part.certname, environment=part.environment,
                    commit=part.commit, state="pending"))
            for certname, reason in sorted(skipped.items()):
                conn.execute(insert(job_results).values(
                    job_id=job_id, certname=certname, environment="", commit="",
                    state="skipped", finished_at=now, output=reason))
        if parts and secret_params:
            with self._lock:
                self._secrets[job_id] = dict(secret_params)
        return job_id

    def holds_secrets_for(self, job_id: str) -> bool:
        """Whether this process can serve the job's parts: it has no sensitive parameter, or
        this process created it and still holds their values (an unknown job: False)."""
        with store_db.reading(self.engine) as conn:
            names = conn.execute(select(jobs.c.sensitive).where(jobs.c.id == job_id)).first()
        if names is None:
            return False
        with self._lock:
            return not names.sensitive or job_id in self._secrets

    def claim(self, certname: str) -> dict[str, Any] | None:
        """The oldest pending part for ``certname`` that may start now, marked running.

        A part that cannot be served by this process (its script is not stored, or the values
        of its sensitive parameters are held by another process or were lost in a restart) is
        marked failed with the reason, and the next pending part is tried.
        """
        r, j, s = job_results.c, jobs.c, job_scripts.c
        with store_db.reading(self.engine) as conn:
            rows = conn.execute(
                select(r.job_id).join(jobs, jobs.c.id == r.job_id)
                .where(and_(r.certname == certname, r.state == "pending"))
                .order_by(j.created_at, j.id)
            ).all()
        for row in rows:
            job_id = str(row.job_id)
            with self.engine.begin() as conn:
                job = conn.execute(select(j.task, j.noop, j.parameters, j.concurrency,
                                          j.timeout, j.sensitive).where(j.id == job_id)).one()
                running = conn.execute(select(func.count()).select_from(job_results).where(
                    and_(r.job_id == job_id, r.state == "running"))).scalar_one()
                if running >= job.concurrency:
                    continue
                script = conn.execute(
                    select(s.script_name, s.script).select_from(job_results.join(
                        job_scripts, and_(s.job_id == r.job_id, s.environment == r.environment)))
                    .where(and_(r.job_id == job_id, r.certname == certname))).first()
                names = [str(name) for name in job.sensitive or []]
                with self._lock:
                    secret = self._secrets.get(job_id)
                    secret = None if secret is None else dict(secret)
                if script is None or (names and secret is None):
                    reason = (
                        f"job {job_id} was started before its scripts were stored in the "
                        "database (by a Steward before this upgrade): run the task again"
                        if script is None else
                        f"the values of sensitive parameters {', '.join(names)} are held only "
                        f"in memory by the process that started job {job_id}; it restarted (or "
                        "the job was started by another process, such as `steward mcp` over "
                        "stdio): run the task again")
                    conn.execute(update(job_results).where(
                        and_(r.job_id == job_id, r.certname == certname, r.state == "pending"))
                        .values(state="failed", finished_at=self.clock.now(), output=reason))
                    self._finish_if_done(conn, job_id)
                    continue
                taken = conn.execute(update(job_results).where(
                    and_(r.job_id == job_id, r.certname == certname, r.state == "pending"))
                    .values(state="running", started_at=self.clock.now()))
                if not taken.rowcount:
                    continue
                values = secret or {}
                return {"job": job_id, "task": job.task, "noop": bool(job.noop),
                        "timeout": int(job.timeout), "script_name": str(script.script_name),
                        "script": str(script.script), "params": {**job.parameters, **values},
                        "sensitive": sorted(values)}
        return None

    def complete(self, certname: str, job_id: str, *, exit_code: int | None,
                 result: Any, output: str, state: str) -> dict[str, Any]:
        """Record the node's outcome of its running part."""
        if state not in ("succeeded", "failed", "timeout"):
            raise JobError(f"a result state is succeeded, failed or timeout, not {state!r}")
        r = job_results.c
        with self.engine.begin() as conn:
            done = conn.execute(update(job_results).where(
                and_(r.job_id == job_id, r.certname == certname, r.state == "running"))
                .values(state=state, finished_at=self.clock.now(), exit_code=exit_code,
                        result=result, output=output[-OUTPUT_LIMIT:]))
            if not done.rowcount:
                raise JobError(f"node {certname!r} has no running part of job {job_id!r}")
            self._finish_if_done(conn, job_id)
        return {"job": job_id, "certname": certname, "state": state}

    def expire(self, job_id: str) -> None:
        """Mark parts that ran past their timeout (plus grace) as timed out; settle the job."""
        r = job_results.c
        with self.engine.begin() as conn:
            job = conn.execute(select(jobs.c.timeout).where(jobs.c.id == job_id)).first()
            if job is None:
                return
            limit = self.clock.now() - timedelta(seconds=int(job.timeout) + GRACE_SECONDS)
            conn.execute(update(job_results).where(
                and_(r.job_id == job_id, r.state == "running", r.started_at < limit))
                .values(state="timeout", finished_at=self.clock.now(),
                        output="the node did not report a result in time"))
            # Also settles a job whose last two parts finished in concurrent transactions
            # (each saw the other still running, so neither marked the job finished).
            self._finish_if_done(conn, job_id)

    def cancel_pending(self, job_id: str, reason: str) -> None:
        """Skip parts no node has taken (e.g. the waiter gave up on them)."""
        r = job_results.c
        with self.engine.begin() as conn:
            conn.execute(update(job_results).where(
                and_(r.job_id == job_id, r.state == "pending"))
                .values(state="skipped", finished_at=self.clock.now(), output=reason))
            self._finish_if_done(conn, job_id)

    def _finish_if_done(self, conn: Any, job_id: str) -> None:
        r = job_results.c
        open_parts = conn.execute(select(func.count()).select_from(job_results).where(
            and_(r.job_id == job_id, r.state.in_(("pending", "running"))))).scalar_one()
        if open_parts == 0:
            conn.execute(update(jobs).where(and_(jobs.c.id == job_id,
                                                 jobs.c.state == "running"))
                         .values(state="finished", finished_at=self.clock.now()))
            # Only claims read the scripts; the task's source stays in git at each commit.
            conn.execute(delete(job_scripts).where(job_scripts.c.job_id == job_id))
            with self._lock:
                self._secrets.pop(job_id, None)

    def _forget_finished(self, conn: Any) -> None:
        """Drop the values held for jobs another process finished (failed, expired or
        cancelled there), so they do not stay in this process's memory."""
        with self._lock:
            held = sorted(self._secrets)
        if not held:
            return
        done = conn.execute(select(jobs.c.id).where(and_(
            jobs.c.id.in_(held), jobs.c.state == "finished"))).scalars().all()
        with self._lock:
            for job_id in done:
                self._secrets.pop(str(job_id), None)

    def get(self, job_id: str) -> dict[str, Any]:
        j, r = jobs.c, job_results.c
        with store_db.reading(self.engine) as conn:
            job = conn.execute(select(jobs).where(j.id == job_id)).first()
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            rows = conn.execute(select(job_results).where(r.job_id == job_id)
                                .order_by(r.certname)).all()
        results = [{"certname": row.certname, "environment": row.environment,
                    "commit": row.commit, "state": row.state,
                    "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
                    "exit_code": row.exit_code, "result": row.result, "output": row.output}
                   for row in rows]
        counts: dict[str, int] = {}
        for item in results:
            counts[item["state"]] = counts.get(item["state"], 0) + 1
        return {"id": job.id, "task": job.task, "environment": job.environment,
                "noop": bool(job.noop), "parameters": job.parameters, "query": job.query,
                "requested_by": job.requested_by, "state": job.state,
                "concurrency": job.concurrency, "timeout": job.timeout,
                "created_at": iso(job.created_at), "finished_at": iso(job.finished_at),
                "counts": dict(sorted(counts.items())), "results": results}
