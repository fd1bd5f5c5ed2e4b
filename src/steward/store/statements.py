"""The SQL of ingestion: the dialect's INSERT, the node row lock, the node upsert that
follows a report, and PostgreSQL's one-statement report insert.

Statements are built with parameters, not values, and cached, so SQLAlchemy compiles each
once per process: reports are the hot path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    LargeBinary,
    Table,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from steward.store.errors import StoreError

Tables = Mapping[str, Table]


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@dataclass
class NodeRow:
    id: int
    deactivated: datetime | None
    expired: datetime | None
    facts_timestamp: datetime | None
    catalog_timestamp: datetime | None
    report_timestamp: datetime | None


def lock_node(conn: Connection, tables: Tables, certname: str) -> NodeRow:
    """The node's row, created if new, locked until the transaction ends.

    One statement: an upsert whose no-op update takes the row lock (PostgreSQL) and
    returns the row either way.
    """
    if not isinstance(certname, str) or not certname:
        raise StoreError(f"certname must be a non-empty string, not {certname!r}")
    return NodeRow(*conn.execute(_lock_statement(conn.dialect.name, tables["nodes"]),
                                 {"certname": certname}).one())


@functools.cache
def _lock_statement(dialect: str, nodes: Table) -> Any:
    statement = postgresql.insert(nodes) if dialect == "postgresql" else sqlite.insert(nodes)
    return statement.on_conflict_do_update(
        index_elements=[nodes.c.certname], set_={"certname": statement.excluded.certname}
    ).returning(nodes.c.id, nodes.c.deactivated, nodes.c.expired, nodes.c.facts_timestamp,
                nodes.c.catalog_timestamp, nodes.c.report_timestamp)


@functools.cache
def report_node_statement(dialect: str, nodes: Table) -> Any:
    """Create or update the node of a report in one statement (the hot path): its latest
    report fields change only if the report is at least as new as the one recorded, and
    a deactivation or expiry older than the report is cleared. SET expressions see the
    row as it was, so every CASE compares against the old timestamps."""
    statement = postgresql.insert(nodes) if dialect == "postgresql" else sqlite.insert(nodes)
    return _node_upsert(statement, nodes)


#: The node's fields that follow its latest report, in the order of ReportRows' sources.
_LATEST_REPORT = ("report_timestamp", "report_environment", "latest_report_hash",
                  "latest_report_status", "latest_report_noop", "latest_report_noop_pending",
                  "latest_report_corrective_change")


def _node_upsert(statement: Any, nodes: Table) -> Any:
    new = statement.excluded
    newer = or_(nodes.c.report_timestamp.is_(None),
                nodes.c.report_timestamp <= new.report_timestamp)
    changes: dict[str, Any] = {
        name: case((newer, new[name]), else_=nodes.c[name]) for name in _LATEST_REPORT
    }
    for name in ("deactivated", "expired"):
        changes[name] = case((nodes.c[name] < new.report_timestamp, None), else_=nodes.c[name])
    return statement.on_conflict_do_update(index_elements=[nodes.c.certname], set_=changes)



#: Per-event keys sent to PostgreSQL's one-statement report insert, as one JSON array.
_EVENT_KEYS = ("status", "resource_type", "resource_title", "property", "old_value",
               "new_value", "message", "file", "line", "containing_class",
               "corrective_change")
_EVENT_TYPES: dict[str, Any] = {"line": Integer(), "corrective_change": Boolean()}


def event_array(events: list[dict[str, Any]]) -> str:
    """The events as a JSON array of arrays in ``_EVENT_KEYS`` order (the report's own
    fields, common to every event, are taken from the inserted report row)."""
    return json.dumps([[event[key] for key in _EVENT_KEYS] for event in events],
                      separators=(",", ":"), ensure_ascii=False)


def pg_report_statement(tables: Tables) -> Any:
    """``WITH inserted AS (INSERT INTO reports ... ON CONFLICT DO NOTHING RETURNING ...)``,
    then the blob, the events, the environment and the node upsert, each an INSERT ...
    SELECT FROM inserted: when the transaction_uuid is already stored, ``inserted`` is
    empty and nothing else is written either. The statement returns the new report's hash.

    Every sub-statement sees the snapshot taken before the statement, which is fine: none
    reads what another writes (foreign keys are checked at the end of the statement).
    """
    reports, nodes = tables["reports"], tables["nodes"]
    columns = [c.name for c in reports.columns if c.name != "id"]
    inserted = (
        postgresql.insert(reports)
        .values({name: bindparam(name, type_=reports.c[name].type) for name in columns})
        # Any unique index as arbiter, not transaction_uuid's alone: two writers racing
        # with one report would otherwise collide on the hash's index, which is an error.
        # (The hash covers the transaction_uuid, so the same hash means the same uuid.)
        .on_conflict_do_nothing()
        .returning(*(reports.c[name] for name in (
            "hash", "certname", "environment", "status", "noop", "noop_pending",
            "corrective_change", "producer_timestamp")))
        .cte("inserted")
    )
    blob = postgresql.insert(tables["report_resources"]).from_select(
        ["report", "resources"],
        select(inserted.c.hash, bindparam("resources_blob", type_=LargeBinary())),
    ).cte("blob")
    elements = func.jsonb_array_elements(
        cast(bindparam("events_json", type_=Text()), postgresql.JSONB())
    ).table_valued("value", with_ordinality="position").render_derived(name="event")
    def element(index: int, key: str) -> Any:
        item = elements.c.value.op("->")(literal_column(str(index)))
        if key in ("old_value", "new_value"):
            return func.coalesce(item, literal_column("'null'::jsonb"))
        text_value = elements.c.value.op("->>")(literal_column(str(index)))
        kind = _EVENT_TYPES.get(key)
        return cast(text_value, kind) if kind is not None else text_value
    event_columns = ["report", "certname", "timestamp", *_EVENT_KEYS]
    events = postgresql.insert(tables["events"]).from_select(
        event_columns,
        select(inserted.c.hash, inserted.c.certname, inserted.c.producer_timestamp,
               *(element(i, key) for i, key in enumerate(_EVENT_KEYS)))
        .select_from(inserted.join(elements, true()))
        .order_by(elements.c.position),
    ).cte("events")
    environment = postgresql.insert(tables["environments"]).from_select(
        ["name"], select(inserted.c.environment)
    ).on_conflict_do_nothing().cte("environment")
    node = _node_upsert(postgresql.insert(nodes).from_select(
        ["certname", *_LATEST_REPORT],
        select(inserted.c.certname, inserted.c.producer_timestamp, inserted.c.environment,
               inserted.c.hash, inserted.c.status, inserted.c.noop, inserted.c.noop_pending,
               inserted.c.corrective_change),
    ), nodes).cte("node")
    return select(inserted.c.hash).add_cte(blob, events, environment, node)

