"""The tamper-evident audit log: a hash chain of entries with signed checkpoints.

Every entry carries ``prev_hash`` (its predecessor's ``entry_hash``, or 64 zeros for entry 1)
and ``entry_hash`` = SHA-256 over a domain-separated canonical JSON encoding of its fields and
``prev_hash`` (see :func:`entry_hash` and docs/audit.md). Appends are serialised on a one-row
head table (``SELECT ... FOR UPDATE`` on PostgreSQL, the write lock ``BEGIN IMMEDIATE`` takes
on SQLite), ids are consecutive, and a unique index on ``prev_hash`` makes a fork impossible
even for a writer that bypasses this module.

A chain alone proves nothing against someone who can rewrite the whole table and recompute
every hash; checkpoints do. Like CloudTrail's digest files and RFC 6962's signed tree heads,
a checkpoint signs (size, head hash, time, previous checkpoint's signature) with an Ed25519
key that lives in the data directory, not in the database. A background writer signs the
head within ``checkpoint_interval`` (1 s) of every append, at most once per interval across
every process on the database, and on close; each checkpoint is written to a witness
*outside* the database (an append-only file, ``audit-witness.jsonl``, fsynced before the
checkpoint row commits; optionally a command or URL too). :meth:`AuditLog.verify` checks the
chain against the latest witnessed checkpoint, so deleting the tail or recomputing the chain
is caught on a fresh install; only the last interval's entries are unwitnessed.

Here is the log itself (appending, reading, when to checkpoint); an entry's fields and hash
are in :mod:`~steward.access.audit_entries`, the key and the checkpoint writer in
:mod:`~steward.access.checkpoints`, the witness in :mod:`~steward.access.witness` and the
checks in :mod:`~steward.access.audit_verify`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, Row, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from steward.access import tables
from steward.access.audit_entries import (
    GENESIS_HASH,
    HEAD_ID,
    MAX_REASON,
    OUTCOMES,
    AuditError,
    EntryFields,
    cut_to_column,
    encode_parameters,
    entry_hash,
    public_entry,
)
from steward.access.audit_verify import VerifyResult
from steward.access.audit_verify import verify as verify_log
from steward.access.checkpoints import (
    DEFAULT_CHECKPOINT_INTERVAL,
    Checkpoint,
    CheckpointWriter,
    checkpoint_values,
    ensure_audit_key,
    key_id,
    load_signing_key,
)
from steward.access.principal import Principal
from steward.access.witness import Witness
from steward.catalog.redaction import scrub_text
from steward.clock import SYSTEM_CLOCK, Clock
from steward.store import db as store_db

log = logging.getLogger("steward.access.audit")

_TARGET_SEPARATORS = ("/", ":")


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditLog:
    """The append-only, hash-chained audit log over the server's database.

    ``key_path`` is the Ed25519 signing key (``<data>/audit.key``), loaded on first use and
    created then if missing (``create_key``); without one, no checkpoint is taken
    automatically. Every append wakes a background writer that signs the head and writes it
    to ``witness`` within ``checkpoint_interval`` seconds (None: only on demand), at most once
    per interval however many processes append; :meth:`close` stops it after a last one.
    ``clock`` stamps entries and checkpoints and so decides when the next one is due.
    """

    def __init__(self, engine: Engine, *, key_path: Path | None = None,
                 checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
                 witness: Witness | None = None, create_key: bool = True,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if checkpoint_interval is not None and not 0 < checkpoint_interval <= 3600:
            raise ValueError("checkpoint_interval must be in (0, 3600] seconds, or None")
        self.engine = engine
        self.key_path = key_path
        self.checkpoint_interval = checkpoint_interval
        self.witness = witness
        self.create_key = create_key
        self.clock = clock
        self._key: Ed25519PrivateKey | None = None
        self._key_failed = False
        self._key_lock = threading.Lock()
        self._writer: CheckpointWriter | None = None
        self._writer_lock = threading.Lock()
        self._closed = False

    # -- the key ------------------------------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        """The signing key, loaded (or created) once; :class:`AuditError` if unavailable."""
        with self._key_lock:
            if self._key is None:
                if self.key_path is None:
                    raise AuditError("no audit signing key is configured (audit.key in the "
                                     "data directory)")
                if self.create_key and not self.key_path.exists():
                    ensure_audit_key(self.key_path.parent)
                self._key = load_signing_key(self.key_path)
            return self._key

    def _auto_key(self) -> Ed25519PrivateKey | None:
        """The key for automatic checkpoints; a missing key must not stop the audit itself."""
        if self.key_path is None or self.checkpoint_interval is None or self._key_failed:
            return None
        try:
            return self.signing_key()
        except AuditError as exc:
            self._key_failed = True
            log.warning("audit checkpoints are disabled: %s", exc)
            return None

    def _appended(self) -> None:
        """Wake the checkpoint writer (started on the first append of this process)."""
        if self.checkpoint_interval is None or self._auto_key() is None:
            return
        with self._writer_lock:
            if self._closed:
                return
            if self._writer is None:
                self._writer = CheckpointWriter(self, self.checkpoint_interval)
                self._writer.start()
            self._writer.wake.set()

    def close(self) -> None:
        """Stop the checkpoint writer, then sign whatever it had not signed yet."""
        with self._writer_lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            try:
                self.checkpoint_if_due(0.0)
            except (AuditError, SQLAlchemyError, OSError) as exc:
                log.warning("the last audit checkpoint failed: %s", exc)

    # -- writing ------------------------------------------------------------------------
    def record(
        self,
        *,
        actor: Principal | str | None,
        action: str,
        target: str | None,
        outcome: str,
        reason: str | None = None,
        remote: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        actor_kind: str | None = None,
        conn: Connection | None = None,
    ) -> dict[str, Any]:
        """Append one entry; returns it as :meth:`entries` shows it.

        ``actor`` is a principal, a label (with ``actor_kind``) or None for anonymous
        requests. ``parameters`` are redacted (see
        :func:`~steward.access.audit_entries.redact`); ``reason`` and ``target`` lose any
        token they contain. ``request_id`` ties the entries of one request
        together; one is generated when not given. Pass ``conn`` (a write transaction,
        ``engine.begin()``) to record atomically with the caller's own changes.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if actor is None:
            label, kind = "anonymous", actor_kind or "anonymous"
        elif isinstance(actor, str):
            label, kind = actor, actor_kind or "system"
        else:
            label, kind = actor.label, actor_kind or actor.label_kind
        cut = cut_to_column
        draft = {
            "actor": cut(label, "actor") or "", "actor_kind": cut(kind, "actor_kind") or "",
            "action": cut(action, "action") or "",
            "target": cut(scrub_text(target), "target") if target is not None else None,
            "parameters": encode_parameters(parameters), "outcome": outcome,
            "reason": scrub_text(reason)[:MAX_REASON] if reason else None,
            "remote": cut(remote, "remote"),
            "request_id": cut(request_id, "request_id") or uuid.uuid4().hex,
        }
        # PostgreSQL's text holds no NUL, and whatever a caller sent may: U+FFFD in its place.
        draft = {key: value.replace("\x00", "\ufffd") if isinstance(value, str) else value
                 for key, value in draft.items()}
        if conn is not None:
            entry = self._append(conn, draft)
        else:
            with self.engine.begin() as own:
                entry = self._append(own, draft)
        # Also for a caller's transaction: the writer locks the head, so it waits for it.
        self._appended()
        return entry

    def _lock_head(self, conn: Connection) -> Row[Any]:
        head = conn.execute(
            select(tables.audit_head).where(tables.audit_head.c.id == HEAD_ID).with_for_update()
        ).one_or_none()
        if head is None:
            raise AuditError("the audit log has no head row: the server's schema is not "
                             "migrated (start 'steward server' once, or run 'steward init')")
        return head

    def _append(self, conn: Connection, draft: dict[str, Any]) -> dict[str, Any]:
        head = self._lock_head(conn)
        fields = EntryFields(id=head.last_id + 1, at=self.clock.now(), **draft)
        digest = entry_hash(fields, head.last_hash)
        row = {**draft, "id": fields.id, "at": fields.at, "prev_hash": head.last_hash,
               "entry_hash": digest}
        conn.execute(insert(tables.audit).values(**row))
        conn.execute(update(tables.audit_head).where(tables.audit_head.c.id == HEAD_ID)
                     .values(last_id=fields.id, last_hash=digest))
        return public_entry(_RowView(row))

    def _sign(self, conn: Connection, key: Ed25519PrivateKey, size: int,
              head_hash: str) -> Checkpoint:
        """Insert the next checkpoint and witness it; the caller holds the head lock.

        The witness file is written (and fsynced) before the row commits: a checkpoint in
        the database is always in the file, and one in the file only is still true (it
        signs committed entries).
        """
        cp = tables.audit_checkpoints
        last = conn.execute(select(cp).order_by(cp.c.id.desc()).limit(1)).one_or_none()
        unsigned = Checkpoint(
            id=(last.id + 1) if last is not None else 1, size=size, head_hash=head_hash,
            at=self.clock.now(), prev_signature=last.signature if last is not None else None,
            key_id=key_id(key.public_key()),
        )
        signed = Checkpoint(**{**checkpoint_values(unsigned),
                               "signature": key.sign(unsigned.message()).hex()})
        conn.execute(insert(cp).values(**checkpoint_values(signed)))
        if self.witness is not None:
            self.witness.write(signed)
        return signed

    def checkpoint_if_due(self, interval: float) -> Checkpoint | float | None:
        """Sign the head unless a checkpoint covers it or the last is under ``interval`` old.

        Returns the new checkpoint, the seconds left until one is due, or None when the
        head is already signed. The age is the database's last checkpoint's, so several
        server processes together sign at most once per interval.
        """
        key = self.signing_key()
        cp = tables.audit_checkpoints
        with self.engine.begin() as conn:
            head = self._lock_head(conn)
            if head.last_id == 0:
                return None
            last = conn.execute(select(cp).order_by(cp.c.id.desc()).limit(1)).one_or_none()
            if last is not None and last.size >= head.last_id:
                return None
            if last is not None and interval > 0:
                at = last.at if last.at.tzinfo is not None else last.at.replace(tzinfo=UTC)
                age = (self.clock.now() - at).total_seconds()
                if 0 <= age < interval:
                    return float(interval - age)
            signed = self._sign(conn, key, head.last_id, head.last_hash)
        if self.witness is not None:
            self.witness.publish(signed)
        return signed

    def checkpoint(self) -> Checkpoint:
        """Sign the current head now (the latest checkpoint if nothing was appended since)."""
        signed = self.checkpoint_if_due(0.0)
        if isinstance(signed, Checkpoint):
            return signed
        checkpoints = self.checkpoints()
        if not checkpoints:
            raise AuditError("the audit log is empty: there is nothing to checkpoint")
        return checkpoints[-1]

    # -- reading ------------------------------------------------------------------------
    def entries(
        self,
        *,
        outcome: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        target_prefix: str | None = None,
        request_id: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries matching every filter given, newest first unless ``oldest_first``.

        ``target_prefix`` matches the target itself and targets continuing it after ``/``
        or ``:`` (``change:chg-3`` matches ``change:chg-3/node:web1``, not ``change:chg-30``);
        a prefix ending in ``/`` or ``:`` matches every target it begins (``node:``).
        """
        a = tables.audit.c
        conditions: list[Any] = []
        for column, value in ((a.outcome, outcome), (a.actor, actor), (a.action, action),
                              (a.target, target), (a.request_id, request_id)):
            if value is not None:
                conditions.append(column == value)
        if target_prefix is not None:
            escaped = _like_prefix(target_prefix)
            if target_prefix.endswith(_TARGET_SEPARATORS):
                conditions.append(a.target.like(escaped + "%", escape="\\"))
            else:
                conditions.append(or_(a.target == target_prefix, *(
                    a.target.like(escaped + sep + "%", escape="\\")
                    for sep in _TARGET_SEPARATORS)))
        if after_id is not None:
            conditions.append(a.id > after_id)
        query = (select(tables.audit).where(*conditions)
                 .order_by(a.id if oldest_first else a.id.desc())
                 .limit(max(1, min(limit, 100000))))
        with store_db.reading(self.engine) as conn:
            return [public_entry(row) for row in conn.execute(query)]

    def for_target(self, prefix: str, *, limit: int = 100000) -> list[dict[str, Any]]:
        """Every entry about ``prefix`` (see :meth:`entries`), oldest first: a trace."""
        return self.entries(target_prefix=prefix, limit=limit, oldest_first=True)

    def checkpoints(self) -> list[Checkpoint]:
        with store_db.reading(self.engine) as conn:
            return [Checkpoint.from_row(row) for row in conn.execute(
                select(tables.audit_checkpoints).order_by(tables.audit_checkpoints.c.id))]

    def head(self) -> tuple[int, str]:
        """The last entry's id and hash (0 and the genesis hash when empty)."""
        with store_db.reading(self.engine) as conn:
            row = conn.execute(select(tables.audit_head)
                               .where(tables.audit_head.c.id == HEAD_ID)).one_or_none()
        return (row.last_id, row.last_hash) if row is not None else (0, GENESIS_HASH)

    # -- verification ---------------------------------------------------------------------
    def verify(self, *, public_key: Ed25519PublicKey | None = None,
               batch: int = 5000) -> VerifyResult:
        """Check every entry's hash and link, the head, every checkpoint and the witness
        (see :func:`steward.access.audit_verify.verify`).

        The public key defaults to the one of ``key_path``; without any, checkpoints cannot
        be trusted and each is reported. Streams the log in batches of ``batch`` rows.
        """
        if public_key is None and self.key_path is not None and self.key_path.exists():
            public_key = load_signing_key(self.key_path).public_key()
        return verify_log(self.engine, self.witness, public_key, batch=batch)


class _RowView:
    """Attribute access over a dict, so a just-written row renders like a fetched one."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None
