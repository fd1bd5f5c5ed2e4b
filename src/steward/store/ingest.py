"""Commands into the store: facts, catalogs and reports from nodes, and deactivation.

Each command is one transaction, so a crash leaves nothing half-written. Facts, catalogs
and deactivations lock the node's row first (an upsert that takes the row lock on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), so concurrent commands for one node apply in
order. Reports, the hot path, insert their rows and then update the node in one
conditional upsert. As in PuppetDB, a command older than what the store already holds for
that node is ignored (a report is still stored, but does not become the latest), and a
command newer than a node's deactivation or expiry brings it back.

Row building is kept apart from writing (``steward.store.rows``), so the benchmark's bulk
loader produces exactly the rows ingestion would; the SQL statements are in
``steward.store.statements``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from steward.store.db import write_transaction
from steward.store.errors import StoreError
from steward.store.rows import ReportRows, catalog_rows, fact_rows, facts_hash, report_rows, utc
from steward.store.statements import (
    NodeRow,
    Tables,
    event_array,
    insert_for,
    lock_node,
    pg_report_statement,
    report_node_statement,
)


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
        conn.execute(report_node_statement(conn.dialect.name, t["nodes"]), {
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
        :func:`steward.store.statements.pg_report_statement`): one round trip instead of
        seven, and one statement is one transaction, so the report is still stored whole or
        not at all. ``conn`` must be in autocommit mode; the commit waits for the WAL flush
        unless the session turned ``synchronous_commit`` off (``durable_reports=False``).
        """
        row = rows.report
        statement = self._pg_report
        if statement is None:
            statement = self._pg_report = pg_report_statement(self.tables)
        stored = conn.execute(statement, {
            **row, "resources_blob": rows.resources["resources"],
            "events_json": event_array(rows.events)}).scalar_one_or_none()
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

