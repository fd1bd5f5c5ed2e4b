"""Signed checkpoints of the audit log: the Ed25519 key, the checkpoint rows it signs, and
the background writer that signs the head after appends.

A checkpoint signs (size, head hash, time, previous checkpoint's signature), like
CloudTrail's digest files and RFC 6962's signed tree heads; the key lives in the data
directory, never in the database (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Row
from sqlalchemy.exc import SQLAlchemyError

from steward.access.audit_entries import AuditError, format_time
from steward.catalog.canonical import canonical_json

#: The audit log's logger, which its operators watch (docs/audit.md).
log = logging.getLogger("steward.access.audit")

CHECKPOINT_DOMAIN = b"steward-audit-checkpoint-v1\n"
KEY_FILE = "audit.key"
PUBLIC_KEY_FILE = "audit.pub"
#: Seconds between automatic checkpoints at most (so also the longest unwitnessed window).
DEFAULT_CHECKPOINT_INTERVAL = 1.0


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


def checkpoint_values(checkpoint: Checkpoint) -> dict[str, Any]:
    """Every column of a checkpoint row, the signature included."""
    return {"id": checkpoint.id, "size": checkpoint.size, "head_hash": checkpoint.head_hash,
            "at": checkpoint.at, "prev_signature": checkpoint.prev_signature,
            "key_id": checkpoint.key_id, "signature": checkpoint.signature}


# -- the writer ------------------------------------------------------------------------------


class Checkpointer(Protocol):
    """What the writer signs through: the audit log (see ``AuditLog.checkpoint_if_due``)."""

    def checkpoint_if_due(self, interval: float) -> Checkpoint | float | None: ...


class CheckpointWriter:
    """The background thread that signs and witnesses the head after appends.

    Appends only set :attr:`wake`; the thread signs when the last checkpoint is at least
    ``interval`` old, so a burst costs one checkpoint per interval and an append is
    unwitnessed for at most about that long. Failures (database or witness unavailable)
    are logged and retried after the interval: the entries stay in the log meanwhile.
    """

    def __init__(self, log_: Checkpointer, interval: float) -> None:
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
