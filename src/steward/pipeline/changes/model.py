"""Change records in the server's database: the tables and their immutable views.

``steward_changes`` holds one row per change (its commits live in git: ``base``/``head``
and the branch ``changes/<id>``); ``steward_change_history`` is the append-only list of what
happened to it. Ids (``chg-<n>``) come from a one-row counter that is incremented by an
``UPDATE`` as the first statement of the recording transaction: PostgreSQL serialises it by
the row lock and SQLite by its write lock, so concurrent proposals never share a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from steward.access.principal import ActorKind, Principal
from steward.clock import iso
from steward.pipeline.changes.states import ChangeKind, ChangeState, transition_targets
from steward.pipeline.tables import metadata
from steward.store.db import UTCDateTime

#: Version of the JSON documents :meth:`Change.to_json` and :meth:`HistoryEntry.to_json` return.
FORMAT: Final = 1

changes = Table(
    "steward_changes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("title", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("proposer_name", String(255), nullable=False),
    # human | agent | system
    Column("proposer_kind", String(16), nullable=False),
    Column("environment", String(255), nullable=False),
    Column("base", String(64), nullable=False),
    Column("head", String(64), nullable=False),
    Column("branch", String(255), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("impact_digest", String(80), nullable=True),
    # normal | rollback | promotion
    Column("kind", String(16), nullable=False),
    Column("parent_id", String(32), ForeignKey("steward_changes.id"), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_steward_changes_state", "state"),
    Index("ix_steward_changes_environment", "environment"),
    Index("ix_steward_changes_parent", "parent_id"),
)

change_history = Table(
    "steward_change_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", String(32), ForeignKey("steward_changes.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("detail", JSON, nullable=True),
    Index("ix_steward_change_history_change", "change_id", "id"),
)

change_counter = Table(
    "steward_change_counter",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Change:
    """One change as stored; a snapshot, so it never changes under its reader."""

    id: str
    title: str
    message: str
    proposer: Principal
    environment: str
    base: str
    head: str
    branch: str
    state: ChangeState
    impact_digest: str | None
    kind: ChangeKind
    parent: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def number(self) -> int:
        return int(self.id.removeprefix("chg-"))

    def to_json(self) -> dict[str, Any]:
        """The versioned document the REST API, the CLI and MCP return (keys sorted)."""
        document: dict[str, Any] = {
            "base": self.base,
            "branch": self.branch,
            "created_at": iso(self.created_at),
            "environment": self.environment,
            "format": FORMAT,
            "head": self.head,
            "id": self.id,
            "impact_digest": self.impact_digest,
            "kind": self.kind,
            "message": self.message,
            "next_states": list(transition_targets(self.state)),
            "parent": self.parent,
            "proposer": {"kind": self.proposer.kind, "name": self.proposer.name},
            "state": self.state,
            "title": self.title,
            "updated_at": iso(self.updated_at),
        }
        return document

    @classmethod
    def from_row(cls, row: Any) -> Change:
        return cls(
            id=row.id, title=row.title, message=row.message,
            proposer=Principal(row.proposer_name, cast(ActorKind, row.proposer_kind)),
            environment=row.environment, base=row.base, head=row.head, branch=row.branch,
            state=cast(ChangeState, row.state), impact_digest=row.impact_digest,
            kind=cast(ChangeKind, row.kind), parent=row.parent_id,
            created_at=row.created_at, updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One thing that happened to a change: who, when, what, and the state it left."""

    change_id: str
    at: datetime
    actor: str
    action: str
    from_state: ChangeState | None
    to_state: ChangeState
    detail: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "actor": self.actor,
            "at": iso(self.at),
            "change": self.change_id,
            "detail": self.detail,
            "from_state": self.from_state,
            "to_state": self.to_state,
        }

    @classmethod
    def from_row(cls, row: Any) -> HistoryEntry:
        return cls(
            change_id=row.change_id, at=row.at, actor=row.actor, action=row.action,
            from_state=cast("ChangeState | None", row.from_state),
            to_state=cast(ChangeState, row.to_state),
            detail=row.detail,
        )
