"""Fields as SQL inside one scope: name lookup, expressions built once per scope (so
SELECT, GROUP BY and ORDER BY share them and their bound parameters), and the scope itself
with the conditions every query of an entity carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Table

from steward.query import entities as ent
from steward.query.entities import Entity, EntityRegistry, Field, Kind, Scope
from steward.query.errors import QueryError, describe
from steward.query.sqlexpr import ValueAccess


def open_scope(entity: Entity, tables: Mapping[str, Table], dialect: str,
               entities: EntityRegistry) -> Scope:
    """A scope for ``entity``, or an error naming it if this server lacks its tables."""
    scope = Scope(entity, tables, dialect, entities)
    if entity.base not in tables:
        # The audit log and the pipeline's tables are registered by the server (the
        # pipeline's only with a git repository of desired state): the entity's own
        # check names what it needs, before any column of it is touched (a KeyError, 500).
        if entity.where is not None:
            entity.where(scope)
        raise QueryError(f"the '{entity.name}' entity is not available on this server")
    return scope


def implicit_conditions(scope: Scope, active_only: bool) -> list[ColumnElement[bool]]:
    """The entity's own condition, and the active-node filter unless the query names it."""
    conditions = []
    if scope.entity.where is not None:
        conditions.append(scope.entity.where(scope))
    if active_only and scope.entity.active_only and not scope.names_node_state:
        conditions.append(ent.active_filter(scope))
    return conditions


def field_of(scope: Scope, name: Any) -> Field:
    """The field ``name`` of the scope's entity; naming node state lifts the active filter."""
    if not isinstance(name, str):
        raise QueryError(f"expected a field name, got {describe(name)}")
    found = scope.entity.field(name)
    if found.node_state:
        scope.names_node_state = True
    return found


def sql(scope: Scope, found: Field) -> ColumnElement[Any]:
    """A field's expression, built once per scope so SELECT/GROUP BY/ORDER BY share it."""
    memo = scope.memo
    if found.name not in memo:
        if found.sql is None:
            raise QueryError(f"field {found.name!r} of {scope.entity.name!r} cannot be "
                             "used here (it is filled in after the query)")
        memo[found.name] = (value(scope, found).json() if found.kind is Kind.VALUE
                            else found.sql(scope))
    return memo[found.name]


def value(scope: Scope, found: Field) -> ValueAccess:
    """A VALUE field's typed readings, built once per scope (shared bound parameters)."""
    if found.name not in scope.values:
        assert found.value is not None
        scope.values[found.name] = found.value(scope)
    return scope.values[found.name]


def value_order(scope: Scope, found: Field) -> list[ColumnElement[Any]]:
    """How VALUE fields sort and group alike on both backends: number, then text."""
    access = value(scope, found)
    return [access.number(), access.text()]


def path_key(scope: Scope, found: Field) -> ColumnElement[Any]:
    """A PATH field's key column: one string per path, what paths compare and sort by."""
    return scope.c(scope.entity.base, "path_key")


def comparable(scope: Scope, found: Field) -> ColumnElement[Any]:
    """What ``in`` compares a field by: a path's key, else the field's expression."""
    if found.kind is Kind.PATH:
        return path_key(scope, found)
    return sql(scope, found)
