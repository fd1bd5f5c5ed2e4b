"""The state store: what nodes are (facts, catalogs) and what happened (reports, events).

``Store`` is the one entry point the server uses::

    store = Store("sqlite:////var/lib/steward/store.db")   # or postgresql+psycopg://...
    store.migrate()
    store.replace_facts("web1", "production", facts, produced_at)
    store.query('nodes[certname] { resources { type = "Package" and title = "nginx" } }')

Queries are PQL or PuppetDB's AST and return PuppetDB v4 response shapes; see
docs/query.md. Every write is one transaction; see :mod:`steward.store.ingest`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import Engine, Table, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from steward.clock import utcnow
from steward.query import Compiler, EntityRegistry, QueryError, fetch
from steward.store.db import make_engine, read_transaction, write_transaction
from steward.store.entities import store_entities
from steward.store.errors import StoreError
from steward.store.ingest import Ingestor
from steward.store.models import TABLES
from steward.store.retention import gc
from steward.store.rows import ReportRows

__all__ = ["Store", "StoreError"]

#: pg_advisory_xact_lock key serialising concurrent ``migrate()`` calls.
_MIGRATION_LOCK = 0x57E3A7D0
#: PostgreSQL's SQLSTATE for an invalid regular expression.
#: PostgreSQL's "statement too complex" and "stack depth limit exceeded", and SQLite's
#: messages for its compile-time limits: a query the database refuses to plan is the query's
#: fault (a 400), not the server's.
_TOO_COMPLEX = frozenset({"54001", "54000"})
_SQLITE_TOO_COMPLEX = ("Expression tree is too large", "too many terms in compound SELECT",
                       "parser stack overflow", "too many SQL variables",
                       "at most 64 tables in a join", "too many arguments on function")
_INVALID_REGEX = "2201B"



class Store:
    """Facts, catalogs, reports and events of a fleet, in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None,
                 durable_reports: bool = True,
                 query_tables: Mapping[str, Table] | None = None,
                 entities: EntityRegistry | None = None) -> None:
        """Create the engine; the schema is not touched until :meth:`migrate`.

        ``clock`` gives "now" (reports' ``receive_time``, factsets' ``timestamp``,
        deactivation without an explicit time); tests pin it. ``durable_reports=False``
        commits reports on PostgreSQL without waiting for the WAL flush
        (``synchronous_commit = off``): several times the report rate of one writer, at the
        price of losing the last fraction of a second of reports if PostgreSQL itself
        crashes (never corruption, never a partial report). Facts and catalogs always
        commit durably; SQLite is unaffected. ``query_tables`` are further tables PQL may read
        (the server's audit log, which lives in the same database under its own schema) and
        ``entities`` the registry of every entity queries may name, the store's included
        (the composition root builds it from the packages present); by default the store's
        own (:mod:`steward.store.entities`).
        """
        self.engine: Engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._clock = clock or utcnow
        #: PostgreSQL stores a report with one statement, through a pool of its own in
        #: autocommit mode (and without waiting for the WAL flush if not durable); see
        #: :meth:`_store_report_statement`.
        self._report_engine = self.engine
        if self.dialect == "postgresql":
            self._report_engine = make_engine(url, synchronous_commit=durable_reports,
                                              autocommit=True, pre_ping=False)
        self._ingest = Ingestor(TABLES, self._clock)
        self._query_tables: dict[str, Table] = dict(query_tables or {})
        #: What PQL may name; owners above the store register theirs here too.
        self.entities = entities if entities is not None else store_entities()
        self._compiler = Compiler({**TABLES, **self._query_tables}, self.dialect, self.entities)

    # -- schema -----------------------------------------------------------------------
    def add_query_tables(self, tables: Mapping[str, Table]) -> None:
        """Let PQL read more of the database's tables (the pipeline's, once it starts)."""
        self._query_tables.update(tables)
        self._compiler = Compiler({**TABLES, **self._query_tables}, self.dialect, self.entities)

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision (``alembic upgrade head``); idempotent
        and safe to run from several processes at once."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("steward.store") / "migrations")
        )
        with write_transaction(self.engine) as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    # -- commands -----------------------------------------------------------------------
    def replace_facts(self, certname: str, environment: str, facts: dict[str, Any],
                      producer_timestamp: datetime) -> None:
        """Make ``facts`` the node's current facts (ignored if older than what is stored)."""
        with self._ingest.transaction(self.engine) as conn:
            self._ingest.replace_facts(conn, certname, environment, facts, producer_timestamp)

    def replace_catalog(self, catalog: dict[str, Any], producer_timestamp: datetime) -> None:
        """Make a Steward catalog (catalog_format 1) the node's current catalog; one whose
        hash is unchanged only has its timestamp updated."""
        with self._ingest.transaction(self.engine) as conn:
            self._ingest.replace_catalog(conn, catalog, producer_timestamp)

    def store_report(self, report: dict[str, Any]) -> str:
        """Store a Steward run report with its events; returns the report's hash. Storing
        the same ``transaction_uuid`` again stores nothing and returns the same hash."""
        rows = self._ingest.prepare_report(report)
        if self.dialect == "postgresql":
            try:
                return self._store_report_statement(rows)
            except DBAPIError as exc:
                # A pooled connection that died (server restart, idle timeout): it was
                # discarded; send the report once more on a fresh one. Safe even if the
                # first attempt committed: the report is idempotent on transaction_uuid.
                if not exc.connection_invalidated:
                    raise
            return self._store_report_statement(rows)
        with self._ingest.transaction(self._report_engine) as conn:
            return self._ingest.store_report(conn, rows)

    def _store_report_statement(self, rows: ReportRows) -> str:
        """PostgreSQL: the report in one autocommitted statement, one round trip, on a
        connection not pinged first (the caller retries on a dead one)."""
        with self._report_engine.connect() as conn:
            return self._ingest.store_report_statement(conn, rows)

    def deactivate_node(self, certname: str, when: datetime | None = None) -> None:
        """Mark a node deactivated (now, or at ``when``): it drops out of queries until it
        sends something newer."""
        with self._ingest.transaction(self.engine) as conn:
            self._ingest.deactivate_node(conn, certname, when)

    def gc(self, now: datetime, report_ttl: timedelta, node_ttl: timedelta | None,
           node_purge_ttl: timedelta | None) -> dict[str, int]:
        """Expire, purge and drop old reports (see :mod:`steward.store.retention`); returns
        counts: expired_nodes, purged_nodes, reports, events, fact_paths."""
        return gc(self.engine, TABLES, now, report_ttl, node_ttl, node_purge_ttl)

    # -- reading -------------------------------------------------------------------------
    def latest_facts(self, certname: str) -> dict[str, Any] | None:
        """The node's current facts as sent (deactivated nodes included), or None."""
        nodes, factsets = TABLES["nodes"], TABLES["factsets"]
        with read_transaction(self.engine) as conn:
            facts = conn.execute(
                select(factsets.c.facts)
                .join(nodes, nodes.c.id == factsets.c.certname_id)
                .where(nodes.c.certname == certname)
            ).scalar_one_or_none()
        return dict(facts) if facts is not None else None

    def query(self, query: str | list[Any], *, limit: int | None = None,
              offset: int | None = None,
              order_by: Sequence[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Run a PQL string or a ``["from", entity, ...]`` AST; PuppetDB v4 row shapes."""
        compiled = self._compiler.compile(query, limit=limit, offset=offset, order_by=order_by)
        return self._run(compiled)

    def query_entity(self, entity: str, query: list[Any] | None, *, limit: int | None = None,
                     offset: int | None = None,
                     order_by: Sequence[tuple[str, str]] | None = None,
                     ) -> list[dict[str, Any]]:
        """``/pdb/query/v4/<entity>``: ``query`` is a filter or ``extract`` AST, or None."""
        compiled = self._compiler.compile(query, entity=entity, limit=limit, offset=offset,
                                          order_by=order_by)
        return self._run(compiled)

    def _run(self, compiled: Any) -> list[dict[str, Any]]:
        try:
            with read_transaction(self.engine) as conn:
                return fetch(conn, self._compiler, compiled)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _INVALID_REGEX:
                raise QueryError(f"PostgreSQL rejected a regular expression of the query: "
                                 f"{str(exc.orig).strip()}") from None
            message = str(exc.orig).strip()
            if getattr(exc.orig, "sqlstate", None) in _TOO_COMPLEX \
                    or any(text in message for text in _SQLITE_TOO_COMPLEX):
                raise QueryError(f"the query is too complex for the database ({message}); "
                                 "split it, or use fewer conditions (docs/query.md#limits)") \
                    from None
            raise

    def close(self) -> None:
        """Release the connections (and, on SQLite, refresh planner statistics)."""
        if self.dialect == "sqlite":
            # Refresh the planner's statistics where SQLite thinks it worthwhile. Best
            # effort: with another process writing, it may not get the lock, and it can wait.
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA optimize")
            except OperationalError:
                pass
        if self._report_engine is not self.engine:
            self._report_engine.dispose()
        self.engine.dispose()
