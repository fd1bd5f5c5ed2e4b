"""PuppetDB AST -> one SQLAlchemy Core ``select``, validating as it goes.

Every literal of the query becomes a bound parameter; nothing from the query is ever
interpolated into SQL text. The compiler checks what it compiles: entity and field names
(errors list the valid ones), operators against field types, literal types, regexes,
``to_string`` formats, and the rules of aggregation (a projected field must be grouped),
so a query either compiles to SQL that runs the same on both backends or fails with a
:class:`QueryError` naming what is wrong. The pieces live beside this module: ``parts``
(the AST taken apart), ``literals``, ``fieldsql`` (fields and scopes), ``filters``,
``projection`` and ``ordering``; this module puts them together in SQL's order.

Semantics worth knowing (docs/query.md has the full list):

* ``not`` is null-safe: ``! code_id = "x"`` also matches reports without a code_id (SQL's
  NOT would drop them: unknown stays unknown).
* Without ``order by``, rows come in each entity's natural order (certname first); with
  it, the natural order breaks ties, so responses are deterministic.
* Nodes that are deactivated or expired are left out of node-state entities unless the
  query names ``deactivated``, ``expired`` or ``node_state``.
* JSON values come back with their object keys sorted on both backends: SQLite stores
  them so, and the store's PostgreSQL engine decodes ``jsonb`` with sorted keys
  (``steward.store.db.loads_sorted``), so no renderer re-sorts them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, select

from steward.query.entities import Entity, EntityRegistry, Scope
from steward.query.fieldsql import implicit_conditions, open_scope
from steward.query.filters import where
from steward.query.limits import check_ast
from steward.query.ordering import ordering
from steward.query.parts import as_from, merge_paging, split
from steward.query.projection import OutputColumn, check_grouping, group_item, hidden, project


@dataclass
class CompiledQuery:
    entity: Entity
    statement: Select[Any]
    columns: list[OutputColumn]
    #: EXPANDED fields filled after the query from other tables (see execute.py).
    expansions: list[str] = field(default_factory=list)


class Compiler:
    """Compiles queries of ``entities`` over ``tables`` for ``sqlite`` or ``postgresql``."""

    def __init__(self, tables: Mapping[str, Table], dialect: str,
                 entities: EntityRegistry) -> None:
        self.tables, self.dialect, self.entities = tables, dialect, entities

    def compile(
        self,
        query: str | list[Any] | None,
        *,
        entity: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        order_by: Sequence[tuple[str, str]] | None = None,
        extra_where: Callable[[Scope], ColumnElement[bool]] | None = None,
        active_only: bool = True,
    ) -> CompiledQuery:
        if not isinstance(query, str):
            check_ast(query)  # text is checked as it is parsed
        parts = split(as_from(query, entity, self.entities), self.entities)
        parts = merge_paging(parts, limit, offset, order_by)
        scope = open_scope(parts.entity, self.tables, self.dialect, self.entities)
        conditions = where(scope, parts.filter)
        if extra_where is not None:
            conditions.append(extra_where(scope))
        projected = project(scope, parts)
        group_exprs = [e for item in parts.group_by or () for e in group_item(scope, item)]
        if projected.aggregated:
            check_grouping(parts)
        order = ordering(scope, parts, projected.outputs, group_exprs, projected.aggregated)
        extra = hidden(scope, projected.columns)
        conditions.extend(implicit_conditions(scope, active_only))
        statement = select(*projected.exprs, *extra).select_from(scope.from_clause())
        if conditions:
            statement = statement.where(and_(*conditions))
        if group_exprs:
            statement = statement.group_by(*group_exprs)
        if parts.entity.distinct and not projected.aggregated:
            statement = statement.distinct()
        statement = statement.order_by(*order)
        if parts.limit is not None:
            statement = statement.limit(parts.limit)
        if parts.offset is not None:
            statement = statement.offset(parts.offset)
        return CompiledQuery(parts.entity, statement, projected.columns, projected.expansions)
