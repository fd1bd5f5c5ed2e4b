"""The schema: migrations (idempotent, concurrent-safe), models matching them, engines."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from steward.store import Store
from steward.store.db import StoreConfigError
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
