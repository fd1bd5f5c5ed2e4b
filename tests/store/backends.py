"""Fresh stores on each backend: a SQLite file, or a PostgreSQL schema of its own.

PostgreSQL is the server at 127.0.0.1:5432 (database ``test``) unless STEWARD_TEST_PG names
another; tests on it are skipped, with the reason, when it cannot be reached. Each store gets
a new schema (``search_path`` set through the URL) that is dropped afterwards.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from steward.store import Store

PG_URL = os.environ.get("STEWARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def postgresql_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg

        url = make_url(PG_URL)
        with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                             password=url.password, dbname=url.database, connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} is unreachable: {exc}"


def _admin() -> object:
    import psycopg

    url = make_url(PG_URL)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=True)


@contextmanager
def store_url(backend: str, directory: Path) -> Iterator[str]:
    """A URL for an empty store on ``backend``, removed afterwards (PostgreSQL schemas)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'store.db'}"
        return
    reason = postgresql_unavailable()
    if reason:
        pytest.skip(reason)
    schema = f"steward_test_{uuid.uuid4().hex[:12]}"
    admin = _admin()
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[attr-defined]
        yield make_url(PG_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


class Clock:
    """A settable "now" for the store (reports' receive_time, factsets' timestamp)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2024, 5, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def open_store(backend: str, directory: Path, clock: Callable[[], datetime] | None = None,
               ) -> Iterator[Store]:
    with store_url(backend, directory) as url:
        store = Store(url, clock=clock)
        try:
            store.migrate()
            yield store
        finally:
            store.close()
