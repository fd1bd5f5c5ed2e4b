"""The schema: migrations (idempotent, concurrent-safe), models matching them, engines."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect, text

from steward.store import Store
from steward.store.db import WRITE_OPTION, StoreConfigError, make_engine, reading
from steward.store.models import Base
from tests.store.backends import store_url

TABLES = {"nodes", "environments", "factsets", "facts", "fact_contents", "fact_paths",
          "catalogs", "resources", "edges", "reports", "report_resources", "events",
          "alembic_version"}


def test_migrate_creates_the_schema_once(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        store = Store(url)
        try:
            assert inspect(store.engine).get_table_names() == []  # Store() touches nothing
            store.migrate()
            store.migrate()
            assert set(inspect(store.engine).get_table_names()) == TABLES
            with store.engine.connect() as conn:
                assert conn.execute(text("SELECT version_num FROM alembic_version")
                                    ).scalars().all() == ["0001"]
        finally:
            store.close()


def test_models_match_the_migrations(store: Store) -> None:
    with store.engine.connect() as conn, warnings.catch_warnings():
        # Expression indexes cannot be reflected or compared, and both libraries say so;
        # test_expression_index_exists checks that one.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_expression_index_exists(store: Store) -> None:
    if store.dialect == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = 'ix_resources_type_title'"
    else:
        query = ("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_resources_type_title' "
                 "AND schemaname = current_schema()")
    with store.engine.connect() as conn:
        definition = conn.exec_driver_sql(query).scalar_one()
    assert "substr(title, 1, 200)" in definition


def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("SELECT 'web01' REGEXP '^web'").scalar() == 1
            assert conn.exec_driver_sql(
                "SELECT steward_to_char('2024-05-06 12:00:00.000000', 'FMDay')").scalar() \
                == "Monday"
    finally:
        store.close()


def test_one_engine_factory_begins_as_each_caller_needs(tmp_path: Path) -> None:
    """The store's engine begins deferred unless writing; the server's (begin_immediate)
    takes the write lock up front unless reading, and waits its own busy timeout."""
    def begins(engine: Engine, connect: Callable[[], Connection]) -> list[str]:
        seen: list[str] = []
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_: seen.append(statement))
        with connect() as conn, conn.begin():
            conn.exec_driver_sql("SELECT 1")
        return [s for s in seen if s.startswith("BEGIN")]

    store = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    server = make_engine(f"sqlite:///{tmp_path / 'server.db'}", begin_immediate=True,
                         busy_timeout_ms=15_000)
    try:
        assert begins(store, store.connect) == ["BEGIN"]
        assert begins(store, lambda: store.connect().execution_options(
            **{WRITE_OPTION: True})) == ["BEGIN IMMEDIATE"]
        assert begins(server, server.connect) == ["BEGIN IMMEDIATE"]
        assert begins(server, lambda: reading(server)) == ["BEGIN"]
        with server.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.dispose()
        server.dispose()


@pytest.mark.parametrize("url", ["mysql://localhost/x", "postgresql+psycopg2://h/db",
                                 "oracle://x"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(StoreConfigError, match="store URL"):
        Store(url)


def test_concurrent_migrations(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        stores = [Store(url) for _ in range(3)]
        errors: list[BaseException] = []

        def migrate(store: Store) -> None:
            try:
                store.migrate()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for store in stores:
            store.close()
        assert errors == []
