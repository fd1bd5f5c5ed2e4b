"""PuppetDB AST -> one SQLAlchemy Core ``select``, validating as it goes.

Every literal of the query becomes a bound parameter; nothing from the query is ever
interpolated into SQL text. The compiler checks what it compiles: entity and field names
(errors list the valid ones), operators against field types, literal types, regexes,
``to_string`` formats, and the rules of aggregation (a projected field must be grouped),
so a query either compiles to SQL that runs the same on both backends or fails with a
:class:`QueryError` naming what is wrong.

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

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ColumnElement,
    Float,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
    type_coerce,
)

from steward.query import entities as ent
from steward.query.entities import Entity, EntityRegistry, Field, Kind, Render, Scope
from steward.query.errors import QueryError
from steward.query.limits import check_ast, check_page
from steward.query.parser import parse_pql
from steward.query.sqlexpr import (
    ColumnsValue,
    ValueAccess,
    prefix_indexed_equals,
    regex_match,
    to_char,
)
from steward.query.timefmt import FormatError, parse_format

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_INEQUALITIES = ("<", ">", "<=", ">=")
_OPERATORS = ("=", "<", ">", "<=", ">=", "~", "~>", "and", "or", "not", "null?", "in",
              "subquery")
AGGREGATES = ("count", "avg", "sum", "min", "max")
FUNCTIONS = (*AGGREGATES, "to_string")
_PAGING = ("order_by", "limit", "offset")


@dataclass(frozen=True)
class OutputColumn:
    """One key of each response row."""

    key: str
    label: str
    render: Render | None


@dataclass
class CompiledQuery:
    entity: Entity
    statement: Select[Any]
    columns: list[OutputColumn]
    #: EXPANDED fields filled after the query from other tables (see execute.py).
    expansions: list[str] = field(default_factory=list)


@dataclass
class _Parts:
    """A ``from`` taken apart."""

    entity: Entity
    projection: list[Any] | None
    filter: Any
    group_by: list[Any] | None
    order_by: list[tuple[str, str]] | None
    limit: int | None
    offset: int | None


def _describe(node: Any) -> str:
    text = json.dumps(node, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


# -- AST structure ----------------------------------------------------------------------------


def _as_from(query: Any, entity_name: str | None, entities: EntityRegistry) -> list[Any]:
    """Normalise what callers pass into a ``["from", entity, ...]`` node."""
    if isinstance(query, str):
        query = parse_pql(query)
    if entity_name is not None:
        entities.entity(entity_name)
        if query is None:
            return ["from", entity_name]
        if isinstance(query, list) and query and query[0] == "from":
            if len(query) < 2 or query[1] != entity_name:
                raise QueryError(f"the query is for entity {query[1:2]!r}, not {entity_name!r}")
            return query
        return ["from", entity_name, query]
    if not isinstance(query, list) or not query:
        raise QueryError(f"a query must be PQL text or an AST list, got {_describe(query)}")
    if query[0] != "from":
        raise QueryError(
            f"a top-level AST query starts with [\"from\", <entity>, ...], got {_describe(query)}"
        )
    return query


def _order_items(node: Any) -> list[tuple[str, str]]:
    if len(node) != 2 or not isinstance(node[1], list) or not node[1]:
        raise QueryError(f"order_by takes a list of fields: {_describe(node)}")
    items: list[tuple[str, str]] = []
    for item in node[1]:
        if isinstance(item, str):
            items.append((item, "asc"))
        elif (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
              and item[1] in ("asc", "desc")):
            items.append((item[0], item[1]))
        else:
            raise QueryError(f"order_by item {_describe(item)} must be a field or "
                             "[field, \"asc\"|\"desc\"]")
    return items


def _count(node: Any, what: str) -> int:
    if (len(node) != 2 or not isinstance(node[1], int) or isinstance(node[1], bool)
            or node[1] < 0):
        raise QueryError(f"{what} takes one non-negative integer: {_describe(node)}")
    check_page(what, node[1])
    return int(node[1])


def _split(node: list[Any], entities: EntityRegistry) -> _Parts:
    if len(node) < 2:
        raise QueryError(f"'from' needs an entity: {_describe(node)}")
    entity = entities.entity(node[1])
    body: Any = None
    order_by: list[tuple[str, str]] | None = None
    limit: int | None = None
    offset: int | None = None
    for clause in node[2:]:
        if not isinstance(clause, list) or not clause:
            raise QueryError(f"unexpected {_describe(clause)} in 'from'")
        head = clause[0]
        if head == "order_by":
            order_by = _order_items(clause)
        elif head == "limit":
            limit = _count(clause, "limit")
        elif head == "offset":
            offset = _count(clause, "offset")
        elif body is None:
            body = clause
        else:
            raise QueryError(f"'from' takes one query and then paging clauses; unexpected "
                             f"{_describe(clause)}")
    projection: list[Any] | None = None
    group_by: list[Any] | None = None
    filter_: Any = body
    if isinstance(body, list) and body and body[0] == "extract":
        if len(body) < 2 or len(body) > 4:
            raise QueryError(f"extract takes fields, an optional query and an optional "
                             f"group_by: {_describe(body)}")
        fields = body[1]
        projection = [fields] if isinstance(fields, str) else fields
        if not isinstance(projection, list):
            raise QueryError(f"extract's fields must be a list: {_describe(body)}")
        if not projection:
            raise QueryError(f"extract needs at least one field (an empty projection such as "
                             f"{entity.name}[] selects nothing): {_describe(body)}")
        filter_ = None
        for extra in body[2:]:
            if isinstance(extra, list) and extra and extra[0] == "group_by":
                if len(extra) < 2:
                    raise QueryError("group_by needs at least one field")
                group_by = list(extra[1:])
            elif filter_ is None:
                filter_ = extra
            else:
                raise QueryError(f"unexpected {_describe(extra)} in extract")
    elif isinstance(body, list) and body and body[0] == "group_by":
        raise QueryError("group_by needs a projection: [\"extract\", [...], query, "
                         "[\"group_by\", ...]]")
    return _Parts(entity, projection, filter_, group_by, order_by, limit, offset)


def _legacy_select(node: list[Any]) -> list[Any] | None:
    """``["extract", f, ["select_resources", q]]`` (PuppetDB v3 style) -> a ``from``."""
    if (len(node) == 3 and node[0] == "extract" and isinstance(node[2], list) and node[2]
            and isinstance(node[2][0], str) and node[2][0].startswith("select_")):
        inner = node[2]
        return ["from", inner[0].removeprefix("select_"),
                ["extract", node[1], *inner[1:2]]]
    return None


# -- literals -------------------------------------------------------------------------------------


def _timestamp(field_name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise QueryError(f"field {field_name!r} is a timestamp; compare it with an ISO 8601 "
                         f"string, not {_describe(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"field {field_name!r}: {value!r} is not an ISO 8601 timestamp "
                         "(e.g. 2024-05-01T12:00:00Z)") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # In UTC now, not in the driver: 0001-01-01T00:00:00+01:00 is before year 1 there
        # (an OverflowError, a 500).
        return parsed.astimezone(UTC)
    except OverflowError:
        raise QueryError(f"field {field_name!r}: {value!r} is out of range (years 1 to "
                         "9999, in UTC)") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _regex(field_name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise QueryError(f"the regex for {field_name!r} must be a string, not "
                         f"{_describe(value)}")
    try:
        re.compile(value)
    except re.error as exc:
        raise QueryError(f"invalid regular expression {value!r} for {field_name!r}: "
                         f"{exc}") from None
    return value


def _value_condition(field_name: str, access: ValueAccess, op: str, value: Any,
                     dialect: str) -> ColumnElement[bool]:
    """A comparison on a JSON value: by the literal's type (see sqlexpr)."""
    if isinstance(value, bool):
        if op != "=":
            raise QueryError(f"{field_name!r}: booleans can only be compared with =")
        return access.boolean_is(value)
    if _is_number(value):
        if op == "~":
            raise QueryError(f"{field_name!r}: ~ takes a string regex, not {value!r}")
        return _COMPARE[op](access.number(), value)  # type: ignore[no-any-return]
    if isinstance(value, str):
        if op == "~":
            return regex_match(access.text(), _regex(field_name, value), dialect,
                               table_column=isinstance(access, ColumnsValue))
        if op == "=":
            return access.text_equals(value)
        return _COMPARE[op](access.text(), value)  # type: ignore[no-any-return]
    raise QueryError(f"{field_name!r} can be compared with a string, number or boolean, not "
                     f"{_describe(value)}")


# -- the compiler ------------------------------------------------------------------------------


class Compiler:
    """Compiles queries of ``entities`` over ``tables`` for ``sqlite`` or ``postgresql``."""

    def __init__(self, tables: Mapping[str, Table], dialect: str,
                 entities: EntityRegistry) -> None:
        self.tables, self.dialect, self.entities = tables, dialect, entities

    # -- entry point ---------------------------------------------------------------------
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
        parts = _split(_as_from(query, entity, self.entities), self.entities)
        parts = _merge_paging(parts, limit, offset, order_by)
        scope = self._scope(parts.entity)
        conditions = self._where(scope, parts.filter)
        if extra_where is not None:
            conditions.append(extra_where(scope))
        columns, exprs, outputs, expansions, aggregated = self._projection(scope, parts)
        group_exprs = [e for item in parts.group_by or () for e in self._group_item(scope, item)]
        if aggregated:
            self._check_grouping(parts)
        order = self._ordering(scope, parts, outputs, group_exprs, aggregated)
        hidden = self._hidden(scope, columns)
        conditions.extend(self._implicit(scope, active_only))
        statement = select(*exprs, *hidden).select_from(scope.from_clause())
        if conditions:
            statement = statement.where(and_(*conditions))
        if group_exprs:
            statement = statement.group_by(*group_exprs)
        if parts.entity.distinct and not aggregated:
            statement = statement.distinct()
        statement = statement.order_by(*order)
        if parts.limit is not None:
            statement = statement.limit(parts.limit)
        if parts.offset is not None:
            statement = statement.offset(parts.offset)
        return CompiledQuery(parts.entity, statement, columns, expansions)

    def _scope(self, entity: Entity) -> Scope:
        scope = Scope(entity, self.tables, self.dialect)
        if entity.base not in self.tables:
            # The audit log and the pipeline's tables are registered by the server (the
            # pipeline's only with a git repository of desired state): the entity's own
            # check names what it needs, before any column of it is touched (a KeyError, 500).
            if entity.where is not None:
                entity.where(scope)
            raise QueryError(f"the '{entity.name}' entity is not available on this server")
        return scope

    def _implicit(self, scope: Scope, active_only: bool) -> list[ColumnElement[bool]]:
        conditions = []
        if scope.entity.where is not None:
            conditions.append(scope.entity.where(scope))
        if active_only and scope.entity.active_only and not scope.names_node_state:
            conditions.append(ent.active_filter(scope))
        return conditions

    def _where(self, scope: Scope, filter_: Any) -> list[ColumnElement[bool]]:
        return [] if filter_ is None else [self.expr(scope, filter_)]

    # -- fields ---------------------------------------------------------------------------
    def _field(self, scope: Scope, name: Any) -> Field:
        if not isinstance(name, str):
            raise QueryError(f"expected a field name, got {_describe(name)}")
        found = scope.entity.field(name)
        if found.node_state:
            scope.names_node_state = True
        return found

    def _sql(self, scope: Scope, found: Field) -> ColumnElement[Any]:
        """A field's expression, built once per scope so SELECT/GROUP BY/ORDER BY share it."""
        memo = scope.memo
        if found.name not in memo:
            if found.sql is None:
                raise QueryError(f"field {found.name!r} of {scope.entity.name!r} cannot be "
                                 "used here (it is filled in after the query)")
            memo[found.name] = (self._value(scope, found).json() if found.kind is Kind.VALUE
                                else found.sql(scope))
        return memo[found.name]

    def _value(self, scope: Scope, found: Field) -> ValueAccess:
        """A VALUE field's typed readings, built once per scope (shared bound parameters)."""
        if found.name not in scope.values:
            assert found.value is not None
            scope.values[found.name] = found.value(scope)
        return scope.values[found.name]

    def _value_order(self, scope: Scope, found: Field) -> list[ColumnElement[Any]]:
        """How VALUE fields sort and group alike on both backends: number, then text."""
        access = self._value(scope, found)
        return [access.number(), access.text()]

    # -- filters -------------------------------------------------------------------------------
    def expr(self, scope: Scope, node: Any) -> ColumnElement[bool]:
        if not isinstance(node, list) or not node or not isinstance(node[0], str):
            raise QueryError(f"expected a query expression such as [\"=\", field, value], "
                             f"got {_describe(node)}")
        op = node[0]
        if op in ("and", "or"):
            if len(node) < 2:
                raise QueryError(f"{op!r} needs at least one expression: {_describe(node)}")
            terms = [self.expr(scope, term) for term in node[1:]]
            return and_(*terms) if op == "and" else or_(*terms)
        if op == "not":
            if len(node) != 2:
                raise QueryError(f"'not' takes one expression: {_describe(node)}")
            return not_(func.coalesce(self.expr(scope, node[1]), false()))
        if op in _COMPARE or op == "~":
            if len(node) != 3:
                raise QueryError(f"{op!r} takes a field and a value: {_describe(node)}")
            return self.compare(scope, op, node[1], node[2])
        if op == "~>":
            return self._path_regex(scope, node)
        if op == "null?":
            return self._null(scope, node)
        if op == "in":
            return self._in(scope, node)
        if op == "subquery":
            return self._implicit_subquery(scope, node)
        if op in ("from", "extract"):
            raise QueryError(f"a subquery must be the right-hand side of 'in': {_describe(node)}")
        raise QueryError(f"unknown operator {op!r}; valid operators: {', '.join(_OPERATORS)}")

    def compare(self, scope: Scope, op: str, name: Any, value: Any) -> ColumnElement[bool]:
        found = self._field(scope, name)
        if not found.filterable:
            raise QueryError(f"field {found.name!r} of {scope.entity.name!r} cannot be "
                             "filtered on; it is only returned")
        kind = found.kind
        if kind is Kind.SPECIAL:
            assert found.special is not None
            return found.special(scope, op, value)
        if kind is Kind.VALUE:
            field_name = found.name

            def build(access: ValueAccess) -> ColumnElement[bool]:
                return _value_condition(field_name, access, op, value, self.dialect)

            if found.value_filter is not None:
                return found.value_filter(scope, build)
            return build(self._value(scope, found))
        if kind is Kind.PATH:
            return self._path_compare(scope, found, op, value)
        if kind in (Kind.DOCUMENT, Kind.EXPANDED):
            raise QueryError(f"field {found.name!r} is a whole document; test it with "
                             "'is null' / 'is not null', or query a path inside it")
        column = self._sql(scope, found)
        if op == "~":
            if kind is not Kind.STRING:
                raise QueryError(f"~ matches strings; {found.name!r} is a {kind.value}")
            return regex_match(column, _regex(found.name, value), self.dialect,
                               table_column=isinstance(column, Column))
        if kind is Kind.STRING:
            if op != "=":
                raise QueryError(f"{op} is not supported on {found.name!r} (a string); use = "
                                 "or ~")
            if not isinstance(value, str):
                raise QueryError(f"field {found.name!r} is a string; got {_describe(value)}")
            if found.prefix_index is not None:
                return prefix_indexed_equals(column, value, found.prefix_index)
            return column == value
        if kind is Kind.NUMBER:
            if not _is_number(value):
                raise QueryError(f"field {found.name!r} is a number; got {_describe(value)}")
            # Bound as the value's own type, not the column's: PostgreSQL would cast it to the
            # column's (``line = 10^18`` an "integer out of range", a 500; ``line = 1.5``
            # rounded to 2).
            typed = bindparam(None, value, type_=BigInteger() if isinstance(value, int)
                              else Float(), unique=True)
            return _COMPARE[op](column, typed)  # type: ignore[no-any-return]
        if kind is Kind.BOOLEAN:
            if op != "=" or not isinstance(value, bool):
                raise QueryError(f"field {found.name!r} is a boolean; compare it with "
                                 "= true or = false")
            return column == value
        if kind is Kind.TIMESTAMP:
            return _COMPARE[op](column, _timestamp(found.name, value))  # type: ignore[no-any-return]
        raise QueryError(f"field {found.name!r} cannot be compared")  # pragma: no cover

    def _path_key(self, scope: Scope, found: Field) -> ColumnElement[Any]:
        return scope.c(scope.entity.base, "path_key")

    def _path_compare(self, scope: Scope, found: Field, op: str,
                      value: Any) -> ColumnElement[bool]:
        if op == "=":
            if not isinstance(value, list) or not all(
                    isinstance(v, str) or _is_number(v) for v in value):
                raise QueryError(f"{found.name!r} = takes an array of path elements, e.g. "
                                 f"[\"os\", \"family\"]; got {_describe(value)}")
            return self._path_key(scope, found) == ent.path_key(value)
        if op == "~":
            return regex_match(self._path_key(scope, found), _regex(found.name, value),
                               self.dialect, table_column=True)
        raise QueryError(f"{op} is not supported on {found.name!r}; use =, ~ or ~>")

    def _path_regex(self, scope: Scope, node: list[Any]) -> ColumnElement[bool]:
        if len(node) != 3:
            raise QueryError(f"'~>' takes a field and an array of regexes: {_describe(node)}")
        found = self._field(scope, node[1])
        if found.kind is not Kind.PATH:
            raise QueryError(f"'~>' matches paths; {found.name!r} is not a path (try 'path')")
        parts = node[2]
        if not isinstance(parts, list) or not parts:
            raise QueryError(f"'~>' takes a non-empty array of regexes: {_describe(node)}")
        for part in parts:
            if not isinstance(part, str):
                raise QueryError(f"'~>': {_describe(part)} is not a regex string")
            _regex(found.name, part)
        pattern = "^" + ent.PATH_SEPARATOR.join(f"(?:{p})" for p in parts) + "$"
        # The depth pins one element per regex: ".*" cannot reach across separators.
        return and_(self._path_key(scope, found).regexp_match(pattern),
                    scope.c(scope.entity.base, "depth") == len(parts) - 1)

    def _null(self, scope: Scope, node: list[Any]) -> ColumnElement[bool]:
        if len(node) != 3 or not isinstance(node[2], bool):
            raise QueryError(f"'null?' takes a field and true or false: {_describe(node)}")
        found = self._field(scope, node[1])
        if not found.filterable or found.kind is Kind.SPECIAL:
            raise QueryError(f"field {found.name!r} cannot be tested with 'null?'")
        if found.kind is Kind.VALUE:
            is_null = self._value(scope, found).is_null()
        else:
            is_null = self._sql(scope, found).is_(None)
        return is_null if node[2] else not_(is_null)

    # -- subqueries ---------------------------------------------------------------------------
    def _in(self, scope: Scope, node: list[Any]) -> ColumnElement[bool]:
        if len(node) != 3:
            raise QueryError(f"'in' takes fields and an array or a subquery: {_describe(node)}")
        names = node[1] if isinstance(node[1], list) else [node[1]]
        if not names:
            raise QueryError("'in' needs at least one field")
        target = node[2]
        if isinstance(target, list) and target and target[0] == "array":
            if len(names) != 1:
                raise QueryError("'in' with an array takes exactly one field")
            if len(target) != 2 or not isinstance(target[1], list) or not target[1]:
                raise QueryError(f"'array' takes a non-empty list of values: "
                                 f"{_describe(target)}")
            return or_(*(self.compare(scope, "=", names[0], v) for v in target[1]))
        if isinstance(target, list) and target and target[0] == "extract":
            legacy = _legacy_select(target)
            if legacy is None:
                raise QueryError(f"'in' needs [\"from\", <entity>, [\"extract\", ...]]: "
                                 f"{_describe(target)}")
            target = legacy
        if not (isinstance(target, list) and target and target[0] == "from"):
            raise QueryError(f"'in' takes [\"array\", [...]] or a subquery [\"from\", ...]: "
                             f"{_describe(target)}")
        parts = _split(target, self.entities)
        if not parts.projection:
            raise QueryError(
                f"the subquery after 'in' must project the fields to compare, e.g. "
                f"{parts.entity.name}[certname] {{ ... }}"
            )
        return self._in_subquery(scope, names, parts)

    def _in_subquery(self, scope: Scope, names: list[Any], parts: _Parts,
                     ) -> ColumnElement[bool]:
        if len(parts.projection or ()) != len(names):
            raise QueryError(f"'in' compares {len(names)} field(s) with a subquery projecting "
                             f"{len(parts.projection or ())}")
        if parts.group_by:
            raise QueryError("a subquery after 'in' cannot use group_by")
        inner = self._scope(parts.entity)
        outer_exprs: list[ColumnElement[Any]] = []
        inner_exprs: list[ColumnElement[Any]] = []
        for outer_name, inner_name in zip(names, parts.projection or (), strict=True):
            if not isinstance(inner_name, str):
                raise QueryError(f"a subquery after 'in' projects plain fields, not "
                                 f"{_describe(inner_name)}")
            outer_field = self._field(scope, outer_name)
            inner_field = self._field(inner, inner_name)
            for found, where in ((outer_field, scope), (inner_field, inner)):
                if not found.filterable or found.kind in (Kind.SPECIAL, Kind.EXPANDED,
                                                          Kind.DOCUMENT):
                    raise QueryError(f"field {found.name!r} of {where.entity.name!r} cannot "
                                     "be compared in 'in'")
            if outer_field.kind is not inner_field.kind:
                # PostgreSQL has no ``integer = text`` (an UndefinedFunction, a 500).
                raise QueryError(
                    f"'in' compares {outer_field.name!r} of {scope.entity.name!r} (a "
                    f"{outer_field.kind.value}) with {inner_field.name!r} of "
                    f"{inner.entity.name!r} (a {inner_field.kind.value}): compare fields of "
                    "one kind")
            if outer_field.key is not None and inner_field.key is not None:
                # Both are node ids underneath: compare ids, no join to nodes needed.
                outer_exprs.append(outer_field.key(scope))
                inner_exprs.append(inner_field.key(inner))
            else:
                outer_exprs.append(self._comparable(scope, outer_field))
                inner_exprs.append(self._comparable(inner, inner_field))
        conditions = self._where(inner, parts.filter)
        order = [self._order_expr(inner, name, direction, {})
                 for name, direction in parts.order_by or ()]
        conditions.extend(self._implicit(inner, True))
        sub = select(*inner_exprs).select_from(inner.from_clause())
        if conditions:
            sub = sub.where(and_(*conditions))
        if parts.limit is not None or parts.offset is not None:
            sub = sub.order_by(*[o for pair in order for o in pair],
                               *(o(inner) for o in parts.entity.natural_order))
            if parts.limit is not None:
                sub = sub.limit(parts.limit)
            if parts.offset is not None:
                sub = sub.offset(parts.offset)
        if len(outer_exprs) == 1:
            return outer_exprs[0].in_(sub)
        return tuple_(*outer_exprs).in_(sub)

    def _comparable(self, scope: Scope, found: Field) -> ColumnElement[Any]:
        if found.kind is Kind.PATH:
            return self._path_key(scope, found)
        return self._sql(scope, found)

    def _implicit_subquery(self, scope: Scope, node: list[Any]) -> ColumnElement[bool]:
        if len(node) not in (2, 3):
            raise QueryError(f"'subquery' takes an entity and an optional query: "
                             f"{_describe(node)}")
        inner_entity = self.entities.entity(node[1])
        pairs = self.entities.relation(scope.entity, inner_entity)
        parts = _Parts(inner_entity, [inner for _, inner in pairs],
                       node[2] if len(node) == 3 else None, None, None, None, None)
        return self._in_subquery(scope, [outer for outer, _ in pairs], parts)

    # -- projection and aggregation ------------------------------------------------------------
    def _projection(self, scope: Scope, parts: _Parts) -> tuple[
            list[OutputColumn], list[ColumnElement[Any]], dict[str, ColumnElement[Any]],
            list[str], bool]:
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
                found = self._field(scope, item)
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
                expr = self._sql(scope, found)
                render = found.render
                if self.dialect == "sqlite" and found.kind is Kind.TIMESTAMP:
                    # Render SQLite's stored text directly (see entities.iso).
                    expr = type_coerce(expr, Text())
            else:
                name, expr, render = self._function(scope, item)
                key = name
                aggregated = aggregated or name in AGGREGATES
            if key in seen:
                raise QueryError(f"{key!r} is projected twice")
            seen.add(key)
            columns.append(OutputColumn(key, label, render))
            exprs.append(expr.label(label))
            outputs[key] = expr
        return columns, exprs, outputs, expansions, aggregated

    def _function(self, scope: Scope, item: Any) -> tuple[str, ColumnElement[Any], Render]:
        if (not isinstance(item, list) or len(item) < 2 or item[0] != "function"
                or item[1] not in FUNCTIONS):
            raise QueryError(f"expected a field or [\"function\", <{'|'.join(FUNCTIONS)}>, "
                             f"...], got {_describe(item)}")
        memo = scope.memo
        memo_key = json.dumps(item)
        name, args = item[1], item[2:]
        if name == "count":
            if len(args) > 1:
                raise QueryError("count() takes at most one field")
            found = self._field(scope, args[0]) if args else None
            if found is not None and found.nullable:
                expr: ColumnElement[Any] = func.count(self._sql(scope, found))
            else:
                # count(f) of a never-null field is count(*), which reads no values.
                expr = func.count()
            return name, memo.setdefault(memo_key, expr), _render_count
        if name == "to_string":
            if len(args) != 2 or not isinstance(args[1], str):
                raise QueryError("to_string takes a timestamp field and a format string, e.g. "
                                 "to_string(receive_time, \"YYYY-MM-DD\")")
            found = self._field(scope, args[0])
            if found.kind is not Kind.TIMESTAMP:
                raise QueryError(f"to_string formats timestamps; {found.name!r} is a "
                                 f"{found.kind.value}")
            try:
                parse_format(args[1])
            except FormatError as exc:
                raise QueryError(f"to_string format: {exc}") from None
            if memo_key not in memo:
                fmt: ColumnElement[str] = bindparam(None, args[1], unique=True)
                memo[memo_key] = to_char(self._sql(scope, found), fmt, self.dialect)
            return name, memo[memo_key], _render_plain
        if len(args) != 1:
            raise QueryError(f"{name}() takes one field")
        found = self._field(scope, args[0])
        if found.kind is Kind.VALUE:
            operand = self._value(scope, found).number()
        elif found.kind is Kind.NUMBER or (
                name in ("min", "max") and found.kind in (Kind.TIMESTAMP, Kind.STRING)):
            operand = self._sql(scope, found)
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

    def _group_item(self, scope: Scope, item: Any) -> list[ColumnElement[Any]]:
        if isinstance(item, str):
            found = self._field(scope, item)
            if found.kind in (Kind.EXPANDED, Kind.DOCUMENT, Kind.SPECIAL) or found.sql is None:
                raise QueryError(f"cannot group by {found.name!r}")
            if found.kind is Kind.VALUE:
                # The typed readings depend on the value; grouping by them too lets ORDER BY
                # use them (PostgreSQL accepts only grouped expressions there).
                return [self._sql(scope, found), *self._value_order(scope, found)]
            if found.kind is Kind.PATH:
                # A path orders by its key (one per path): grouped too, or PostgreSQL
                # refuses ORDER BY path (a GroupingError, a 500).
                return [self._sql(scope, found), self._path_key(scope, found)]
            return [self._sql(scope, found)]
        if isinstance(item, list) and len(item) >= 2 and item[0] == "function" \
                and item[1] == "to_string":
            return [self._function(scope, item)[1]]
        raise QueryError(f"group_by takes fields or to_string(...), not {_describe(item)}")

    def _check_grouping(self, parts: _Parts) -> None:
        grouped = {json.dumps(g) for g in parts.group_by or ()}
        for item in parts.projection or ():
            plain = isinstance(item, str) or (isinstance(item, list)
                                              and item[1:2] == ["to_string"])
            if plain and json.dumps(item) not in grouped:
                raise QueryError(
                    f"{_describe(item)} is projected with aggregate functions, so it must "
                    "be in 'group by'"
                )

    # -- ordering ---------------------------------------------------------------------------------
    def _order_expr(self, scope: Scope, name: str, direction: str,
                    outputs: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        if name in outputs and name in FUNCTIONS:
            targets = [outputs[name]]
        else:
            found = self._field(scope, name)
            if found.kind in (Kind.DOCUMENT, Kind.EXPANDED, Kind.SPECIAL):
                raise QueryError(f"cannot order by {found.name!r}")
            if found.kind is Kind.VALUE:
                targets = self._value_order(scope, found)
            elif found.kind is Kind.PATH:
                targets = [self._path_key(scope, found)]
            else:
                targets = [self._sql(scope, found)]
        if direction == "desc":
            return [t.desc().nulls_first() for t in targets]
        return [t.asc().nulls_last() for t in targets]

    def _ordering(self, scope: Scope, parts: _Parts, outputs: Mapping[str, ColumnElement[Any]],
                  group_exprs: list[ColumnElement[Any]],
                  aggregated: bool) -> list[ColumnElement[Any]]:
        order: list[ColumnElement[Any]] = []
        grouped_names = {g for g in parts.group_by or () if isinstance(g, str)}
        for name, direction in parts.order_by or ():
            if aggregated and name not in grouped_names and not (
                    name in outputs and name in FUNCTIONS):
                raise QueryError(f"cannot order by {name!r}: with aggregates, order by a "
                                 "grouped field or a projected function")
            order.extend(self._order_expr(scope, name, direction, outputs))
        if aggregated:
            order.extend(g.asc().nulls_last() for g in group_exprs
                         if not isinstance(g.type, JSON))
        else:
            named = {id(self._sql(scope, scope.entity.field(n)))
                     for n, _ in parts.order_by or () if n in scope.entity.fields
                     and scope.entity.fields[n].sql is not None}
            order.extend(o(scope).asc() for o in parts.entity.natural_order
                         if id(o(scope)) not in named)
        return order

    def _hidden(self, scope: Scope, columns: list[OutputColumn]) -> list[ColumnElement[Any]]:
        needed: list[str] = []
        for column in columns:
            found = scope.entity.fields.get(column.key)
            if found is not None:
                needed.extend(n for n in found.needs if n not in needed)
        return [scope.entity.hidden[name](scope).label(name) for name in needed]


def _merge_paging(parts: _Parts, limit: int | None, offset: int | None,
                  order_by: Sequence[tuple[str, str]] | None) -> _Parts:
    for what, mine, theirs in (("limit", parts.limit, limit), ("offset", parts.offset, offset),
                               ("order_by", parts.order_by, order_by)):
        if mine is not None and theirs is not None:
            raise QueryError(f"{what} is given both in the query and as a parameter")
    for what, value in (("limit", limit), ("offset", offset)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            raise QueryError(f"{what} must be a non-negative integer, not {value!r}")
        if value is not None:
            check_page(what, value)
    if order_by is not None:
        checked = []
        for item in order_by:
            if (not isinstance(item, tuple | list) or len(item) != 2
                    or not isinstance(item[0], str) or item[1] not in ("asc", "desc")):
                raise QueryError(f"order_by items are (field, 'asc'|'desc'), not {item!r}")
            checked.append((item[0], item[1]))
        parts.order_by = checked
    if limit is not None:
        parts.limit = limit
    if offset is not None:
        parts.offset = offset
    return parts


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
