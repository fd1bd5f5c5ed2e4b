"""Engines for the state store: SQLite (one file, WAL) or PostgreSQL (psycopg 3).

Both backends must give identical query results, so everything the query compiler needs
that SQLite lacks is registered here as SQL functions on each new connection: ``REGEXP``
(Python ``re``), ``steward_to_char`` (PostgreSQL's ``to_char`` for the patterns PQL's
``to_string`` accepts). PostgreSQL sessions run in UTC so ``to_char`` and timestamp
rendering do not depend on the server's time zone.

SQLite transactions are begun explicitly: ``BEGIN IMMEDIATE`` for writes (taking the write
lock up front, so a read-then-write transaction never fails on a lock upgrade) and a plain
deferred ``BEGIN`` for reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, DateTime, Dialect, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from steward.errors import StewardError
from steward.query.timefmt import to_char_text

#: Execution option naming a transaction that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "steward_write"
BUSY_TIMEOUT_MS = 30_000


class StoreConfigError(StewardError):
    """The store URL names an unsupported database or cannot be used."""


def dumps(value: Any) -> str:
    """The store's JSON text: compact, keys sorted, so equal documents are equal text (which
    is what SQLite compares when grouping by a JSON value)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _sorted_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    pairs.sort(key=_first)
    return dict(pairs)


_first = operator.itemgetter(0)
#: A decoder is stateless; one is built once instead of on every json.loads(..., hook).
_SORTED_DECODER = json.JSONDecoder(object_pairs_hook=_sorted_object)


def loads_sorted(text: str | bytes) -> Any:
    """JSON text to Python with every object's keys sorted, as SQLite's stored text (written
    by :func:`dumps`) already has them: jsonb orders keys its own way (shorter first), and
    responses must not depend on the backend. Sorting while decoding, in the C scanner's
    object hook, costs a fraction of walking the decoded value again in Python."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")
    return _SORTED_DECODER.decode(text)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def sqlite_regexp(pattern: str | None, value: Any) -> bool | None:
    """SQLite's ``value REGEXP pattern``: Python ``re.search``, NULL-propagating."""
    if pattern is None or value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return _compiled(pattern).search(value) is not None


def _sqlite_to_char(stored: str | None, fmt: str | None) -> str | None:
    if stored is None or fmt is None:
        return None
    return to_char_text(stored, fmt)


class EngineOptions(TypedDict, total=False):
    """Keyword settings of :func:`make_engine`, for a caller that keeps its own set."""

    synchronous_commit: bool
    autocommit: bool
    pre_ping: bool
    begin_immediate: bool
    busy_timeout_ms: int
    pool_size: int
    max_overflow: int
    canonical_json: bool


def make_engine(url: str, *, synchronous_commit: bool = True,
                autocommit: bool = False, pre_ping: bool = True,
                begin_immediate: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                pool_size: int = 5, max_overflow: int = 10,
                canonical_json: bool = True) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``, configured.

    The one factory for the state store's and the server's engines; the defaults are the
    store's. SQLite: a transaction marked :data:`WRITE_OPTION` begins ``IMMEDIATE`` and one
    marked :data:`READONLY_OPTION` a plain ``BEGIN``; an unmarked one begins ``IMMEDIATE``
    with ``begin_immediate=True`` (for code whose transactions mostly read then write),
    else deferred; ``busy_timeout_ms`` is how long a locked database is waited for.
    ``canonical_json=False`` keeps the driver's own JSON text (insertion order) instead of
    :func:`dumps` and :func:`loads_sorted`, for tables whose readers expect that.

    PostgreSQL only: ``synchronous_commit=False`` makes its sessions commit without waiting
    for the WAL flush; ``autocommit=True`` runs every statement as its own transaction (no
    ``BEGIN``/``COMMIT`` round trips), for writes that are one statement; ``pre_ping=False``
    skips the liveness check (a round trip) on every checkout, for callers that retry
    an idempotent statement on a connection found dead instead; ``pool_size`` and
    ``max_overflow`` size the connection pool.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    # SQLite hands back the stored text, already sorted by dumps(); jsonb does not.
    serializer: dict[str, Any] = {"json_serializer": dumps} if canonical_json else {}
    if backend == "sqlite":
        return _sqlite_engine(url, begin_immediate, busy_timeout_ms, serializer)
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise StoreConfigError(
                f"store URL {parsed.render_as_string(hide_password=True)!r}: use the psycopg "
                "driver (postgresql+psycopg://...)"
            )
        options: dict[str, Any] = {"pool_pre_ping": pre_ping, "pool_size": pool_size,
                                   "max_overflow": max_overflow, **serializer}
        if canonical_json:
            options["json_deserializer"] = loads_sorted
        return _postgresql_engine(parsed.set(drivername="postgresql+psycopg"),
                                  synchronous_commit, autocommit, options)
    raise StoreConfigError(
        f"store URL {parsed.render_as_string(hide_password=True)!r}: unsupported database "
        f"{backend!r} (use sqlite:///path or postgresql+psycopg://...)"
    )


def create_private_sqlite(url: str) -> None:
    """Create a SQLite database file 0600 (or make an existing one so) before connecting.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, so this keeps
    all three private to the server's user whatever its umask (they hold every report,
    token hash and audit entry).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") \
            or str(parsed.database).startswith("file:"):
        return
    path = str(parsed.database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # connecting reports the problem, with SQLite's own words
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.chmod(path + suffix, 0o600)


def _sqlite_engine(url: str, begin_immediate: bool, busy_timeout_ms: int,
                   json_options: dict[str, Any]) -> Engine:
    parsed = make_url(url)
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        create_private_sqlite(url)
    kwargs: dict[str, Any] = {
        **json_options,
        "connect_args": {"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    }
    if memory:
        # One shared connection, or every checkout would see a different empty database.
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Transactions are begun by the "begin" hook below, not implicitly by the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if not memory:
            _enable_wal(cursor, busy_timeout_ms)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        dbapi_connection.create_function("regexp", 2, sqlite_regexp, deterministic=True)
        dbapi_connection.create_function(
            "steward_to_char", 2, _sqlite_to_char, deterministic=True
        )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a read-then-write transaction then waits
        # for the busy timeout instead of failing when another writer got in first. Plain
        # reads need no lock in WAL mode.
        options = conn.get_execution_options()
        writing = options.get(WRITE_OPTION, False) or (
            begin_immediate and not options.get(READONLY_OPTION, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def _enable_wal(cursor: sqlite3.Cursor, busy_timeout_ms: int) -> None:
    """Switch a database file to WAL (a persistent setting). Changing the journal mode can
    fail with "database is locked" without waiting, when another connection opens the new
    file at the same moment, so it is retried for as long as the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _postgresql_engine(url: Any, synchronous_commit: bool, autocommit: bool,
                       options: dict[str, Any]) -> Engine:
    if autocommit:
        options = {**options, "isolation_level": "AUTOCOMMIT"}
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            if not synchronous_commit:
                cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write; committed on success."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a read transaction, so related reads see one snapshot."""
    with engine.connect() as conn, conn.begin():
        yield conn


#: Execution option of a read-only connection (see :func:`reading`).
READONLY_OPTION = "steward_readonly"

class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it does not take the write lock."""
    return engine.connect().execution_options(**{READONLY_OPTION: True})

