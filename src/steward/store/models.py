"""The store's tables: latest state per node, and history (reports, events).

Latest state is replaced wholesale when a node sends something newer: ``nodes`` (one row per
certname, with PuppetDB's per-node fields denormalised so ``nodes`` queries need no joins),
``factsets``/``facts``/``fact_contents`` (the structured facts, per fact and per leaf),
``fact_paths``, ``catalogs``/``resources``/``edges``. History grows and is expired by
``report_ttl``: ``reports`` (each run's per-resource statuses kept as one compressed JSON
blob, never queried in SQL) and ``events`` (one row per property change, queried a lot).

Choices that keep the backends identical: text columns use the "C" collation on PostgreSQL
(SQLite compares bytes), timestamps are stored in UTC, and fact values are split into
typed columns (``value_string``/``value_number``/``value_boolean``) so comparisons never
depend on a backend's JSON operators. Indexes are limited to what queries and retention
need: every extra index is paid on every report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Titles are indexed by this many leading characters: PostgreSQL's B-tree rows are limited
#: to ~2.7 kB, and an exec's command line can be longer than that.
TITLE_PREFIX = 200
#: Fact leaf strings are indexed by this many leading characters, for the same reason.
VALUE_PREFIX = 100

TEXT = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
JSONDOC = JSON().with_variant(postgresql.JSONB(), "postgresql")
#: Surrogate keys: 64-bit on PostgreSQL; SQLite's rowid alias must be spelled INTEGER.
ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back as aware UTC datetimes.

    SQLite keeps them as ``YYYY-MM-DD HH:MM:SS.ffffff`` text, which sorts chronologically;
    naive datetimes given to the store are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Node(Base):
    """One row per certname: PuppetDB's ``nodes`` fields, kept current by every command."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    certname: Mapped[str] = mapped_column(TEXT, unique=True)
    deactivated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired: Mapped[datetime | None] = mapped_column(UTCDateTime)
    facts_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    catalog_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    report_timestamp: Mapped[datetime | None] = mapped_column(UTCDateTime)
    facts_environment: Mapped[str | None] = mapped_column(TEXT)
    catalog_environment: Mapped[str | None] = mapped_column(TEXT)
    report_environment: Mapped[str | None] = mapped_column(TEXT)
    latest_report_hash: Mapped[str | None] = mapped_column(TEXT)
    latest_report_status: Mapped[str | None] = mapped_column(TEXT)
    latest_report_noop: Mapped[bool | None] = mapped_column(Boolean)
    latest_report_noop_pending: Mapped[bool | None] = mapped_column(Boolean)
    latest_report_corrective_change: Mapped[bool | None] = mapped_column(Boolean)


class Environment(Base):
    __tablename__ = "environments"

    name: Mapped[str] = mapped_column(TEXT, primary_key=True)


class Factset(Base):
    """A node's latest facts as one document (for ``inventory`` and ``latest_facts``)."""

    __tablename__ = "factsets"

    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    environment: Mapped[str] = mapped_column(TEXT)
    #: When the store received the facts.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    producer_timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    #: sha1 of the canonical facts: an unchanged factset is not rewritten.
    hash: Mapped[str] = mapped_column(TEXT)
    facts: Mapped[Any] = mapped_column(JSONDOC)
    #: The ``trusted`` fact if the node sent one, else ``{"certname": ...}``.
    trusted: Mapped[Any] = mapped_column(JSONDOC)


class Fact(Base):
    """One row per top-level fact."""

    __tablename__ = "facts"

    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(TEXT, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONDOC)
    value_type: Mapped[str] = mapped_column(TEXT)
    value_string: Mapped[str | None] = mapped_column(TEXT)
    value_number: Mapped[float | None] = mapped_column(Float)
    value_boolean: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (Index(None, "name"),)


class FactContent(Base):
    """One row per leaf of a node's facts; ``path_key`` is the path joined with ``#~``."""

    __tablename__ = "fact_contents"

    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    path_key: Mapped[str] = mapped_column(TEXT, primary_key=True)
    path: Mapped[Any] = mapped_column(JSONDOC)
    #: Elements in the path minus one, so ``~>`` can require exactly as many elements.
    depth: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(TEXT)
    value: Mapped[Any] = mapped_column(JSONDOC)
    value_type: Mapped[str] = mapped_column(TEXT)
    value_string: Mapped[str | None] = mapped_column(TEXT)
    value_number: Mapped[float | None] = mapped_column(Float)
    value_boolean: Mapped[bool | None] = mapped_column(Boolean)



#: Leaf lookups by path and value (``facts.os.family = "Debian"`` in inventory): equality on
#: a string's first 100 characters, numeric ranges, and the node, all from the index.
Index("ix_fact_contents_path_value", FactContent.path_key,
      func.substr(FactContent.value_string, 1, VALUE_PREFIX), FactContent.value_number,
      FactContent.certname_id)


class FactPath(Base):
    """Every (path, type) seen in current facts, containers included (``fact_paths``)."""

    __tablename__ = "fact_paths"

    path_key: Mapped[str] = mapped_column(TEXT, primary_key=True)
    type: Mapped[str] = mapped_column(TEXT, primary_key=True)
    path: Mapped[Any] = mapped_column(JSONDOC)
    name: Mapped[str] = mapped_column(TEXT)
    depth: Mapped[int] = mapped_column(Integer)


class Catalog(Base):
    """A node's latest catalog; its resources and edges are in their own tables."""

    __tablename__ = "catalogs"

    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    hash: Mapped[str] = mapped_column(TEXT)
    catalog_uuid: Mapped[str] = mapped_column(TEXT)
    environment: Mapped[str] = mapped_column(TEXT)
    code_id: Mapped[str | None] = mapped_column(TEXT)
    producer_timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    classification: Mapped[Any] = mapped_column(JSONDOC)
    inputs: Mapped[Any] = mapped_column(JSONDOC)


class Resource(Base):
    """A catalog resource, type Capitalised as PuppetDB shows it (``Package``, ``Class``)."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(TEXT)
    title: Mapped[str] = mapped_column(TEXT)
    #: sha1 of the resource's canonical JSON (PuppetDB's ``resource`` field).
    resource: Mapped[str] = mapped_column(TEXT)
    exported: Mapped[bool] = mapped_column(Boolean)
    file: Mapped[str | None] = mapped_column(TEXT)
    line: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[Any] = mapped_column(JSONDOC)
    parameters: Mapped[Any] = mapped_column(JSONDOC)


#: Resources by type and title; the node id makes it covering for ``nodes { resources {...} }``.
Index("ix_resources_type_title", Resource.type, func.substr(Resource.title, 1, TITLE_PREFIX),
      Resource.certname_id)


class Edge(Base):
    __tablename__ = "edges"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    certname_id: Mapped[int] = mapped_column(
        ID, ForeignKey("nodes.id", ondelete="CASCADE"), index=True
    )
    source_type: Mapped[str] = mapped_column(TEXT)
    source_title: Mapped[str] = mapped_column(TEXT)
    target_type: Mapped[str] = mapped_column(TEXT)
    target_title: Mapped[str] = mapped_column(TEXT)
    relationship: Mapped[str] = mapped_column(TEXT)


class Report(Base):
    """One run: PuppetDB's report fields, plus Steward's catalog hash and exit code."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    hash: Mapped[str] = mapped_column(TEXT, unique=True)
    transaction_uuid: Mapped[str] = mapped_column(TEXT, unique=True)
    certname: Mapped[str] = mapped_column(TEXT)
    environment: Mapped[str] = mapped_column(TEXT)
    status: Mapped[str] = mapped_column(TEXT)
    noop: Mapped[bool] = mapped_column(Boolean)
    noop_pending: Mapped[bool] = mapped_column(Boolean)
    corrective_change: Mapped[bool] = mapped_column(Boolean)
    puppet_version: Mapped[str | None] = mapped_column(TEXT)
    report_format: Mapped[int] = mapped_column(Integer)
    configuration_version: Mapped[str | None] = mapped_column(TEXT)
    code_id: Mapped[str | None] = mapped_column(TEXT)
    catalog_uuid: Mapped[str | None] = mapped_column(TEXT)
    catalog_hash: Mapped[str | None] = mapped_column(TEXT)
    type: Mapped[str] = mapped_column(TEXT)
    producer: Mapped[str] = mapped_column(TEXT)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime] = mapped_column(UTCDateTime)
    producer_timestamp: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    receive_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[Any] = mapped_column(JSON)
    logs: Mapped[Any] = mapped_column(JSON)

    __table_args__ = (Index(None, "certname", "producer_timestamp"),)


class ReportResources(Base):
    """A report's per-resource statuses: its resource list as zlib-compressed JSON.

    Kept out of ``reports`` so scans of reports read narrow rows (a 300-resource list is
    several kB even compressed); only the ``resources`` field of a report reads it.
    """

    __tablename__ = "report_resources"

    report: Mapped[str] = mapped_column(
        TEXT, ForeignKey("reports.hash", ondelete="CASCADE"), primary_key=True
    )
    resources: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """One property change (or skip) of one resource in one report."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: The report's hash; one index serves the foreign key, report expansion and retention.
    report: Mapped[str] = mapped_column(
        TEXT, ForeignKey("reports.hash", ondelete="CASCADE"), index=True
    )
    certname: Mapped[str] = mapped_column(TEXT)
    status: Mapped[str] = mapped_column(TEXT)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    resource_type: Mapped[str] = mapped_column(TEXT)
    resource_title: Mapped[str] = mapped_column(TEXT)
    property: Mapped[str | None] = mapped_column(TEXT)
    old_value: Mapped[Any] = mapped_column(JSONDOC)
    new_value: Mapped[Any] = mapped_column(JSONDOC)
    message: Mapped[str | None] = mapped_column(TEXT)
    file: Mapped[str | None] = mapped_column(TEXT)
    line: Mapped[int | None] = mapped_column(Integer)
    containing_class: Mapped[str | None] = mapped_column(TEXT)
    corrective_change: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (Index(None, "certname", "timestamp"),)


TABLES = Base.metadata.tables
