"""What one audit entry is: its fields, their limits, its canonical hash, and the
redacted, canonical form its parameters are stored (and hashed) in.

Everything here is frozen by the hash format (docs/audit.md): migrations chain old rows with
:func:`entry_hash`, so it lives apart from the log that appends and the checks that verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from steward.catalog.canonical import canonical_json, encode_string
from steward.catalog.redaction import redact as redact_value
from steward.errors import StewardError

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
ENTRY_DOMAIN = b"steward-audit-entry-v1\n"
OUTCOMES = ("allowed", "denied", "succeeded", "failed")
#: Longest stored string inside parameters, and the longest parameters document.
MAX_PARAMETER_STRING = 2000
MAX_PARAMETERS = 65536
MAX_REASON = 2000
#: The id of the one row of ``steward_audit_head``.
HEAD_ID = 1
#: Column sizes of steward_audit (values are cut to fit before they are hashed).
COLUMN_LIMITS = {"actor": 255, "actor_kind": 16, "action": 255, "target": 512, "remote": 255,
                 "request_id": 64}
#: The stored columns of an entry, in the order verification reads them.
ENTRY_COLUMNS = ("id", "at", "actor", "actor_kind", "action", "target", "parameters",
                 "outcome", "reason", "remote", "request_id", "prev_hash", "entry_hash")


class AuditError(StewardError):
    """The audit log or its signing key cannot be used as asked."""


# -- redaction -----------------------------------------------------------------------------
# The rule, the marker and the walk are steward.catalog.redaction's (one for all of Steward);
# what is audit-specific is the cut of long strings.


def redact(value: Any) -> Any:
    """A JSON-safe copy of ``value`` with credentials replaced by the redaction marker, and
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


# -- the hash ---------------------------------------------------------------------------------


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
    return hash_values(fields.id, format_time(fields.at), fields.actor, fields.actor_kind,
                       fields.action, fields.target, fields.parameters, fields.outcome,
                       fields.reason, fields.remote, fields.request_id, prev_hash)


def hash_values(id_: int, at: str, actor: str, actor_kind: str, action: str,
                target: str | None, parameters: str | None, outcome: str, reason: str | None,
                remote: str | None, request_id: str | None, prev_hash: str) -> str:
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


def fields_of(row: Any) -> EntryFields:
    """The hashed fields of a stored row."""
    return EntryFields(id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind,
                       action=row.action, target=row.target, parameters=row.parameters,
                       outcome=row.outcome, reason=row.reason, remote=row.remote,
                       request_id=row.request_id)


def cut_to_column(value: str | None, name: str) -> str | None:
    """``value`` cut to its column's size (see :data:`COLUMN_LIMITS`)."""
    return None if value is None else value[:COLUMN_LIMITS[name]]


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
