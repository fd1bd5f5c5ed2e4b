"""Initial schema: latest state (nodes, facts, catalogs) and history (reports, events).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TITLE_PREFIX = 200
VALUE_PREFIX = 100


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _certname_id(table: str) -> sa.Column[int]:
    return sa.Column(
        "certname_id",
        _id(),
        sa.ForeignKey("nodes.id", name=f"fk_{table}_certname_id_nodes", ondelete="CASCADE"),
        nullable=False,
    )


def _fact_value_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("value", _json(), nullable=False),
        sa.Column("value_type", _text(), nullable=False),
        sa.Column("value_string", _text()),
        sa.Column("value_number", sa.Float()),
        sa.Column("value_boolean", sa.Boolean()),
    ]


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("certname", _text(), nullable=False),
        sa.Column("deactivated", _ts()),
        sa.Column("expired", _ts()),
        sa.Column("facts_timestamp", _ts()),
        sa.Column("catalog_timestamp", _ts()),
        sa.Column("report_timestamp", _ts()),
        sa.Column("facts_environment", _text()),
        sa.Column("catalog_environment", _text()),
        sa.Column("report_environment", _text()),
        sa.Column("latest_report_hash", _text()),
        sa.Column("latest_report_status", _text()),
        sa.Column("latest_report_noop", sa.Boolean()),
        sa.Column("latest_report_noop_pending", sa.Boolean()),
        sa.Column("latest_report_corrective_change", sa.Boolean()),
        sa.PrimaryKeyConstraint("id", name="pk_nodes"),
        sa.UniqueConstraint("certname", name="uq_nodes_certname"),
    )
    op.create_table(
        "environments",
        sa.Column("name", _text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_environments"),
    )
    op.create_table(
        "factsets",
        _certname_id("factsets"),
        sa.Column("environment", _text(), nullable=False),
        sa.Column("timestamp", _ts(), nullable=False),
        sa.Column("producer_timestamp", _ts(), nullable=False),
        sa.Column("hash", _text(), nullable=False),
        sa.Column("facts", _json(), nullable=False),
        sa.Column("trusted", _json(), nullable=False),
        sa.PrimaryKeyConstraint("certname_id", name="pk_factsets"),
    )
    op.create_table(
        "facts",
        _certname_id("facts"),
        sa.Column("name", _text(), nullable=False),
        *_fact_value_columns(),
        sa.PrimaryKeyConstraint("certname_id", "name", name="pk_facts"),
    )
    op.create_index("ix_facts_name", "facts", ["name"])
    op.create_table(
        "fact_contents",
        _certname_id("fact_contents"),
        sa.Column("path_key", _text(), nullable=False),
        sa.Column("path", _json(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("name", _text(), nullable=False),
        *_fact_value_columns(),
        sa.PrimaryKeyConstraint("certname_id", "path_key", name="pk_fact_contents"),
    )
    op.create_index(
        "ix_fact_contents_path_value",
        "fact_contents",
        ["path_key", sa.text(f"substr(value_string, 1, {VALUE_PREFIX})"), "value_number",
         "certname_id"],
    )
    op.create_table(
        "fact_paths",
        sa.Column("path_key", _text(), nullable=False),
        sa.Column("type", _text(), nullable=False),
        sa.Column("path", _json(), nullable=False),
        sa.Column("name", _text(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("path_key", "type", name="pk_fact_paths"),
    )
    op.create_table(
        "catalogs",
        _certname_id("catalogs"),
        sa.Column("hash", _text(), nullable=False),
        sa.Column("catalog_uuid", _text(), nullable=False),
        sa.Column("environment", _text(), nullable=False),
        sa.Column("code_id", _text()),
        sa.Column("producer_timestamp", _ts(), nullable=False),
        sa.Column("classification", _json(), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.PrimaryKeyConstraint("certname_id", name="pk_catalogs"),
    )
    op.create_table(
        "resources",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        _certname_id("resources"),
        sa.Column("type", _text(), nullable=False),
        sa.Column("title", _text(), nullable=False),
        sa.Column("resource", _text(), nullable=False),
        sa.Column("exported", sa.Boolean(), nullable=False),
        sa.Column("file", _text()),
        sa.Column("line", sa.Integer()),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("parameters", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_resources"),
    )
    op.create_index("ix_resources_certname_id", "resources", ["certname_id"])
    op.create_index(
        "ix_resources_type_title",
        "resources",
        ["type", sa.text(f"substr(title, 1, {TITLE_PREFIX})"), "certname_id"],
    )
    op.create_table(
        "edges",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        _certname_id("edges"),
        sa.Column("source_type", _text(), nullable=False),
        sa.Column("source_title", _text(), nullable=False),
        sa.Column("target_type", _text(), nullable=False),
        sa.Column("target_title", _text(), nullable=False),
        sa.Column("relationship", _text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_edges"),
    )
    op.create_index("ix_edges_certname_id", "edges", ["certname_id"])
    op.create_table(
        "reports",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("hash", _text(), nullable=False),
        sa.Column("transaction_uuid", _text(), nullable=False),
        sa.Column("certname", _text(), nullable=False),
        sa.Column("environment", _text(), nullable=False),
        sa.Column("status", _text(), nullable=False),
        sa.Column("noop", sa.Boolean(), nullable=False),
        sa.Column("noop_pending", sa.Boolean(), nullable=False),
        sa.Column("corrective_change", sa.Boolean(), nullable=False),
        sa.Column("puppet_version", _text()),
        sa.Column("report_format", sa.Integer(), nullable=False),
        sa.Column("configuration_version", _text()),
        sa.Column("code_id", _text()),
        sa.Column("catalog_uuid", _text()),
        sa.Column("catalog_hash", _text()),
        sa.Column("type", _text(), nullable=False),
        sa.Column("producer", _text(), nullable=False),
        sa.Column("start_time", _ts(), nullable=False),
        sa.Column("end_time", _ts(), nullable=False),
        sa.Column("producer_timestamp", _ts(), nullable=False),
        sa.Column("receive_time", _ts(), nullable=False),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("logs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.UniqueConstraint("hash", name="uq_reports_hash"),
        sa.UniqueConstraint("transaction_uuid", name="uq_reports_transaction_uuid"),
    )
    op.create_index(
        "ix_reports_certname_producer_timestamp", "reports", ["certname", "producer_timestamp"]
    )
    op.create_index("ix_reports_producer_timestamp", "reports", ["producer_timestamp"])
    op.create_index("ix_reports_receive_time", "reports", ["receive_time"])
    op.create_table(
        "report_resources",
        sa.Column(
            "report",
            _text(),
            sa.ForeignKey("reports.hash", name="fk_report_resources_report_reports",
                          ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("resources", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("report", name="pk_report_resources"),
    )
    op.create_table(
        "events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column(
            "report",
            _text(),
            sa.ForeignKey("reports.hash", name="fk_events_report_reports", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("certname", _text(), nullable=False),
        sa.Column("status", _text(), nullable=False),
        sa.Column("timestamp", _ts(), nullable=False),
        sa.Column("resource_type", _text(), nullable=False),
        sa.Column("resource_title", _text(), nullable=False),
        sa.Column("property", _text()),
        sa.Column("old_value", _json(), nullable=False),
        sa.Column("new_value", _json(), nullable=False),
        sa.Column("message", _text()),
        sa.Column("file", _text()),
        sa.Column("line", sa.Integer()),
        sa.Column("containing_class", _text()),
        sa.Column("corrective_change", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_report", "events", ["report"])
    op.create_index("ix_events_certname_timestamp", "events", ["certname", "timestamp"])


def downgrade() -> None:
    for table in ("events", "report_resources", "reports", "edges", "resources", "catalogs",
                  "fact_paths", "fact_contents", "facts", "factsets", "environments", "nodes"):
        op.drop_table(table)
