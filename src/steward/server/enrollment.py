"""Node enrollment, as Puppet's certificate signing but with tokens.

A node asks to enroll with its name and facts. With a valid join token (pre-shared, expiring,
optionally limited in uses) it is approved at once and receives its node credential in the
answer. Without one the request waits for an operator (``steward node approve NAME``); the
node polls with a one-request poll token and collects its credential once, after approval.
The credential is minted at collection, so its plaintext never rests in the database.

A name that already holds a live credential cannot be claimed again (not even with a join
token) until an operator revokes it; a revoked name is never re-admitted by a join token
alone, only by an explicit approval.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update

from steward.access import tables
from steward.access.principal import Principal
from steward.access.tokens import (
    consume_token,
    insert_token,
    new_id,
    revoke_certname_tokens,
)
from steward.clock import SYSTEM_CLOCK, Clock, iso
from steward.errors import NotFoundError
from steward.server import db
from steward.server.errors import EnrollmentError
from steward.store import db as store_db

CERTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
POLL_TOKEN_LIFETIME = timedelta(days=7)
#: Anonymous requests are cheap to send; this caps what they can fill the table with.
MAX_PENDING = 10000


def check_certname(certname: str) -> str:
    if not isinstance(certname, str) or not CERTNAME.match(certname):
        raise EnrollmentError(
            f"invalid node name {str(certname)[:80]!r}: use letters, digits, '.', '_' and '-' "
            "(at most 253 characters, starting with a letter or digit)"
        )
    return certname


def _node_public(row: Any) -> dict[str, Any]:
    return {
        "certname": row.certname, "status": row.status, "transport": row.transport,
        "environment": row.environment, "requested_at": iso(row.requested_at),
        "approved_at": iso(row.approved_at), "approved_by": row.approved_by,
        "revoked_at": iso(row.revoked_at), "revoked_by": row.revoked_by,
        "last_seen_at": iso(row.last_seen_at), "last_run_at": iso(row.last_run_at),
        "last_catalog_hash": row.last_catalog_hash,
        "last_environment": row.last_environment,
        "ssh": row.ssh,
    }


class Enrollment:
    """Enrollment requests, approvals and revocations; every change in one transaction."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        #: Stamps requests, approvals, revocations and the tokens minted with them.
        self.clock = clock

    # -- the node's side -------------------------------------------------------------------

    def request(
        self,
        certname: str,
        facts: dict[str, Any] | None,
        *,
        join: Principal | None,
        remote: str | None,
    ) -> dict[str, Any]:
        """Handle an enrollment request; a valid join token approves it at once."""
        check_certname(certname)
        now = self.clock.now()
        with self.engine.begin() as conn:
            node = self._node(conn, certname)
            if node is not None and node.status == "approved":
                raise EnrollmentError(
                    f"node {certname!r} is already enrolled; an operator must revoke it first "
                    f"('steward node revoke {certname}')"
                )
            pending = conn.execute(select(db.enrollments.c.id).where(and_(
                db.enrollments.c.certname == certname, db.enrollments.c.status == "pending",
            ))).first()
            if pending is not None:
                raise EnrollmentError(
                    f"an enrollment request for {certname!r} is already pending "
                    f"(request {pending.id}); an operator can approve or revoke it"
                )
            if join is not None and (node is None or node.status != "revoked"):
                if join.token_id is None or not consume_token(conn, join.token_id, now=now):
                    raise EnrollmentError("the join token is expired, revoked or used up")
                self._upsert_node(conn, certname, status="approved", requested_at=now,
                                  approved_at=now, approved_by=join.label, revoked_at=None,
                                  revoked_by=None)
                token, _ = insert_token(conn, "node", certname, now=now, certname=certname,
                                        created_by=join.label)
                return {"status": "approved", "certname": certname, "token": token}
            count = conn.execute(
                select(func.count()).select_from(db.enrollments)
                .where(db.enrollments.c.status == "pending")
            ).scalar_one()
            if count >= MAX_PENDING:
                raise EnrollmentError("too many pending enrollment requests; try again later")
            poll_token, poll_id = insert_token(
                conn, "enrollment", certname, now=now, certname=certname,
                created_by="enrollment request", expires_at=now + POLL_TOKEN_LIFETIME,
            )
            request_id = new_id()
            conn.execute(insert(db.enrollments).values(
                id=request_id, certname=certname, status="pending", poll_token_id=poll_id,
                facts=facts, requested_at=now, remote=remote,
            ))
            if node is None:
                self._upsert_node(conn, certname, status="pending", requested_at=now)
            else:
                self._upsert_node(conn, certname, requested_at=now)
        reason = ("the node was revoked: only an operator can re-admit it"
                  if join is not None else "waiting for an operator")
        return {"status": "pending", "certname": certname, "request_id": request_id,
                "poll_token": poll_token, "message": reason}

    def collect(self, request_id: str, identity: Principal) -> dict[str, Any]:
        """The node polls its request; after approval it collects its credential, once."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            row = conn.execute(
                select(db.enrollments).where(db.enrollments.c.id == request_id)
            ).one_or_none()
            if row is None or row.poll_token_id != identity.token_id:
                raise NotFoundError(f"no enrollment request {request_id!r} for this token")
            if row.status != "approved":
                return {"status": row.status, "certname": row.certname,
                        "request_id": request_id}
            conn.execute(update(db.enrollments).where(db.enrollments.c.id == request_id)
                         .values(status="collected"))
            conn.execute(update(tables.tokens).where(tables.tokens.c.id == row.poll_token_id)
                         .values(revoked_at=now))
            token, _ = insert_token(conn, "node", row.certname, now=now, certname=row.certname,
                                    created_by=row.decided_by)
        return {"status": "approved", "certname": row.certname, "token": token,
                "request_id": request_id}

    # -- the operator's side ---------------------------------------------------------------

    def approve(self, certname: str, by: Principal) -> dict[str, Any]:
        now = self.clock.now()
        with self.engine.begin() as conn:
            node = self._node(conn, certname)
            if node is None:
                raise NotFoundError(f"no node or enrollment request named {certname!r}")
            pending = conn.execute(select(db.enrollments.c.id).where(and_(
                db.enrollments.c.certname == certname, db.enrollments.c.status == "pending",
            ))).first()
            if pending is None:
                if node.status == "approved":
                    return {"certname": certname, "status": "approved", "changed": False}
                raise EnrollmentError(
                    f"node {certname!r} has no pending enrollment request to approve "
                    "(the node must ask to enroll again)"
                )
            conn.execute(update(db.enrollments).where(db.enrollments.c.id == pending.id)
                         .values(status="approved", decided_at=now, decided_by=by.label))
            self._upsert_node(conn, certname, status="approved", approved_at=now,
                              approved_by=by.label, revoked_at=None, revoked_by=None)
        return {"certname": certname, "status": "approved", "changed": True,
                "request_id": pending.id}

    def revoke(self, certname: str, by: Principal) -> dict[str, Any]:
        """Revoke the node's credentials and reject its pending request, effective at once."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            node = self._node(conn, certname)
            if node is None:
                raise NotFoundError(f"no node named {certname!r}")
            revoked = revoke_certname_tokens(conn, certname, now=now)
            conn.execute(update(db.enrollments).where(and_(
                db.enrollments.c.certname == certname,
                db.enrollments.c.status.in_(("pending", "approved")),
            )).values(status="rejected", decided_at=now, decided_by=by.label))
            self._upsert_node(conn, certname, status="revoked", revoked_at=now,
                              revoked_by=by.label)
        return {"certname": certname, "status": "revoked", "tokens_revoked": revoked}

    def register_ssh(
        self, certname: str, ssh: dict[str, Any], by: Principal, environment: str | None
    ) -> dict[str, Any]:
        """An agentless node: approved by the operator who adds it, reached over SSH."""
        check_certname(certname)
        now = self.clock.now()
        with self.engine.begin() as conn:
            node = self._node(conn, certname)
            if node is not None and node.transport != "ssh":
                raise EnrollmentError(f"node {certname!r} already exists as a pull-agent node")
            self._upsert_node(conn, certname, status="approved", transport="ssh", ssh=ssh,
                              environment=environment, requested_at=now, approved_at=now,
                              approved_by=by.label, revoked_at=None, revoked_by=None)
        return self.get(certname)

    # -- reads -----------------------------------------------------------------------------

    def get(self, certname: str) -> dict[str, Any]:
        with store_db.reading(self.engine) as conn:
            node = self._node(conn, certname)
            if node is None:
                raise NotFoundError(f"no node named {certname!r}")
            return {**_node_public(node), "enrollment": self._latest_request(conn, certname)}

    def status_of(self, certname: str) -> str | None:
        with store_db.reading(self.engine) as conn:
            node = self._node(conn, certname)
        return None if node is None else str(node.status)

    def list_nodes(self, *, status: str | None = None) -> list[dict[str, Any]]:
        query = select(db.nodes).order_by(db.nodes.c.certname)
        if status is not None:
            query = query.where(db.nodes.c.status == status)
        with store_db.reading(self.engine) as conn:
            rows = conn.execute(query).all()
            requests = {
                row.certname: row for row in conn.execute(
                    select(db.enrollments).where(db.enrollments.c.status == "pending")
                )
            }
        return [
            {**_node_public(row),
             "pending_request": requests[row.certname].id if row.certname in requests else None}
            for row in rows
        ]

    def ssh_nodes(self) -> list[dict[str, Any]]:
        with store_db.reading(self.engine) as conn:
            rows = conn.execute(select(db.nodes).where(and_(
                db.nodes.c.transport == "ssh", db.nodes.c.status == "approved",
            )).order_by(db.nodes.c.certname)).all()
        return [_node_public(row) for row in rows]

    def touch(self, certname: str, **values: Any) -> None:
        """Record activity (last seen, last catalog hash, last run) for a node."""
        with self.engine.begin() as conn:
            conn.execute(update(db.nodes).where(db.nodes.c.certname == certname).values(**values))

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _node(conn: Connection, certname: str) -> Any:
        return conn.execute(
            select(db.nodes).where(db.nodes.c.certname == certname)
        ).one_or_none()

    @staticmethod
    def _latest_request(conn: Connection, certname: str) -> dict[str, Any] | None:
        row = conn.execute(
            select(db.enrollments).where(db.enrollments.c.certname == certname)
            .order_by(db.enrollments.c.requested_at.desc()).limit(1)
        ).one_or_none()
        if row is None:
            return None
        return {"id": row.id, "status": row.status, "requested_at": iso(row.requested_at),
                "decided_at": iso(row.decided_at), "decided_by": row.decided_by,
                "remote": row.remote}

    @staticmethod
    def _upsert_node(conn: Connection, certname: str, **values: Any) -> None:
        exists = conn.execute(
            select(db.nodes.c.certname).where(db.nodes.c.certname == certname)
        ).one_or_none()
        if exists is None:
            values.setdefault("status", "pending")
            values.setdefault("transport", "pull")
            conn.execute(insert(db.nodes).values(certname=certname, **values))
        else:
            conn.execute(update(db.nodes).where(db.nodes.c.certname == certname).values(**values))
