"""The audit log as the PQL entity ``audit`` (readable with ``audit:read``).

The table is :data:`steward.access.tables.audit`; the server registers both (see
``steward.server.services``), a bare store knows neither.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ColumnElement, Table, cast, type_coerce
from sqlalchemy.dialects import postgresql

from steward.access.tables import audit
from steward.query.entities import (
    DottedSpec,
    Entity,
    EntityRegistry,
    Field,
    Kind,
    Scope,
    col,
    number,
    requires_table,
    string,
    timestamp,
)
from steward.query.sqlexpr import JsonPathValue, PathElement, ValueAccess

AUDIT_TABLE = audit.name
#: The tables the entity reads, by the names it reads them under.
QUERY_TABLES: dict[str, Table] = {AUDIT_TABLE: audit}


def _parameters_json(s: Scope) -> ColumnElement[Any]:
    """The entry's parameters: canonical JSON text in the table (it is hashed byte for
    byte), read as a JSON document (``jsonb`` on PostgreSQL)."""
    column = s.c(AUDIT_TABLE, "parameters")
    if s.dialect == "postgresql":
        return cast(column, postgresql.JSONB())
    return type_coerce(column, JSON())


def _parameter(name: str, path: tuple[PathElement, ...]) -> Field:
    def access(s: Scope) -> ValueAccess:
        return JsonPathValue(_parameters_json(s), path, s.dialect)

    return Field(name, Kind.VALUE, sql=lambda s: access(s).json(), value=access)


AUDIT = Entity(
    name="audit",
    base=AUDIT_TABLE,
    fields={f.name: f for f in (
        number("id", AUDIT_TABLE, nullable=False),
        timestamp("at", AUDIT_TABLE, nullable=False),
        string("actor", AUDIT_TABLE, nullable=False),
        string("actor_kind", AUDIT_TABLE, nullable=False),
        string("action", AUDIT_TABLE, nullable=False),
        string("target", AUDIT_TABLE),
        string("outcome", AUDIT_TABLE, nullable=False),
        string("reason", AUDIT_TABLE),
        string("remote", AUDIT_TABLE),
        string("request_id", AUDIT_TABLE),
        Field("parameters", Kind.DOCUMENT, sql=_parameters_json),
    )},
    dotted={"parameters": DottedSpec(_parameter)},
    default_fields=("id", "at", "actor", "actor_kind", "action", "target", "outcome",
                    "reason", "remote", "request_id", "parameters"),
    natural_order=(col(AUDIT_TABLE, "id"),),
    # Registered without its table, the entity is a query error, not a crash.
    where=requires_table(AUDIT_TABLE, "the 'audit' entity is available only on the Steward "
                                      "server"),
)


def register(registry: EntityRegistry) -> None:
    """Add ``audit``; its table is :data:`QUERY_TABLES`."""
    registry.register(AUDIT)
