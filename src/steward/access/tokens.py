"""Tokens, the identities they stand for, and the append-only audit log.

A token is 32 random bytes behind a prefix naming its kind (``stwa_`` admin, ``stwo_``
operator, ``stwu_`` user (a human), ``stwg_`` agent, ``stwn_`` node, ``stwj_`` join, ``stwe_``
enrollment poll), so a leaked one is recognisable by secret scanners. User and agent tokens
carry no power of their own: what they may do comes from role bindings
(:mod:`steward.access.rbac`). The server stores only its SHA-256: the tokens are random,
not passwords, so a fast hash is as strong as a slow one and keeps every request cheap.
Tokens are looked up on every request (no cache), which is what makes revocation take effect
on the very next request.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from steward.access import tables
from steward.access.principal import Principal
from steward.clock import SYSTEM_CLOCK, Clock, iso
from steward.errors import NotFoundError, StewardError
from steward.store import db as store_db

KINDS = ("admin", "operator", "user", "agent", "node", "join", "enrollment")
PREFIXES = {"admin": "stwa_", "operator": "stwo_", "user": "stwu_", "agent": "stwg_",
            "node": "stwn_", "join": "stwj_", "enrollment": "stwe_"}
#: Kinds that stand for a person or an agent and act in the pipeline under role bindings
#: (admin and operator tokens imply the roles of the same name; user and agent tokens get
#: only the roles granted to their name).
PRINCIPAL_KINDS = frozenset({"admin", "operator", "user", "agent"})
#: last_used_at is refreshed at most this often, so reads do not become writes.
_TOUCH_INTERVAL = timedelta(seconds=60)


class AuthenticationError(StewardError):
    """The request carries no token, or one that is unknown, expired or revoked (HTTP 401)."""


def new_token(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def insert_token(
    conn: Connection,
    kind: str,
    name: str,
    *,
    now: datetime,
    certname: str | None = None,
    created_by: str | None = None,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
) -> tuple[str, str]:
    """Mint a token inside the caller's transaction; returns ``(token, id)``.

    The plaintext exists only in the return value: the caller hands it out once. ``now``
    (its creation time) comes from the caller's clock.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    token = new_token(kind)
    token_id = new_id()
    conn.execute(insert(tables.tokens).values(
        id=token_id, kind=kind, name=name, token_hash=hash_token(token), certname=certname,
        created_at=now, created_by=created_by, expires_at=expires_at, max_uses=max_uses,
        uses=0,
    ))
    return token, token_id


def _token_public(row: Any) -> dict[str, Any]:
    """A token's metadata, never its hash."""
    return {
        "id": row.id, "kind": row.kind, "name": row.name, "certname": row.certname,
        "created_at": iso(row.created_at), "created_by": row.created_by,
        "expires_at": iso(row.expires_at), "revoked_at": iso(row.revoked_at),
        "max_uses": row.max_uses, "uses": row.uses, "last_used_at": iso(row.last_used_at),
    }



class Tokens:
    """Token minting, authentication and revocation over the server's database."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        #: Decides expiry: when a token is made to expire and whether it has.
        self.clock = clock

    def create(
        self,
        kind: str,
        name: str,
        *,
        created_by: str | None = None,
        expires_in: timedelta | None = None,
        max_uses: int | None = None,
        certname: str | None = None,
    ) -> dict[str, Any]:
        """Mint a token; the result holds the plaintext, which is never retrievable again."""
        now = self.clock.now()
        expires_at = now + expires_in if expires_in is not None else None
        with self.engine.begin() as conn:
            token, token_id = insert_token(
                conn, kind, name, now=now, certname=certname, created_by=created_by,
                expires_at=expires_at, max_uses=max_uses,
            )
            row = conn.execute(select(tables.tokens).where(tables.tokens.c.id == token_id)).one()
        return {**_token_public(row), "token": token}

    def authenticate(self, token: str) -> Principal:
        """The identity behind ``token``; :class:`AuthenticationError` says why not."""
        now = self.clock.now()
        with store_db.reading(self.engine) as conn:
            row = conn.execute(
                select(tables.tokens).where(tables.tokens.c.token_hash == hash_token(token))
            ).one_or_none()
        if row is None:
            raise AuthenticationError("unknown token")
        if row.revoked_at is not None:
            raise AuthenticationError(f"token {row.id} has been revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationError(f"token {row.id} expired at {iso(row.expires_at)}")
        if row.max_uses is not None and row.uses >= row.max_uses:
            raise AuthenticationError(f"token {row.id} has been used up")
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_INTERVAL:
            with self.engine.begin() as conn:
                conn.execute(update(tables.tokens).where(tables.tokens.c.id == row.id)
                             .values(last_used_at=now))
        return Principal.authenticated(row.kind, row.id, row.name, row.certname)

    def list_tokens(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        query = select(tables.tokens).order_by(tables.tokens.c.created_at, tables.tokens.c.id)
        if not include_revoked:
            query = query.where(tables.tokens.c.revoked_at.is_(None))
        with store_db.reading(self.engine) as conn:
            return [_token_public(row) for row in conn.execute(query)]

    def get(self, token_id: str) -> dict[str, Any]:
        with store_db.reading(self.engine) as conn:
            row = conn.execute(
                select(tables.tokens).where(tables.tokens.c.id == token_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"no token with id {token_id!r}")
        return _token_public(row)

    def revoke(self, token_id: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(tables.tokens)
                .where(and_(tables.tokens.c.id == token_id, tables.tokens.c.revoked_at.is_(None)))
                .values(revoked_at=self.clock.now())
            )
            if result.rowcount == 0:
                exists = conn.execute(
                    select(tables.tokens.c.id).where(tables.tokens.c.id == token_id)
                ).one_or_none()
                if exists is None:
                    raise NotFoundError(f"no token with id {token_id!r}")
        return self.get(token_id)


def consume_token(conn: Connection, token_id: str, *, now: datetime) -> bool:
    """Count one use of a limited token atomically, as of the caller's ``now``; False when
    none was left."""
    t = tables.tokens.c
    result = conn.execute(
        update(tables.tokens)
        .where(and_(t.id == token_id, t.revoked_at.is_(None),
                    or_(t.max_uses.is_(None), t.uses < t.max_uses),
                    or_(t.expires_at.is_(None), t.expires_at > now)))
        .values(uses=t.uses + 1, last_used_at=now)
    )
    return result.rowcount == 1



def revoke_certname_tokens(conn: Connection, certname: str, *, now: datetime) -> int:
    """Revoke every node and enrollment-poll token bound to ``certname``, as of ``now``."""
    t = tables.tokens.c
    result = conn.execute(
        update(tables.tokens)
        .where(and_(t.certname == certname, t.revoked_at.is_(None),
                    t.kind.in_(("node", "enrollment"))))
        .values(revoked_at=now)
    )
    return result.rowcount
