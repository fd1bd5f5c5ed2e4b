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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Row,
    insert,
    inspect,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from steward.access import tables
from steward.access.principal import Principal
from steward.catalog.canonical import canonical_json, encode_string
from steward.catalog.redaction import REDACTED as REDACTED  # noqa: PLC0414 (re-export)
from steward.catalog.redaction import is_secret_key, scrub_text
from steward.catalog.redaction import redact as redact_value
from steward.errors import StewardError
from steward.store import db as store_db
from steward.store.db import utcnow

log = logging.getLogger("steward.access.audit")

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
ENTRY_DOMAIN = b"steward-audit-entry-v1\n"
CHECKPOINT_DOMAIN = b"steward-audit-checkpoint-v1\n"
OUTCOMES = ("allowed", "denied", "succeeded", "failed")
KEY_FILE = "audit.key"
PUBLIC_KEY_FILE = "audit.pub"
WITNESS_FILE = "audit-witness.jsonl"
#: Seconds between automatic checkpoints at most (so also the longest unwitnessed window).
DEFAULT_CHECKPOINT_INTERVAL = 1.0
#: How long an external witness (command or URL) may take to accept a checkpoint.
WITNESS_TIMEOUT = 10.0
#: Longest stored string inside parameters, and the longest parameters document.
MAX_PARAMETER_STRING = 2000
MAX_PARAMETERS = 65536
MAX_REASON = 2000
#: Problems listed by one verification; the rest are counted.
MAX_PROBLEMS = 1000
_HEAD_ID = 1
#: Column sizes of steward_audit (values are cut to fit before they are hashed).
_LIMITS = {"actor": 255, "actor_kind": 16, "action": 255, "target": 512, "remote": 255,
           "request_id": 64}


class AuditError(StewardError):
    """The audit log or its signing key cannot be used as asked."""


# -- redaction -----------------------------------------------------------------------------
# The rule, the marker and the walk are steward.catalog.redaction's (one for all of Steward);
# what is audit-specific is the cut of long strings.

#: The one secret-looking-key rule (kept under its old name for callers of this module).
sensitive_key = is_secret_key
#: Steward tokens, URL passwords, bearer credentials and ``password=...`` pairs in text.
scrub = scrub_text


def redact(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with credentials replaced by :data:`REDACTED`, and
    strings cut at :data:`MAX_PARAMETER_STRING` (see :func:`steward.catalog.redaction.redact`).
    """
    return redact_value(value, max_string=MAX_PARAMETER_STRING)


def encode_parameters(parameters: Mapping[str, Any] | None) -> str | None:
    """The stored (and hashed) form of an entry's parameters: redacted canonical JSON."""
    if not parameters:
        return None
    text = canonical_json(redact(parameters))
    if len(text) > MAX_PARAMETERS:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        text = canonical_json({"[truncated]": True, "bytes": len(text), "sha256": digest})
    return text


# -- the hash and the signature ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryFields:
    """The hashed fields of one entry, as stored."""

    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    target: str | None
    parameters: str | None
    outcome: str
    reason: str | None
    remote: str | None
    request_id: str | None


def format_time(at: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: what both backends store, to the microsecond.

    A naive datetime is taken as UTC (SQLite returns them so).
    """
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"


def entry_document(fields: EntryFields, prev_hash: str) -> dict[str, Any]:
    """What is hashed: every field (``parameters`` as its stored JSON text) and ``prev_hash``."""
    return {
        "id": fields.id, "at": format_time(fields.at), "actor": fields.actor,
        "actor_kind": fields.actor_kind, "action": fields.action, "target": fields.target,
        "parameters": fields.parameters, "outcome": fields.outcome, "reason": fields.reason,
        "remote": fields.remote, "request_id": fields.request_id, "prev_hash": prev_hash,
    }


def entry_hash(fields: EntryFields, prev_hash: str) -> str:
    """``hex(sha256(b"steward-audit-entry-v1\n" + canonical_json(entry_document)))``.

    Format 1, frozen: migrations chain old rows with it, so a new format gets a new domain.
    """
    return _hash(fields.id, format_time(fields.at), fields.actor, fields.actor_kind,
                 fields.action, fields.target, fields.parameters, fields.outcome,
                 fields.reason, fields.remote, fields.request_id, prev_hash)


def _hash(id_: int, at: str, actor: str, actor_kind: str, action: str, target: str | None,
          parameters: str | None, outcome: str, reason: str | None, remote: str | None,
          request_id: str | None, prev_hash: str) -> str:
    """:func:`entry_hash` of formatted values: ``canonical_json(entry_document(...))`` written
    out with its keys in sorted order (equal by test), because verification runs it per row."""
    e = encode_string
    text = (
        f'{{"action":{e(action)},"actor":{e(actor)},"actor_kind":{e(actor_kind)},'
        f'"at":{e(at)},"id":{int(id_)},"outcome":{e(outcome)},'
        f'"parameters":{"null" if parameters is None else e(parameters)},'
        f'"prev_hash":{e(prev_hash)},"reason":{"null" if reason is None else e(reason)},'
        f'"remote":{"null" if remote is None else e(remote)},'
        f'"request_id":{"null" if request_id is None else e(request_id)},'
        f'"target":{"null" if target is None else e(target)}}}'
    )
    return hashlib.sha256(ENTRY_DOMAIN + text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the log had ``size`` entries ending in ``head_hash``."""

    id: int
    size: int
    head_hash: str
    at: datetime
    prev_signature: str | None
    key_id: str
    signature: str = ""

    def message(self) -> bytes:
        """The signed bytes: domain, then canonical JSON of everything but the signature."""
        return CHECKPOINT_DOMAIN + canonical_json({
            "id": self.id, "size": self.size, "head_hash": self.head_hash,
            "at": format_time(self.at), "prev_signature": self.prev_signature,
            "key_id": self.key_id,
        }).encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "head_hash": self.head_hash,
                "at": format_time(self.at), "prev_signature": self.prev_signature,
                "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_row(cls, row: Row[Any]) -> Checkpoint:
        return cls(id=row.id, size=row.size, head_hash=row.head_hash, at=row.at,
                   prev_signature=row.prev_signature, key_id=row.key_id,
                   signature=row.signature)

    @classmethod
    def from_json(cls, document: object) -> Checkpoint:
        """Parse :meth:`to_json`'s form (a witness line); :class:`ValueError` says what is off."""
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        try:
            values = {name: document[name] for name in (
                "id", "size", "head_hash", "at", "prev_signature", "key_id", "signature")}
        except KeyError as exc:
            raise ValueError(f"no field {exc.args[0]!r}") from None
        for name in ("id", "size"):
            if not isinstance(values[name], int) or isinstance(values[name], bool) \
                    or values[name] < 1:
                raise ValueError(f"{name!r} is not a positive integer")
        for name in ("head_hash", "at", "key_id", "signature"):
            if not isinstance(values[name], str):
                raise ValueError(f"{name!r} is not a string")
        if values["prev_signature"] is not None and not isinstance(values["prev_signature"],
                                                                    str):
            raise ValueError("'prev_signature' is not a string or null")
        try:
            at = datetime.strptime(values["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"'at' is not a UTC time: {values['at'][:40]!r}") from None
        return cls(**{**values, "at": at})


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# -- the key --------------------------------------------------------------------------------


def ensure_audit_key(data_dir: Path) -> Path:
    """Create ``<data>/audit.key`` (Ed25519, PKCS#8 PEM, 0600) and ``audit.pub`` if missing.

    Returns the key's path. Creation is exclusive, so two processes never end up with
    different keys; an existing key is left alone. ``audit.pub`` is 0600 like every file
    of the data directory: copy it off the host to verify elsewhere.
    """
    path = data_dir / KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise AuditError(f"cannot create the audit signing key {path}: {exc.strerror}") \
                from None
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
    public = data_dir / PUBLIC_KEY_FILE
    if not public.exists():
        pem = load_signing_key(path).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with os.fdopen(os.open(public, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       "wb") as handle:
            handle.write(pem)
    return path


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"no audit signing key at {path}") from None
    except OSError as exc:
        raise AuditError(f"cannot read the audit signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: the audit key must be Ed25519, not {type(key).__name__}")
    return key


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """The public key from ``audit.pub`` (or a copy kept elsewhere) or from ``audit.key``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read the audit key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path}: the audit key must be Ed25519, not {type(key).__name__}")
    return key


# -- the witness ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessLine:
    """One line of the witness file: its checkpoint, or why it is not one."""

    line: int
    checkpoint: Checkpoint | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Witness:
    """Where checkpoints are written outside the database (docs/audit.md, "The witness").

    ``path`` is an append-only JSON-lines file: each checkpoint is appended under an exclusive
    lock and fsynced *before* its database row commits, so every committed checkpoint is in
    the file (which is what lets verification notice a file cut back to an older line).
    ``command`` (an argv, the checkpoint's JSON on stdin) and ``url`` (POSTed the JSON) are
    external witnesses, told after the commit, best effort: a failure is logged.
    """

    path: Path | None = None
    command: tuple[str, ...] = ()
    url: str | None = None
    timeout: float = WITNESS_TIMEOUT

    def write(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` to the file (created 0600); :class:`AuditError` if it fails."""
        if self.path is None:
            return
        line = (canonical_json(checkpoint.to_json()) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit witness {self.path}: {exc.strerror}") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # an interrupted write: keep this checkpoint on its own line
            os.write(fd, line)
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit witness {self.path}: {exc.strerror}") \
                from None
        finally:
            os.close(fd)

    def publish(self, checkpoint: Checkpoint) -> None:
        """Hand ``checkpoint`` to the external witnesses; failures are logged, not raised."""
        body = (canonical_json(checkpoint.to_json()) + "\n").encode("utf-8")
        if self.command:
            try:
                done = subprocess.run(  # the operator's configured command
                    list(self.command), input=body, capture_output=True, timeout=self.timeout,
                    check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("audit witness command %s failed: %s", self.command[0], exc)
            else:
                if done.returncode != 0:
                    log.warning("audit witness command %s exited %d: %s", self.command[0],
                                done.returncode,
                                done.stderr.decode("utf-8", "replace").strip()[:500])
        if self.url:
            request = urllib.request.Request(  # noqa: S310 (http(s) checked by the config)
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):  # noqa: S310
                    pass
            except (OSError, ValueError) as exc:
                log.warning("audit witness %s refused checkpoint %d: %s", self.url,
                            checkpoint.id, exc)

    def read(self) -> list[WitnessLine] | None:
        """Every line of the file, parsed (None when there is no file)."""
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit witness {self.path}: {exc.strerror}") \
                from None
        lines: list[WitnessLine] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                lines.append(WitnessLine(number, Checkpoint.from_json(json.loads(raw))))
            except (ValueError, UnicodeDecodeError) as exc:
                lines.append(WitnessLine(number, None, f"not a checkpoint: {exc}"))
        return lines


# -- verification results -------------------------------------------------------------------


@dataclass(slots=True)
class VerifyResult:
    """What :meth:`AuditLog.verify` found; ``problems`` are ``{"entry_id", "problem"}``."""

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    last_entry: int = 0
    #: The latest witnessed checkpoint that verified (None: no witness, or none in it).
    witnessed: Checkpoint | None = None
    #: Entries newer than ``witnessed`` (all of them when nothing is witnessed): the window
    #: in which a deletion or rewrite would not be detected.
    unwitnessed_entries: int = 0
    #: Where the witness was read from (None: verified without a witness).
    witness_path: str | None = None

    @property
    def first_bad_entry(self) -> int | None:
        """The lowest entry id any problem names (None when no entry is named)."""
        ids = [p["entry_id"] for p in self.problems if p["entry_id"] is not None]
        return min(ids) if ids else None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "checkpoints_checked": self.checkpoints_checked,
                "last_entry": self.last_entry, "first_bad_entry": self.first_bad_entry,
                "problems": self.problems, "witness": self.witness_path,
                "witnessed_checkpoint": self.witnessed.to_json() if self.witnessed else None,
                "unwitnessed_entries": self.unwitnessed_entries}


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.suppressed = 0

    def add(self, entry_id: int | None, problem: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"entry_id": entry_id, "problem": problem})
        else:
            self.suppressed += 1

    def result(self) -> list[dict[str, Any]]:
        items = sorted(self.items, key=lambda p: (p["entry_id"] is None, p["entry_id"] or 0))
        if self.suppressed:
            items.append({"entry_id": None,
                          "problem": f"{self.suppressed} more problems are not listed"})
        return items


# -- the log ----------------------------------------------------------------------------------


_ENTRY_COLUMNS = ("id", "at", "actor", "actor_kind", "action", "target", "parameters",
                  "outcome", "reason", "remote", "request_id", "prev_hash", "entry_hash")


def _fields(row: Any) -> EntryFields:
    return EntryFields(id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind,
                       action=row.action, target=row.target, parameters=row.parameters,
                       outcome=row.outcome, reason=row.reason, remote=row.remote,
                       request_id=row.request_id)


def _cut(value: str | None, name: str) -> str | None:
    return None if value is None else value[:_LIMITS[name]]


def public_entry(row: Any) -> dict[str, Any]:
    """An entry as the API and the CLI show it (parameters parsed back into JSON)."""
    return {
        "id": row.id, "at": format_time(row.at), "actor": row.actor,
        "actor_kind": row.actor_kind, "action": row.action, "target": row.target,
        "parameters": json.loads(row.parameters) if row.parameters else None,
        "outcome": row.outcome, "reason": row.reason, "remote": row.remote,
        "request_id": row.request_id, "prev_hash": row.prev_hash,
        "entry_hash": row.entry_hash,
    }


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
    """

    def __init__(self, engine: Engine, *, key_path: Path | None = None,
                 checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
                 witness: Witness | None = None, create_key: bool = True) -> None:
        if checkpoint_interval is not None and not 0 < checkpoint_interval <= 3600:
            raise ValueError("checkpoint_interval must be in (0, 3600] seconds, or None")
        self.engine = engine
        self.key_path = key_path
        self.checkpoint_interval = checkpoint_interval
        self.witness = witness
        self.create_key = create_key
        self._key: Ed25519PrivateKey | None = None
        self._key_failed = False
        self._key_lock = threading.Lock()
        self._writer: _CheckpointWriter | None = None
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
                self._writer = _CheckpointWriter(self, self.checkpoint_interval)
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
        requests. ``parameters`` are redacted (see :func:`redact`); ``reason`` and ``target``
        lose any token they contain. ``request_id`` ties the entries of one request
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
        draft = {
            "actor": _cut(label, "actor") or "", "actor_kind": _cut(kind, "actor_kind") or "",
            "action": _cut(action, "action") or "",
            "target": _cut(scrub(target), "target") if target is not None else None,
            "parameters": encode_parameters(parameters), "outcome": outcome,
            "reason": scrub(reason)[:MAX_REASON] if reason else None,
            "remote": _cut(remote, "remote"),
            "request_id": _cut(request_id, "request_id") or uuid.uuid4().hex,
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
            select(tables.audit_head).where(tables.audit_head.c.id == _HEAD_ID).with_for_update()
        ).one_or_none()
        if head is None:
            raise AuditError("the audit log has no head row: the server's schema is not "
                             "migrated (start 'steward server' once, or run 'steward init')")
        return head

    def _append(self, conn: Connection, draft: dict[str, Any]) -> dict[str, Any]:
        head = self._lock_head(conn)
        fields = EntryFields(id=head.last_id + 1, at=utcnow(), **draft)
        digest = entry_hash(fields, head.last_hash)
        row = {**draft, "id": fields.id, "at": fields.at, "prev_hash": head.last_hash,
               "entry_hash": digest}
        conn.execute(insert(tables.audit).values(**row))
        conn.execute(update(tables.audit_head).where(tables.audit_head.c.id == _HEAD_ID)
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
            at=utcnow(), prev_signature=last.signature if last is not None else None,
            key_id=key_id(key.public_key()),
        )
        signed = Checkpoint(**{**_as_dict(unsigned),
                               "signature": key.sign(unsigned.message()).hex()})
        conn.execute(insert(cp).values(**_as_dict(signed)))
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
                age = (utcnow() - at).total_seconds()
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
                               .where(tables.audit_head.c.id == _HEAD_ID)).one_or_none()
        return (row.last_id, row.last_hash) if row is not None else (0, GENESIS_HASH)

    # -- verification ---------------------------------------------------------------------
    def verify(self, *, public_key: Ed25519PublicKey | None = None,
               batch: int = 5000) -> VerifyResult:
        """Check every entry's hash and link, the head, and every checkpoint.

        Detects edited entries (hash mismatch), deleted ones (id gap, broken link),
        truncation (a checkpoint or the head beyond the last entry) and rewrites that
        recomputed the hashes (a checkpoint's head no longer matches). The public key
        defaults to the one of ``key_path``; without any, checkpoints cannot be trusted and
        each is reported. Streams the log in batches of ``batch`` rows.
        """
        if public_key is None and self.key_path is not None and self.key_path.exists():
            public_key = load_signing_key(self.key_path).public_key()
        problems = _Problems()
        # Read before the snapshot: every witnessed entry is then in it (lines are written
        # after their entries commit). Read again after: every checkpoint row in the
        # snapshot is then in the file (lines are fsynced before their rows commit).
        before = self.witness.read() if self.witness is not None else None
        with self._snapshot() as conn:
            self._check_schema(conn)
            head = conn.execute(select(tables.audit_head)
                                .where(tables.audit_head.c.id == _HEAD_ID)).one_or_none()
            checkpoints = [Checkpoint.from_row(row) for row in conn.execute(
                select(tables.audit_checkpoints).order_by(tables.audit_checkpoints.c.id))]
            after = self.witness.read() if self.witness is not None else None
            witnessed = self._check_witness_lines(before, public_key, problems)
            legacy = head.legacy_through if head is not None else 0
            signed_sizes = {c.size for c in checkpoints} | {w.size for _, w in witnessed}
            hashes_at: dict[int, str | None] = {}
            count, last_id, last_hash = 0, 0, GENESIS_HASH
            for rows in self._batches(conn, batch):
                count += len(rows)
                for row in rows:
                    (rid, at, actor, actor_kind, action, target, parameters, outcome, reason,
                     remote, request_id, prev, stored) = row
                    if (rid != last_id + 1 or prev != last_hash or stored is None
                            or _hash(rid, format_time(at), actor, actor_kind, action, target,
                                     parameters, outcome, reason, remote, request_id,
                                     prev) != stored):
                        self._check_entry(row, last_id, last_hash, legacy, problems)
                    if rid in signed_sizes:
                        hashes_at[rid] = stored
                    last_id, last_hash = rid, stored or ""
        self._check_head(head, last_id, last_hash, problems)
        self._check_checkpoints(checkpoints, hashes_at, last_id, public_key, problems)
        latest: Checkpoint | None = None
        witness_path = None
        if self.witness is not None:
            witness_path = str(self.witness.path)
            latest = self._check_witnessed(witnessed, hashes_at, last_id, problems)
            self._check_witness_complete(after, checkpoints, last_id, problems)
        listed = problems.result()
        return VerifyResult(ok=not listed, entries_checked=count,
                            checkpoints_checked=len(checkpoints), problems=listed,
                            last_entry=last_id, witnessed=latest,
                            unwitnessed_entries=max(0, last_id - (latest.size if latest else 0)),
                            witness_path=witness_path)

    def _check_witness_lines(self, lines: list[WitnessLine] | None,
                             public_key: Ed25519PublicKey | None,
                             problems: _Problems) -> list[tuple[int, Checkpoint]]:
        """The witness file's checkpoints whose signature verifies, as (line, checkpoint)."""
        if lines is None:
            return []
        path = self.witness.path if self.witness is not None else None
        expected_key = key_id(public_key) if public_key is not None else None
        valid: list[tuple[int, Checkpoint]] = []
        for line in lines:
            where = f"{path}:{line.line}"
            cp = line.checkpoint
            if cp is None:
                problems.add(None, f"{where}: {line.error} (the witness file was edited)")
                continue
            name = f"{where}: witnessed checkpoint {cp.id} (entries 1..{cp.size})"
            if public_key is None:
                problems.add(None, f"{name}: no public key to check its signature with "
                                   "(audit.key or --public-key)")
                continue
            if cp.key_id != expected_key:
                problems.add(None, f"{name} is signed by key {cp.key_id[:16]}..., not this "
                                   f"log's key {(expected_key or '')[:16]}...: forged")
                continue
            try:
                public_key.verify(bytes.fromhex(cp.signature), cp.message())
            except (InvalidSignature, ValueError):
                problems.add(None, f"{name}: the signature is invalid (the line was forged "
                                   "or altered)")
                continue
            if valid and cp.size < valid[-1][1].size:
                problems.add(None, f"{name} records fewer entries than line {valid[-1][0]} "
                                   f"({valid[-1][1].size}): the witness file was reordered")
            valid.append((line.line, cp))
        return valid

    def _check_witnessed(self, witnessed: list[tuple[int, Checkpoint]],
                         hashes_at: dict[int, str | None], last_id: int,
                         problems: _Problems) -> Checkpoint | None:
        """The log against what the witness signed; returns the latest witnessed checkpoint.

        The latest proves entries 1..size are exactly those it signed (the chain links them
        to its head hash); the earlier lines narrow down which entries a rewrite touched.
        """
        path = self.witness.path if self.witness is not None else None
        if not witnessed:
            return None  # every entry is unwitnessed: the result says so
        line, latest = max(witnessed, key=lambda item: (item[1].size, item[1].id))
        stamp = f"{path}:{line}, signed {format_time(latest.at)}"
        if latest.size > last_id:
            missing = (f"entry {latest.size} is" if latest.size == last_id + 1
                       else f"entries {last_id + 1}..{latest.size} are")
            problems.add(last_id + 1, f"{missing} missing: the witness ({stamp}) signed "
                                      f"entries 1..{latest.size} but the log ends at entry "
                                      f"{last_id}: they were deleted (truncation)")
            return latest
        matched = 0
        for number, cp in sorted(witnessed, key=lambda item: (item[1].size, item[0])):
            if cp.size <= matched:
                continue
            found = hashes_at.get(cp.size)
            if found is None:
                problems.add(cp.size, f"entry {cp.size}, witnessed at {path}:{number}, is "
                                      "missing from the log")
                break
            if found != cp.head_hash:
                problems.add(matched + 1, f"entries {matched + 1}..{cp.size} were rewritten: "
                                          f"the witness ({path}:{number}, signed "
                                          f"{format_time(cp.at)}) signed head "
                                          f"{cp.head_hash[:16]}... for entry {cp.size}, which "
                                          f"now hashes to {found[:16]}...")
                break
            matched = cp.size
        return latest

    def _check_witness_complete(self, lines: list[WitnessLine] | None,
                                checkpoints: list[Checkpoint], last_id: int,
                                problems: _Problems) -> None:
        """Every checkpoint row since the first witnessed one must be in the witness file.

        Rows are committed only after their line is fsynced, so a row missing from the file
        means the file was cut back to an older line (or edited). Rows older than the first
        line predate the witness (an upgraded install) and are not required.
        """
        path = self.witness.path if self.witness is not None else None
        present = {(line.checkpoint.id, line.checkpoint.signature)
                   for line in lines or () if line.checkpoint is not None}
        if not checkpoints:
            return
        if not present:
            latest = checkpoints[-1]
            problems.add(None, f"the witness {path} holds no checkpoint but the database "
                               f"holds {len(checkpoints)} (the latest signs entries "
                               f"1..{latest.size}): the witness file was deleted or emptied")
            return
        first = min(cp_id for cp_id, _ in present)
        absent = [cp for cp in checkpoints
                  if cp.id >= first and (cp.id, cp.signature) not in present]
        if absent:
            latest = absent[-1]
            ids = (f"checkpoint {absent[0].id}" if len(absent) == 1
                   else f"{len(absent)} checkpoints ({absent[0].id}..{latest.id})")
            problems.add(None, f"{ids} of the database, the latest signing entries "
                               f"1..{latest.size} at {format_time(latest.at)}, are not in "
                               f"the witness {path}: the witness file was cut back or edited")

    def _snapshot(self) -> Connection:
        """One consistent view for the whole verification, while the server keeps appending."""
        conn = store_db.reading(self.engine)
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return conn

    @staticmethod
    def _check_schema(conn: Connection) -> None:
        if not inspect(conn).has_table(tables.audit_head.name):
            raise AuditError("this database's audit log predates the hash chain: start "
                             "'steward server' once so it migrates the schema, then verify")

    @staticmethod
    def _batches(conn: Connection, size: int) -> Iterator[list[Any]]:
        # ``at`` without UTCDateTime's per-row conversion: format_time() takes either form.
        columns = [type_coerce(tables.audit.c.at, DateTime()).label("at") if name == "at"
                   else tables.audit.c[name] for name in _ENTRY_COLUMNS]
        after = None
        while True:
            query = select(*columns).order_by(tables.audit.c.id).limit(size)
            if after is not None:
                query = query.where(tables.audit.c.id > after)
            rows = list(conn.execute(query).all())
            if not rows:
                return
            yield rows
            after = rows[-1].id

    @staticmethod
    def _check_entry(row: Any, prev_id: int, prev_hash: str, legacy: int,
                     problems: _Problems) -> None:
        if row.id != prev_id + 1 and row.id > legacy:
            missing = (f"entry {prev_id + 1} is" if row.id == prev_id + 2
                       else f"entries {prev_id + 1}..{row.id - 1} are")
            problems.add(prev_id + 1, f"{missing} missing: deleted from the log (the ids "
                                      f"jump from {prev_id} to {row.id})")
        elif row.prev_hash != prev_hash:
            what = f"entry {prev_id}'s hash" if prev_id else "the start of the log"
            problems.add(row.id, f"entry {row.id} does not link to {what}: an entry before "
                                 "it was deleted or rewritten")
        if row.entry_hash is None:
            problems.add(row.id, f"entry {row.id} has no hash: it was not written by the log")
        elif entry_hash(_fields(row), row.prev_hash or "") != row.entry_hash:
            problems.add(row.id, f"entry {row.id} was edited: its content does not match its "
                                 "hash")

    @staticmethod
    def _check_head(head: Row[Any] | None, last_id: int, last_hash: str,
                    problems: _Problems) -> None:
        if head is None:
            problems.add(None, "the audit head row is missing")
        elif head.last_id > last_id:
            problems.add(last_id + 1, f"the log ends at entry {last_id} but its head records "
                                      f"entry {head.last_id}: entries {last_id + 1}.."
                                      f"{head.last_id} were deleted (truncation)")
        elif head.last_id < last_id:
            problems.add(head.last_id + 1, f"entries {head.last_id + 1}..{last_id} are beyond "
                                           "the head: they were not appended by the log")
        elif last_id and head.last_hash != last_hash:
            problems.add(last_id, f"the head's hash does not match entry {last_id}: the end "
                                  "of the log was rewritten")

    @staticmethod
    def _check_checkpoints(checkpoints: list[Checkpoint], hashes_at: dict[int, str | None],
                           last_id: int, public_key: Ed25519PublicKey | None,
                           problems: _Problems) -> None:
        expected_key = key_id(public_key) if public_key is not None else None
        prev_id, prev_signature, prev_size = 0, None, 0
        for cp in checkpoints:
            name = f"checkpoint {cp.id} (entries 1..{cp.size})"
            if cp.id != prev_id + 1:
                problems.add(None, f"checkpoints {prev_id + 1}..{cp.id - 1} are missing")
            elif cp.prev_signature != prev_signature:
                problems.add(None, f"{name} does not chain to checkpoint {prev_id}'s "
                                   "signature: a checkpoint was replaced or forged")
            if expected_key is None or public_key is None:
                problems.add(None, f"{name}: no public key to check its signature with "
                                   f"(audit.key or --public-key)")
            elif cp.key_id != expected_key:
                problems.add(None, f"{name} is signed by key {cp.key_id[:16]}..., not this "
                                   f"log's key {expected_key[:16]}...: forged")
            else:
                try:
                    public_key.verify(bytes.fromhex(cp.signature), cp.message())
                except (InvalidSignature, ValueError):
                    problems.add(None, f"{name}: the signature is invalid (the checkpoint "
                                       "was forged or altered)")
            if cp.size < prev_size:
                problems.add(None, f"{name} is smaller than checkpoint {prev_id} "
                                   f"({prev_size} entries)")
            if cp.size > last_id:
                problems.add(last_id + 1, f"{name} is beyond the last entry {last_id}: "
                                          f"entries {last_id + 1}..{cp.size} were deleted "
                                          "(truncation)")
            elif cp.size not in hashes_at:
                problems.add(cp.size, f"entry {cp.size}, the head of {name}, is missing")
            elif hashes_at[cp.size] != cp.head_hash:
                first = min(prev_size, cp.size - 1) + 1
                problems.add(first, f"entries {first}..{cp.size} were rewritten: {name} "
                                    f"signed head {cp.head_hash[:16]}... but entry {cp.size} "
                                    f"now hashes to {(hashes_at[cp.size] or '')[:16]}...")
            prev_id, prev_signature, prev_size = cp.id, cp.signature, max(prev_size, cp.size)


class _RowView:
    """Attribute access over a dict, so a just-written row renders like a fetched one."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


def _as_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    return {"id": checkpoint.id, "size": checkpoint.size, "head_hash": checkpoint.head_hash,
            "at": checkpoint.at, "prev_signature": checkpoint.prev_signature,
            "key_id": checkpoint.key_id, "signature": checkpoint.signature}


class _CheckpointWriter:
    """The background thread that signs and witnesses the head after appends.

    Appends only set :attr:`wake`; the thread signs when the last checkpoint is at least
    ``interval`` old, so a burst costs one checkpoint per interval and an append is
    unwitnessed for at most about that long. Failures (database or witness unavailable)
    are logged and retried after the interval: the entries stay in the log meanwhile.
    """

    def __init__(self, log_: AuditLog, interval: float) -> None:
        self.log = log_
        self.interval = interval
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steward-audit-checkpoints",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            if self._stopping.is_set():
                return
            self.wake.clear()
            try:
                due = self.log.checkpoint_if_due(self.interval)
            except (AuditError, SQLAlchemyError, OSError) as exc:
                log.warning("audit checkpoint failed (retrying in %.1fs): %s", self.interval,
                            exc)
                due = self.interval
            if isinstance(due, float):
                self.wake.set()
                self._stopping.wait(due)
