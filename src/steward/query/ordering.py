"""ORDER BY: the query's own order, then each entity's natural order to break ties, so
responses are deterministic on both backends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, ColumnElement

from steward.query.entities import Kind, Scope
from steward.query.errors import QueryError
from steward.query.fieldsql import field_of, path_key, sql, value_order
from steward.query.parts import Parts
from steward.query.projection import FUNCTIONS


def order_expr(scope: Scope, name: str, direction: str,
               outputs: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[Any]]:
    """The ORDER BY terms of one item; nulls last ascending, first descending."""
    if name in outputs and name in FUNCTIONS:
        targets = [outputs[name]]
    else:
        found = field_of(scope, name)
        if found.kind in (Kind.DOCUMENT, Kind.EXPANDED, Kind.SPECIAL):
            raise QueryError(f"cannot order by {found.name!r}")
        if found.kind is Kind.VALUE:
            targets = value_order(scope, found)
        elif found.kind is Kind.PATH:
            targets = [path_key(scope, found)]
        else:
            targets = [sql(scope, found)]
    if direction == "desc":
        return [t.desc().nulls_first() for t in targets]
    return [t.asc().nulls_last() for t in targets]


def ordering(scope: Scope, parts: Parts, outputs: Mapping[str, ColumnElement[Any]],
             group_exprs: list[ColumnElement[Any]],
             aggregated: bool) -> list[ColumnElement[Any]]:
    """The whole ORDER BY: the query's items, then the groups or the natural order."""
    order: list[ColumnElement[Any]] = []
    grouped_names = {g for g in parts.group_by or () if isinstance(g, str)}
    for name, direction in parts.order_by or ():
        if aggregated and name not in grouped_names and not (
                name in outputs and name in FUNCTIONS):
            raise QueryError(f"cannot order by {name!r}: with aggregates, order by a "
                             "grouped field or a projected function")
        order.extend(order_expr(scope, name, direction, outputs))
    if aggregated:
        order.extend(g.asc().nulls_last() for g in group_exprs
                     if not isinstance(g.type, JSON))
    else:
        named = {id(sql(scope, scope.entity.field(n)))
                 for n, _ in parts.order_by or () if n in scope.entity.fields
                 and scope.entity.fields[n].sql is not None}
        order.extend(o(scope).asc() for o in parts.entity.natural_order
                     if id(o(scope)) not in named)
    return order
