"""Commands into the store: facts, catalogs and reports from nodes, and deactivation.

Each command is one transaction, so a crash leaves nothing half-written. Facts, catalogs
and deactivations lock the node's row first (an upsert that takes the row lock on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so concurrent commands for one node apply in
order. Reports, the hot path, insert their rows and then update the node in one
conditional upsert. As in PuppetDB, a command older than what the store already holds for
that node is ignored (a report is still stored, but does not become the latest), and a
command newer than a node's deactivation or expiry brings it back.

Row building is kept apart from writing (``fact_rows``, ``catalog_rows``, ``report_rows``)
so the benchmark's bulk loader produces exactly the rows ingestion would.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    Table,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from steward.catalog.canonical import canonical_json
from steward.catalog.model import Catalog as CatalogDocument
from steward.catalog.model import parse_ref
from steward.errors import StewardError
from steward.query.entities import path_key, puppet_type
from steward.store.db import write_transaction

PRODUCER = "steward"
#: Namespace of the catalog UUIDs derived from catalog hashes, so a report's catalog_uuid
#: (from its catalog_hash) equals the uuid of the catalog it applied.
CATALOG_UUID_NAMESPACE = uuid.UUID("5b0e2a4c-6f47-4a53-9d8e-6c1f1a3e2b71")


class StoreError(StewardError):
    """A document given to the store is malformed; the message names the field."""


Tables = Mapping[str, Table]


def utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise StoreError(f"{what} must be a datetime, not {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return utc(value, what)
    if not isinstance(value, str):
        raise StoreError(f"{what} must be an ISO 8601 timestamp string, not {value!r}")
    try:
        return utc(datetime.fromisoformat(value), what)
    except ValueError:
        raise StoreError(f"{what}: {value!r} is not an ISO 8601 timestamp") from None


def catalog_uuid(catalog_hash: str) -> str:
    return str(uuid.uuid5(CATALOG_UUID_NAMESPACE, catalog_hash))


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# -- facts --------------------------------------------------------------------------------


def value_type(value: Any) -> str:
    """PuppetDB's fact value types."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    raise StoreError(f"fact value {value!r} is not JSON")


def typed_value(value: Any) -> dict[str, Any]:
    """The value columns: the JSON value and its string/number/boolean readings."""
    kind = value_type(value)
    return {
        "value": value,
        "value_type": kind,
        "value_string": value if kind == "string" else None,
        "value_number": float(value) if kind in ("integer", "float") else None,
        "value_boolean": value if kind == "boolean" else None,
    }


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) below ``path``, containers included, depth first in key order."""
    yield path, value
    if isinstance(value, dict):
        for key in sorted(value):
            if not isinstance(key, str):
                raise StoreError(f"fact {'.'.join(map(str, path))}: key {key!r} is not a "
                                 "string")
            yield from _walk(value[key], (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


@dataclass
class FactRows:
    facts: list[dict[str, Any]]
    contents: list[dict[str, Any]]
    paths: list[dict[str, Any]]


def fact_rows(certname_id: int, facts: Mapping[str, Any]) -> FactRows:
    """Rows for ``facts`` (top level), ``fact_contents`` (leaves) and ``fact_paths``."""
    rows = FactRows([], [], [])
    for name in sorted(facts):
        value = facts[name]
        rows.facts.append({"certname_id": certname_id, "name": name, **typed_value(value)})
        for path, item in _walk(value, (name,)):
            kind = value_type(item)
            key = path_key(path)
            rows.paths.append({"path_key": key, "type": kind, "path": list(path),
                               "name": name, "depth": len(path) - 1})
            if kind not in ("array", "map"):
                rows.contents.append({"certname_id": certname_id, "path_key": key,
                                      "path": list(path), "depth": len(path) - 1,
                                      "name": name, **typed_value(item)})
    return rows


def facts_hash(environment: str, facts: Mapping[str, Any]) -> str:
    return _sha1(canonical_json({"environment": environment, "facts": facts}))


# -- catalogs ---------------------------------------------------------------------------------


def class_title(kind: str, name: str) -> str:
    """A class title: (``role``, ``web``) -> ``Role::Web``."""
    return puppet_type(f"{kind}::{name}")


def _resource_row(certname_id: int, type_name: str, title: str, parameters: Any,
                  tags: list[str], file: str | None, line: int | None) -> dict[str, Any]:
    digest = _sha1(canonical_json([type_name, title, parameters, tags, False, file, line]))
    return {"certname_id": certname_id, "type": type_name, "title": title, "resource": digest,
            "exported": False, "file": file, "line": line, "tags": tags,
            "parameters": parameters}


@dataclass
class CatalogRows:
    catalog: dict[str, Any]
    resources: list[dict[str, Any]]
    edges: list[dict[str, Any]]


def catalog_rows(certname_id: int, document: Mapping[str, Any],
                 producer_timestamp: datetime) -> CatalogRows:
    """A Steward catalog as PuppetDB rows: types capitalised, classification as ``Class``."""
    parsed = CatalogDocument.from_json(dict(document), source="catalog")
    digest = parsed.hash or _sha1(canonical_json(parsed.body()))
    classification = parsed.classification or {}
    resources: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for kind in ("role", "profile"):
        names = classification.get(f"{kind}s") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StoreError(f"catalog for {parsed.node}: classification.{kind}s must be a "
                             "list of names")
        for name in names:
            title = class_title(kind, name)
            if ("Class", title) not in seen:
                seen.add(("Class", title))
                resources.append(_resource_row(certname_id, "Class", title, {},
                                               ["class", kind, title.lower()], None, None))
    for resource in parsed.resources:
        type_name = puppet_type(resource.type)
        if (type_name, resource.title) in seen:
            continue
        seen.add((type_name, resource.title))
        resources.append(_resource_row(certname_id, type_name, resource.title,
                                       resource.parameters, list(resource.tags),
                                       resource.file, resource.line))
    edges = []
    for edge in parsed.edges:
        source_type, source_title = parse_ref(edge.source)
        target_type, target_title = parse_ref(edge.target)
        edges.append({"certname_id": certname_id, "source_type": puppet_type(source_type),
                      "source_title": source_title, "target_type": puppet_type(target_type),
                      "target_title": target_title, "relationship": edge.relationship})
    catalog = {
        "certname_id": certname_id,
        "hash": digest,
        "catalog_uuid": catalog_uuid(digest),
        "environment": parsed.environment,
        "code_id": parsed.code_id,
        "producer_timestamp": producer_timestamp,
        "classification": classification,
        "inputs": parsed.inputs or {},
    }
    return CatalogRows(catalog, resources, edges)


# -- reports ------------------------------------------------------------------------------------

_REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "node": str,
    "environment": str,
    "transaction_uuid": str,
    "start_time": str,
    "end_time": str,
    "status": str,
    "noop": bool,
    "noop_pending": bool,
    "corrective_change": bool,
    "resources": list,
    "metrics": dict,
    "logs": list,
}


@dataclass
class ReportRows:
    report: dict[str, Any]
    #: The ``report_resources`` row: the resource list, compressed.
    resources: dict[str, Any]
    events: list[dict[str, Any]]


def _containing_class(tags: Any) -> str | None:
    for tag in tags or ():
        if isinstance(tag, str) and tag.startswith("profile:"):
            return class_title("profile", tag.removeprefix("profile:"))
    return None


def report_rows(report: Mapping[str, Any], receive_time: datetime) -> ReportRows:
    """A Steward report as rows of ``reports`` (hash computed), ``report_resources`` and
    ``events``."""
    if not isinstance(report, Mapping):
        raise StoreError("a report must be a JSON object")
    for name, kind in _REPORT_FIELDS.items():
        if not isinstance(report.get(name), kind):
            raise StoreError(f"report field {name!r} is missing or not a {_kind_name(kind)}")
    certname = report["node"]
    if not certname:
        raise StoreError("report field 'node' is empty")
    start = parse_time(report["start_time"], "report field 'start_time'")
    end = parse_time(report["end_time"], "report field 'end_time'")
    resources = report["resources"]
    # The bulk is serialised once, for the stored blob and the hash. Its key order is the
    # document's own (sorting 300 resources' keys would double the cost), so the same
    # report always hashes the same; idempotency does not rely on the hash anyway.
    resources_json = json.dumps(resources, separators=(",", ":"), ensure_ascii=False)
    head = {k: v for k, v in report.items() if k != "resources"}
    digest = _sha1(canonical_json(head) + "\n" + resources_json)
    catalog_hash = report.get("catalog_hash")
    row = {
        "hash": digest,
        "transaction_uuid": report["transaction_uuid"],
        "certname": certname,
        "environment": report["environment"],
        "status": report["status"],
        "noop": report["noop"],
        "noop_pending": report["noop_pending"],
        "corrective_change": report["corrective_change"],
        "puppet_version": report.get("steward_version"),
        "report_format": int(report.get("report_format") or 1),
        "configuration_version": report.get("code_id"),
        "code_id": report.get("code_id"),
        "catalog_uuid": catalog_uuid(catalog_hash) if isinstance(catalog_hash, str) else None,
        "catalog_hash": catalog_hash,
        "type": "agent",
        "producer": PRODUCER,
        "start_time": start,
        "end_time": end,
        "producer_timestamp": end,
        "receive_time": receive_time,
        "exit_code": report.get("exit_code"),
        "metrics": report["metrics"],
        "logs": report["logs"],
    }
    blob = {"report": digest, "resources": zlib.compress(resources_json.encode("utf-8"), 1)}
    events: list[dict[str, Any]] = []
    for index, resource in enumerate(resources):
        if type(resource) is not dict and not isinstance(resource, Mapping):
            raise StoreError(f"report resources[{index}] must be an object")
        resource_events = resource.get("events")
        skipped = not resource_events and resource.get("status") == "skipped"
        if not resource_events and not skipped:
            continue
        if not isinstance(resource.get("resource_type"), str) or not isinstance(
                resource.get("title"), str):
            raise StoreError(f"report resources[{index}] needs string 'resource_type' and "
                             "'title'")
        common = {
            "report": digest,
            "certname": certname,
            "timestamp": end,
            "resource_type": puppet_type(resource["resource_type"]),
            "resource_title": resource["title"],
            "file": resource.get("file"),
            "line": resource.get("line"),
            "containing_class": _containing_class(resource.get("tags")),
        }
        if skipped:
            # PuppetDB records a skipped resource as an event of its own.
            events.append({**common, "status": "skipped", "property": None,
                           "old_value": None, "new_value": None,
                           "message": resource.get("message"), "corrective_change": False})
            continue
        if not isinstance(resource_events, list):
            raise StoreError(f"report resources[{index}].events must be a list")
        for event in resource_events:
            if not isinstance(event, dict) or not isinstance(event.get("status"), str):
                raise StoreError(f"report resources[{index}]: each event needs a 'status'")
            events.append({
                **common,
                "status": event["status"],
                "property": event.get("property"),
                "old_value": event.get("old_value"),
                "new_value": event.get("new_value"),
                "message": event.get("message"),
                "corrective_change": bool(event.get("corrective_change")),
            })
    return ReportRows(row, blob, events)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", bool: "boolean", list: "list", dict: "object"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


# -- writing --------------------------------------------------------------------------------------


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
def _report_node_statement(dialect: str, nodes: Table) -> Any:
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


def _update_node(conn: Connection, tables: Tables, node_id: int,
                 changes: Mapping[str, Any]) -> None:
    nodes = tables["nodes"]
    conn.execute(update(nodes).where(nodes.c.id == bindparam("node_id")),
                 {"node_id": node_id, **changes})


def _revival(node: NodeRow, timestamp: datetime) -> dict[str, Any]:
    """Clear deactivation/expiry older than new data from the node."""
    changes: dict[str, Any] = {}
    if node.deactivated is not None and timestamp > node.deactivated:
        changes["deactivated"] = None
    if node.expired is not None and timestamp > node.expired:
        changes["expired"] = None
    return changes


#: Per-event keys sent to PostgreSQL's one-statement report insert, as one JSON array.
_EVENT_KEYS = ("status", "resource_type", "resource_title", "property", "old_value",
               "new_value", "message", "file", "line", "containing_class",
               "corrective_change")
_EVENT_TYPES: dict[str, Any] = {"line": Integer(), "corrective_change": Boolean()}


def _event_array(events: list[dict[str, Any]]) -> str:
    """The events as a JSON array of arrays in ``_EVENT_KEYS`` order (the report's own
    fields, common to every event, are taken from the inserted report row)."""
    return json.dumps([[event[key] for key in _EVENT_KEYS] for event in events],
                      separators=(",", ":"), ensure_ascii=False)


def _pg_report_statement(tables: Tables) -> Any:
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


class Ingestor:
    """The write side of the store, over one engine's tables."""

    def __init__(self, tables: Tables, clock: Callable[[], datetime]) -> None:
        self.tables = tables
        self.clock = clock
        #: Environments known to be stored (committed), so most commands skip the insert.
        self._environments: set[str] = set()
        self._local = threading.local()
        #: The PostgreSQL one-statement report insert, built on first use.
        self._pg_report: Any = None

    @contextmanager
    def transaction(self, engine: Engine) -> Iterator[Connection]:
        """A write transaction; environments it adds are remembered once it commits."""
        added: list[str] = []
        self._local.added = added
        try:
            with write_transaction(engine) as conn:
                yield conn
        finally:
            self._local.added = None
        self._environments.update(added)

    def _environment(self, conn: Connection, name: str) -> None:
        added: list[str] | None = getattr(self._local, "added", None)
        if name in self._environments or (added is not None and name in added):
            return
        table = self.tables["environments"]
        conn.execute(insert_for(conn, table).values(name=name).on_conflict_do_nothing())
        if added is not None:
            added.append(name)

    def replace_facts(self, conn: Connection, certname: str, environment: str,
                      facts: Mapping[str, Any], producer_timestamp: datetime) -> None:
        if not isinstance(environment, str) or not environment:
            raise StoreError(f"facts for {certname}: environment must be a non-empty string")
        if not isinstance(facts, Mapping):
            raise StoreError(f"facts for {certname} must be a JSON object")
        produced = utc(producer_timestamp, f"facts for {certname}: producer_timestamp")
        digest = facts_hash(environment, facts)
        node = lock_node(conn, self.tables, certname)
        if node.facts_timestamp is not None and produced < node.facts_timestamp:
            return
        t = self.tables
        now = self.clock()
        trusted = facts.get("trusted")
        factset = {
            "certname_id": node.id,
            "environment": environment,
            "timestamp": now,
            "producer_timestamp": produced,
            "hash": digest,
            "facts": dict(facts),
            "trusted": trusted if isinstance(trusted, dict) else {"certname": certname},
        }
        current = conn.execute(
            select(t["factsets"].c.hash).where(t["factsets"].c.certname_id == node.id)
        ).scalar_one_or_none()
        if current == digest:
            conn.execute(update(t["factsets"]).where(t["factsets"].c.certname_id == node.id)
                         .values(timestamp=now, producer_timestamp=produced))
        else:
            rows = fact_rows(node.id, facts)
            for name in ("facts", "fact_contents", "factsets"):
                conn.execute(delete(t[name]).where(t[name].c.certname_id == node.id))
            conn.execute(t["factsets"].insert(), [factset])
            if rows.facts:
                conn.execute(t["facts"].insert(), rows.facts)
            if rows.contents:
                conn.execute(t["fact_contents"].insert(), rows.contents)
            if rows.paths:
                unique = {(p["path_key"], p["type"]): p for p in rows.paths}
                conn.execute(insert_for(conn, t["fact_paths"]).on_conflict_do_nothing(),
                             [unique[k] for k in sorted(unique)])
        self._environment(conn, environment)
        _update_node(conn, t, node.id, {"facts_timestamp": produced,
                                        "facts_environment": environment,
                                        **_revival(node, produced)})

    def replace_catalog(self, conn: Connection, document: Mapping[str, Any],
                        producer_timestamp: datetime) -> None:
        if not isinstance(document, Mapping):
            raise StoreError("a catalog must be a JSON object")
        certname = document.get("node")
        if not isinstance(certname, str):
            raise StoreError("catalog field 'node' must be a string")
        produced = utc(producer_timestamp, f"catalog for {certname}: producer_timestamp")
        node = lock_node(conn, self.tables, certname)
        if node.catalog_timestamp is not None and produced < node.catalog_timestamp:
            return
        t = self.tables
        rows = catalog_rows(node.id, document, produced)
        catalogs = t["catalogs"]
        current = conn.execute(
            select(catalogs.c.hash).where(catalogs.c.certname_id == node.id)
        ).scalar_one_or_none()
        if current == rows.catalog["hash"]:
            conn.execute(update(catalogs).where(catalogs.c.certname_id == node.id)
                         .values(producer_timestamp=produced))
        else:
            for name in ("resources", "edges", "catalogs"):
                conn.execute(delete(t[name]).where(t[name].c.certname_id == node.id))
            conn.execute(catalogs.insert(), [rows.catalog])
            if rows.resources:
                conn.execute(t["resources"].insert(), rows.resources)
            if rows.edges:
                conn.execute(t["edges"].insert(), rows.edges)
        environment = rows.catalog["environment"]
        self._environment(conn, environment)
        _update_node(conn, t, node.id, {"catalog_timestamp": produced,
                                        "catalog_environment": environment,
                                        **_revival(node, produced)})

    def prepare_report(self, report: Mapping[str, Any]) -> ReportRows:
        """The rows of a report, built before any transaction opens (the costly part:
        serialising and compressing the resource list), so writers hold locks briefly."""
        return report_rows(report, self.clock())

    def store_report(self, conn: Connection, rows: ReportRows) -> str:
        t = self.tables
        reports = t["reports"]
        row = rows.report
        # Statements are built with parameters, not values, so SQLAlchemy compiles each
        # once per process: this is the hot path.
        inserted = conn.execute(
            insert_for(conn, reports)
            .on_conflict_do_nothing(index_elements=["transaction_uuid"])
            .returning(reports.c.id),
            row,
        ).scalar_one_or_none()
        if inserted is None:  # this transaction_uuid is stored already
            return str(conn.execute(
                select(reports.c.hash).where(reports.c.transaction_uuid
                                             == bindparam("uuid")),
                {"uuid": row["transaction_uuid"]},
            ).scalar_one())
        conn.execute(t["report_resources"].insert(), rows.resources)
        if rows.events:
            conn.execute(t["events"].insert(), rows.events)
        self._environment(conn, row["environment"])
        conn.execute(_report_node_statement(conn.dialect.name, t["nodes"]), {
            "certname": row["certname"],
            "report_timestamp": row["producer_timestamp"],
            "report_environment": row["environment"],
            "latest_report_hash": row["hash"],
            "latest_report_status": row["status"],
            "latest_report_noop": row["noop"],
            "latest_report_noop_pending": row["noop_pending"],
            "latest_report_corrective_change": row["corrective_change"],
        })
        return str(row["hash"])

    def store_report_statement(self, conn: Connection, rows: ReportRows) -> str:
        """PostgreSQL: store a report with one statement, committed on its own.

        The report, its resource blob, its events, its environment and the node's latest
        report fields are one INSERT with data-modifying CTEs (see
        :func:`_pg_report_statement`): one round trip instead of seven, and one statement is
        one transaction, so the report is still stored whole or not at all. ``conn`` must be
        in autocommit mode; the commit waits for the WAL flush unless the session turned
        ``synchronous_commit`` off (``durable_reports=False``).
        """
        row = rows.report
        statement = self._pg_report
        if statement is None:
            statement = self._pg_report = _pg_report_statement(self.tables)
        stored = conn.execute(statement, {
            **row, "resources_blob": rows.resources["resources"],
            "events_json": _event_array(rows.events)}).scalar_one_or_none()
        if stored is None:  # this transaction_uuid is stored already
            reports = self.tables["reports"]
            stored = conn.execute(
                select(reports.c.hash).where(reports.c.transaction_uuid == bindparam("uuid")),
                {"uuid": row["transaction_uuid"]},
            ).scalar_one()
        return str(stored)

    def deactivate_node(self, conn: Connection, certname: str, when: datetime | None) -> None:
        moment = utc(when, f"deactivation of {certname}") if when is not None else self.clock()
        node = lock_node(conn, self.tables, certname)
        if node.deactivated is None or moment > node.deactivated:
            nodes = self.tables["nodes"]
            conn.execute(update(nodes).where(nodes.c.id == node.id).values(deactivated=moment))

