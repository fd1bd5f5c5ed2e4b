"""What a query returns: projected fields and functions (with how each is rendered),
grouping and its rules, and the hidden columns that EXPANDED fields are rendered from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam, func, type_coerce

from steward.query.entities import Kind, Render, Scope
from steward.query.errors import QueryError, describe
from steward.query.fieldsql import field_of, path_key, sql, value, value_order
from steward.query.parts import Parts
from steward.query.sqlexpr import to_char
from steward.query.timefmt import FormatError, parse_format

AGGREGATES = ("count", "avg", "sum", "min", "max")
FUNCTIONS = (*AGGREGATES, "to_string")


@dataclass(frozen=True)
class OutputColumn:
    """One key of each response row."""

    key: str
    label: str
    render: Render | None


@dataclass
class Projection:
    """A query's SELECT list and what the rest of the compiler needs to know of it."""

    columns: list[OutputColumn]
    exprs: list[ColumnElement[Any]]
    #: Projected key -> its expression, for ORDER BY on a projected function.
    outputs: dict[str, ColumnElement[Any]]
    #: EXPANDED fields filled after the query from other tables (see execute.py).
    expansions: list[str]
    aggregated: bool


def project(scope: Scope, parts: Parts) -> Projection:
    """The projection of ``parts`` (its entity's default fields if it names none)."""
    items = parts.projection if parts.projection is not None else list(
        parts.entity.default_fields)
    columns: list[OutputColumn] = []
    exprs: list[ColumnElement[Any]] = []
    outputs: dict[str, ColumnElement[Any]] = {}
    expansions: list[str] = []
    aggregated = bool(parts.group_by)
    seen: set[str] = set()
    for index, item in enumerate(items):
        label = f"c{index}"
        if isinstance(item, str):
            found = field_of(scope, item)
            if not found.projectable:
                raise QueryError(f"field {found.name!r} of {scope.entity.name!r} can be "
                                 "filtered on but not returned")
            key = found.name
            if found.kind is Kind.EXPANDED and found.sql is None:
                # Rendered from hidden columns, or fetched after the query.
                if found.render is None:
                    expansions.append(found.name)
                columns.append(OutputColumn(key, "", found.render))
                if key in seen:
                    raise QueryError(f"{key!r} is projected twice")
                seen.add(key)
                continue
            expr = sql(scope, found)
            render = found.render
            if scope.dialect == "sqlite" and found.kind is Kind.TIMESTAMP:
                # Render SQLite's stored text directly (see entities.iso).
                expr = type_coerce(expr, Text())
        else:
            name, expr, render = function(scope, item)
            key = name
            aggregated = aggregated or name in AGGREGATES
        if key in seen:
            raise QueryError(f"{key!r} is projected twice")
        seen.add(key)
        columns.append(OutputColumn(key, label, render))
        exprs.append(expr.label(label))
        outputs[key] = expr
    return Projection(columns, exprs, outputs, expansions, aggregated)


def function(scope: Scope, item: Any) -> tuple[str, ColumnElement[Any], Render]:
    """``["function", name, args...]`` -> (name, its expression, how to render it)."""
    if (not isinstance(item, list) or len(item) < 2 or item[0] != "function"
            or item[1] not in FUNCTIONS):
        raise QueryError(f"expected a field or [\"function\", <{'|'.join(FUNCTIONS)}>, "
                         f"...], got {describe(item)}")
    memo = scope.memo
    memo_key = json.dumps(item)
    name, args = item[1], item[2:]
    if name == "count":
        if len(args) > 1:
            raise QueryError("count() takes at most one field")
        found = field_of(scope, args[0]) if args else None
        if found is not None and found.nullable:
            expr: ColumnElement[Any] = func.count(sql(scope, found))
        else:
            # count(f) of a never-null field is count(*), which reads no values.
            expr = func.count()
        return name, memo.setdefault(memo_key, expr), _render_count
    if name == "to_string":
        if len(args) != 2 or not isinstance(args[1], str):
            raise QueryError("to_string takes a timestamp field and a format string, e.g. "
                             "to_string(receive_time, \"YYYY-MM-DD\")")
        found = field_of(scope, args[0])
        if found.kind is not Kind.TIMESTAMP:
            raise QueryError(f"to_string formats timestamps; {found.name!r} is a "
                             f"{found.kind.value}")
        try:
            parse_format(args[1])
        except FormatError as exc:
            raise QueryError(f"to_string format: {exc}") from None
        if memo_key not in memo:
            fmt: ColumnElement[str] = bindparam(None, args[1], unique=True)
            memo[memo_key] = to_char(sql(scope, found), fmt, scope.dialect)
        return name, memo[memo_key], _render_plain
    if len(args) != 1:
        raise QueryError(f"{name}() takes one field")
    found = field_of(scope, args[0])
    if found.kind is Kind.VALUE:
        operand = value(scope, found).number()
    elif found.kind is Kind.NUMBER or (
            name in ("min", "max") and found.kind in (Kind.TIMESTAMP, Kind.STRING)):
        operand = sql(scope, found)
    else:
        raise QueryError(f"{name}() needs a numeric field; {found.name!r} is a "
                         f"{found.kind.value}")
    aggregate = getattr(func, name)(operand)
    if name == "avg":
        render: Render = _render_float
    elif name == "sum":
        render = _render_sum
    else:
        render = found.render or _render_number
    return name, memo.setdefault(memo_key, aggregate), render


def group_item(scope: Scope, item: Any) -> list[ColumnElement[Any]]:
    """The GROUP BY expressions of one ``group_by`` item."""
    if isinstance(item, str):
        found = field_of(scope, item)
        if found.kind in (Kind.EXPANDED, Kind.DOCUMENT, Kind.SPECIAL) or found.sql is None:
            raise QueryError(f"cannot group by {found.name!r}")
        if found.kind is Kind.VALUE:
            # The typed readings depend on the value; grouping by them too lets ORDER BY
            # use them (PostgreSQL accepts only grouped expressions there).
            return [sql(scope, found), *value_order(scope, found)]
        if found.kind is Kind.PATH:
            # A path orders by its key (one per path): grouped too, or PostgreSQL
            # refuses ORDER BY path (a GroupingError, a 500).
            return [sql(scope, found), path_key(scope, found)]
        return [sql(scope, found)]
    if isinstance(item, list) and len(item) >= 2 and item[0] == "function" \
            and item[1] == "to_string":
        return [function(scope, item)[1]]
    raise QueryError(f"group_by takes fields or to_string(...), not {describe(item)}")


def check_grouping(parts: Parts) -> None:
    """With aggregates, every plain projected item must be grouped (as SQL requires)."""
    grouped = {json.dumps(g) for g in parts.group_by or ()}
    for item in parts.projection or ():
        plain = isinstance(item, str) or (isinstance(item, list)
                                          and item[1:2] == ["to_string"])
        if plain and json.dumps(item) not in grouped:
            raise QueryError(
                f"{describe(item)} is projected with aggregate functions, so it must "
                "be in 'group by'"
            )


def hidden(scope: Scope, columns: list[OutputColumn]) -> list[ColumnElement[Any]]:
    """The hidden columns the projected fields are rendered from, each once."""
    needed: list[str] = []
    for column in columns:
        found = scope.entity.fields.get(column.key)
        if found is not None:
            needed.extend(n for n in found.needs if n not in needed)
    return [scope.entity.hidden[name](scope).label(name) for name in needed]


def _render_count(value: Any, _row: Mapping[str, Any]) -> Any:
    return int(value or 0)


def _render_plain(value: Any, _row: Mapping[str, Any]) -> Any:
    return value


def _render_float(value: Any, _row: Mapping[str, Any]) -> Any:
    return None if value is None else float(value)


def _render_number(value: Any, _row: Mapping[str, Any]) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _render_sum(value: Any, _row: Mapping[str, Any]) -> Any:
    return _render_number(value, _row)
