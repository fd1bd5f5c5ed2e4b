"""Run-now: an operator asks a node to run, the node's long poll answers within moments.

Requests are rows (``steward_run_requests``), so one made while the node is not listening
is picked up by its next poll, and so several server processes sharing a PostgreSQL
database see each other's requests. Within one process an :class:`asyncio.Event` per node
wakes the waiting poll at once; across processes the poll re-reads the table every
``recheck`` seconds.

A request may carry a **commit** (live prediction, see docs/pipeline.md): "run, in noop, the
catalog that commit compiles for you in this environment". Such a request is never
coalesced with ordinary ones (a real run must not turn into a prediction, nor the reverse):
a claim takes either every pending ordinary request, or every pending request for the
oldest pending commit. Once claimed, it is also the node's grant to fetch that catalog
(:meth:`RunSignals.grant`) until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from starlette.concurrency import run_in_threadpool

from steward.clock import SYSTEM_CLOCK, Clock
from steward.errors import StewardError
from steward.server import db
from steward.server.catalogs import CatalogService, CompiledCatalog
from steward.store import db as store_db


@dataclass(frozen=True, slots=True)
class RunRequest:
    ids: tuple[int, ...]
    noop: bool
    requested_by: str
    #: Live prediction: the commit whose catalog to run in noop (None: the environment tip).
    commit: str | None = None
    environment: str | None = None
    change_id: str | None = None


@dataclass(frozen=True, slots=True)
class LiveGrant:
    """A claimed live-prediction request: what the node may fetch, and until when."""

    request_id: int
    commit: str
    environment: str
    change_id: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RequestState:
    """Where one request is: still pending, taken by the node, or failed (and why)."""

    id: int
    claimed_at: datetime | None
    error: str | None


#: A live-prediction request without an explicit expiry is a grant for this long.
DEFAULT_GRANT_SECONDS = 600.0


class RunSignals:
    """Per-application run-now state: the table plus in-process wake-ups."""

    def __init__(self, engine: Engine, *, recheck: float = 2.0,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.recheck = recheck
        #: Stamps requests and claims and decides grant expiry (waits stay monotonic).
        self.clock = clock
        self._events: dict[str, asyncio.Event] = {}

    def event(self, certname: str) -> asyncio.Event:
        """The event ``wake``/``request`` set for ``certname``: a pull agent's long poll waits
        on it, and the SSH scheduler for agentless nodes (which have no poll)."""
        return self._event(certname)

    def _event(self, certname: str) -> asyncio.Event:
        event = self._events.get(certname)
        if event is None:
            event = self._events[certname] = asyncio.Event()
        return event

    def _insert(self, certname: str, requested_by: str, noop: bool, commit: str | None,
                environment: str | None, change_id: str | None,
                expires_at: datetime | None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(db.run_requests).values(
                certname=certname, requested_at=self.clock.now(), requested_by=requested_by,
                noop=1 if noop else 0, commit=commit, environment=environment,
                change_id=change_id, expires_at=expires_at,
            ))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def claim(self, certname: str) -> RunRequest | None:
        """Take the next pending run of ``certname`` (several alike coalesce into one run).

        Ordinary requests coalesce with each other; live-prediction requests with those for
        the same commit and environment. Expired live requests are closed, never run.
        """
        r = db.run_requests.c
        with store_db.reading(self.engine) as conn:
            # Most polls find nothing: look without taking SQLite's write lock first.
            waiting = conn.execute(
                select(r.id).where(and_(r.certname == certname, r.claimed_at.is_(None)))
                .limit(1)
            ).first()
        if waiting is None:
            return None
        now = self.clock.now()
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(r.id, r.noop, r.requested_by, r.commit, r.environment, r.change_id,
                       r.expires_at)
                .where(and_(r.certname == certname, r.claimed_at.is_(None))).order_by(r.id)
            ).all()
            expired = [int(row.id) for row in rows
                       if row.commit is not None and row.expires_at is not None
                       and row.expires_at <= now]
            if expired:
                conn.execute(update(db.run_requests).where(r.id.in_(expired)).values(
                    claimed_at=now, error="expired before the node asked for it"))
            rows = [row for row in rows if int(row.id) not in expired]
            if not rows:
                return None
            first = rows[0]
            taken = [row for row in rows
                     if (row.commit, row.environment) == (first.commit, first.environment)]
            ids = tuple(int(row.id) for row in taken)
            conn.execute(update(db.run_requests).where(r.id.in_(ids)).values(claimed_at=now))
        if first.commit is not None:
            return RunRequest(ids=ids, noop=True, requested_by=taken[-1].requested_by,
                              commit=first.commit, environment=first.environment,
                              change_id=taken[-1].change_id)
        # A real run wins over noop when both were asked for.
        return RunRequest(ids=ids, noop=all(bool(row.noop) for row in taken),
                          requested_by=taken[-1].requested_by)

    async def request(self, certname: str, requested_by: str, *, noop: bool = False,
                      commit: str | None = None, environment: str | None = None,
                      change_id: str | None = None,
                      expires_at: datetime | None = None) -> int:
        """Ask ``certname`` to run now; with ``commit``, a noop run of that commit's catalog.

        A live-prediction request (``commit``) needs the ``environment`` to compile for, is
        always noop, and grants the node that catalog until ``expires_at`` (default: in
        :data:`DEFAULT_GRANT_SECONDS`).
        """
        if commit is not None:
            if not environment:
                raise ValueError("a run request with a commit needs its environment")
            noop = True
            if expires_at is None:
                expires_at = self.clock.now() + timedelta(seconds=DEFAULT_GRANT_SECONDS)
        request_id = await run_in_threadpool(self._insert, certname, requested_by, noop,
                                             commit, environment, change_id, expires_at)
        self._event(certname).set()
        return request_id

    def grant(self, certname: str, commit: str) -> LiveGrant | None:
        """The newest unexpired, claimed live request of ``certname`` for ``commit``."""
        r = db.run_requests.c
        with store_db.reading(self.engine) as conn:
            row = conn.execute(
                select(r.id, r.commit, r.environment, r.change_id, r.expires_at)
                .where(and_(r.certname == certname, r.commit == commit,
                            r.claimed_at.is_not(None), r.error.is_(None),
                            r.expires_at > self.clock.now()))
                .order_by(r.id.desc()).limit(1)
            ).first()
        if row is None or row.environment is None:
            return None
        return LiveGrant(int(row.id), str(row.commit), str(row.environment), row.change_id,
                         row.expires_at)

    def fail(self, ids: tuple[int, ...], error: str) -> None:
        """Record why claimed requests could not be carried out (the waiter reads it)."""
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(update(db.run_requests).where(db.run_requests.c.id.in_(ids))
                         .values(error=error[:2000]))

    def withdraw(self, request_id: int, reason: str) -> bool:
        """Close a request nobody took; True when it was still pending."""
        r = db.run_requests.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(db.run_requests)
                .where(and_(r.id == request_id, r.claimed_at.is_(None)))
                .values(claimed_at=self.clock.now(), error=reason[:2000]))
            return bool(result.rowcount)

    def states(self, ids: list[int]) -> dict[int, RequestState]:
        """Where each of these requests is (missing ids are left out)."""
        r = db.run_requests.c
        found: dict[int, RequestState] = {}
        with store_db.reading(self.engine) as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for row in conn.execute(select(r.id, r.claimed_at, r.error)
                                        .where(r.id.in_(chunk))):
                    found[int(row.id)] = RequestState(int(row.id), row.claimed_at, row.error)
        return found

    def wake(self, certname: str) -> None:
        """Wake ``certname``'s waiting poll (e.g. a task job has work for it); event loop only."""
        self._event(certname).set()

    async def wait(self, certname: str, timeout: float,
                   also: Callable[[str], dict[str, Any] | None] | None = None,
                   ) -> RunRequest | dict[str, Any] | None:
        """Return a claimed request as soon as there is one, or None after ``timeout``.

        ``also`` claims other work for the node (a higher layer's task jobs); what it returns
        is answered as is.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        event = self._event(certname)
        while True:
            # Cleared before looking, so a request made after the look still wakes us.
            event.clear()
            if also is not None:
                work = await run_in_threadpool(also, certname)
                if work is not None:
                    return work
            claimed = await run_in_threadpool(self.claim, certname)
            if claimed is not None:
                return claimed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(remaining, self.recheck))

    def pending(self) -> list[dict[str, Any]]:
        r = db.run_requests.c
        with store_db.reading(self.engine) as conn:
            rows = conn.execute(
                select(r.id, r.certname, r.requested_at, r.requested_by, r.noop, r.commit,
                       r.change_id)
                .where(r.claimed_at.is_(None)).order_by(r.id)
            ).all()
        return [{"id": row.id, "certname": row.certname, "requested_by": row.requested_by,
                 "noop": bool(row.noop), "commit": row.commit, "change": row.change_id}
                for row in rows]


class LiveCatalogRefused(StewardError):
    """A node asked for a catalog at a commit it was not asked to run (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class LiveCatalog:
    """The proposed catalog a live-prediction request lets the node fetch."""

    compiled: CompiledCatalog
    grant: LiveGrant
    #: The sensitive values delivered: only those the node's current catalog already has.
    sensitive_values: dict[str, str]
    #: Keys of the proposed catalog's sensitive values that were withheld.
    withheld: tuple[str, ...]


def live_catalog(catalogs: CatalogService, signals: RunSignals, certname: str,
                 facts: dict[str, Any], pinned: str | None, commit: str) -> LiveCatalog | None:
    """The catalog of ``commit`` for ``certname``, if a live prediction granted it.

    None when ``commit`` is simply the tip of the node's environment (the ordinary catalog).
    Otherwise the node must hold an unexpired, claimed run request for that commit, and
    the commit must still be the head of the change that request was made for; anything
    else is :class:`LiveCatalogRefused`. A proposed catalog never gives a node a secret it
    does not already receive: only sensitive values its current catalog also carries are
    delivered (the resources needing the others fail in the noop run, and say so).
    """
    environment = catalogs.node_environment(certname, facts, pinned)
    if catalogs.desired is None:
        raise LiveCatalogRefused(
            f"{catalogs.repo_path} is a plain directory: there are no commits to fetch")
    if catalogs.environment_commit(environment, certname) == commit:
        return None
    grant = signals.grant(certname, commit)
    if grant is None:
        raise LiveCatalogRefused(
            f"node {certname!r} may not fetch the catalog of commit {commit[:12]}: it is not "
            f"the tip of its environment {environment!r}, and no live prediction has asked "
            "this node to run it (or that request expired)")
    if grant.change_id is not None:
        head = catalogs.desired.branches().get(f"changes/{grant.change_id}")
        if head != commit:
            raise LiveCatalogRefused(
                f"commit {commit[:12]} is no longer the head of change {grant.change_id} "
                f"(now {head[:12] if head else 'gone'}): its live prediction is void")
    compiled = catalogs.compile_at(certname, facts, grant.environment, commit, use_cache=False)
    try:
        current = set(catalogs.compile(certname, facts, pinned).result.sensitive_values
                      .values())
    except StewardError:
        current = set()
    proposed = compiled.result.sensitive_values
    values = {key: value for key, value in proposed.items() if value in current}
    return LiveCatalog(compiled, grant, values,
                       tuple(sorted(key for key in proposed if key not in values)))
