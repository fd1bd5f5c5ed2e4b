"""Run-now: an operator asks a node to run, the node's long poll answers within moments.

Requests are rows (``steward_run_requests``), so one made while the node is not listening
is picked up by its next poll, and so several server processes sharing a PostgreSQL
database see each other's requests. Within one process an :class:`asyncio.Event` per node
wakes the waiting poll at once; across processes the poll re-reads the table every
``recheck`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from starlette.concurrency import run_in_threadpool

from steward.server import db
from steward.server.db import utcnow


@dataclass(frozen=True, slots=True)
class RunRequest:
    ids: tuple[int, ...]
    noop: bool
    requested_by: str


class RunSignals:
    """Per-application run-now state: the table plus in-process wake-ups."""

    def __init__(self, engine: Engine, *, recheck: float = 2.0) -> None:
        self.engine = engine
        self.recheck = recheck
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, certname: str) -> asyncio.Event:
        event = self._events.get(certname)
        if event is None:
            event = self._events[certname] = asyncio.Event()
        return event

    def _insert(self, certname: str, requested_by: str, noop: bool) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(db.run_requests).values(
                certname=certname, requested_at=utcnow(), requested_by=requested_by,
                noop=1 if noop else 0,
            ))
            key = result.inserted_primary_key
            return int(key[0]) if key else 0

    def claim(self, certname: str) -> RunRequest | None:
        """Take every pending request of ``certname`` (several coalesce into one run)."""
        r = db.run_requests.c
        with db.reading(self.engine) as conn:
            # Most polls find nothing: look without taking SQLite's write lock first.
            waiting = conn.execute(
                select(r.id).where(and_(r.certname == certname, r.claimed_at.is_(None)))
                .limit(1)
            ).first()
        if waiting is None:
            return None
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(r.id, r.noop, r.requested_by)
                .where(and_(r.certname == certname, r.claimed_at.is_(None))).order_by(r.id)
            ).all()
            if not rows:
                return None
            ids = tuple(int(row.id) for row in rows)
            conn.execute(update(db.run_requests).where(r.id.in_(ids)).values(claimed_at=utcnow()))
        # A real run wins over noop when both were asked for.
        return RunRequest(ids=ids, noop=all(bool(row.noop) for row in rows),
                          requested_by=rows[-1].requested_by)

    async def request(self, certname: str, requested_by: str, *, noop: bool = False) -> int:
        request_id = await run_in_threadpool(self._insert, certname, requested_by, noop)
        self._event(certname).set()
        return request_id

    async def wait(self, certname: str, timeout: float) -> RunRequest | None:
        """Return a claimed request as soon as there is one, or None after ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        event = self._event(certname)
        while True:
            # Cleared before looking, so a request made after the look still wakes us.
            event.clear()
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
        with db.reading(self.engine) as conn:
            rows = conn.execute(
                select(r.id, r.certname, r.requested_at, r.requested_by, r.noop)
                .where(r.claimed_at.is_(None)).order_by(r.id)
            ).all()
        return [{"id": row.id, "certname": row.certname, "requested_by": row.requested_by,
                 "noop": bool(row.noop)} for row in rows]
