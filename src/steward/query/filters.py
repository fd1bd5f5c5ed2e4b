"""WHERE: PQL expressions (comparisons, regexes, paths, null tests, boolean logic) and
``in`` with arrays and subqueries, each checked against the field's kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Float,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
)

from steward.query import entities as ent
from steward.query.entities import Field, Kind, Scope
from steward.query.errors import QueryError, describe
from steward.query.fieldsql import (
    comparable,
    field_of,
    implicit_conditions,
    open_scope,
    path_key,
    sql,
    value,
)
from steward.query.literals import COMPARE, is_number, regex, timestamp, value_condition
from steward.query.ordering import order_expr
from steward.query.parts import Parts, legacy_select, split
from steward.query.sqlexpr import ValueAccess, prefix_indexed_equals, regex_match

_OPERATORS = ("=", "<", ">", "<=", ">=", "~", "~>", "and", "or", "not", "null?", "in",
              "subquery")


def where(scope: Scope, filter_: Any) -> list[ColumnElement[bool]]:
    """A query's filter as WHERE conditions (none without one)."""
    return [] if filter_ is None else [expr(scope, filter_)]


def expr(scope: Scope, node: Any) -> ColumnElement[bool]:
    """One PQL expression as a SQL condition."""
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise QueryError(f"expected a query expression such as [\"=\", field, value], "
                         f"got {describe(node)}")
    op = node[0]
    if op in ("and", "or"):
        if len(node) < 2:
            raise QueryError(f"{op!r} needs at least one expression: {describe(node)}")
        terms = [expr(scope, term) for term in node[1:]]
        return and_(*terms) if op == "and" else or_(*terms)
    if op == "not":
        if len(node) != 2:
            raise QueryError(f"'not' takes one expression: {describe(node)}")
        return not_(func.coalesce(expr(scope, node[1]), false()))
    if op in COMPARE or op == "~":
        if len(node) != 3:
            raise QueryError(f"{op!r} takes a field and a value: {describe(node)}")
        return compare(scope, op, node[1], node[2])
    if op == "~>":
        return _path_regex(scope, node)
    if op == "null?":
        return _null(scope, node)
    if op == "in":
        return _in(scope, node)
    if op == "subquery":
        return _implicit_subquery(scope, node)
    if op in ("from", "extract"):
        raise QueryError(f"a subquery must be the right-hand side of 'in': {describe(node)}")
    raise QueryError(f"unknown operator {op!r}; valid operators: {', '.join(_OPERATORS)}")


def compare(scope: Scope, op: str, name: Any, literal: Any) -> ColumnElement[bool]:
    """``field op literal``, by the field's kind."""
    found = field_of(scope, name)
    if not found.filterable:
        raise QueryError(f"field {found.name!r} of {scope.entity.name!r} cannot be "
                         "filtered on; it is only returned")
    kind = found.kind
    if kind is Kind.SPECIAL:
        assert found.special is not None
        return found.special(scope, op, literal)
    if kind is Kind.VALUE:
        field_name = found.name

        def build(access: ValueAccess) -> ColumnElement[bool]:
            return value_condition(field_name, access, op, literal, scope.dialect)

        if found.value_filter is not None:
            return found.value_filter(scope, build)
        return build(value(scope, found))
    if kind is Kind.PATH:
        return _path_compare(scope, found, op, literal)
    if kind in (Kind.DOCUMENT, Kind.EXPANDED):
        raise QueryError(f"field {found.name!r} is a whole document; test it with "
                         "'is null' / 'is not null', or query a path inside it")
    column = sql(scope, found)
    if op == "~":
        if kind is not Kind.STRING:
            raise QueryError(f"~ matches strings; {found.name!r} is a {kind.value}")
        return regex_match(column, regex(found.name, literal), scope.dialect,
                           table_column=isinstance(column, Column))
    if kind is Kind.STRING:
        if op != "=":
            raise QueryError(f"{op} is not supported on {found.name!r} (a string); use = "
                             "or ~")
        if not isinstance(literal, str):
            raise QueryError(f"field {found.name!r} is a string; got {describe(literal)}")
        if found.prefix_index is not None:
            return prefix_indexed_equals(column, literal, found.prefix_index)
        return column == literal
    if kind is Kind.NUMBER:
        if not is_number(literal):
            raise QueryError(f"field {found.name!r} is a number; got {describe(literal)}")
        # Bound as the value's own type, not the column's: PostgreSQL would cast it to the
        # column's (``line = 10^18`` an "integer out of range", a 500; ``line = 1.5``
        # rounded to 2).
        typed = bindparam(None, literal, type_=BigInteger() if isinstance(literal, int)
                          else Float(), unique=True)
        return COMPARE[op](column, typed)  # type: ignore[no-any-return]
    if kind is Kind.BOOLEAN:
        if op != "=" or not isinstance(literal, bool):
            raise QueryError(f"field {found.name!r} is a boolean; compare it with "
                             "= true or = false")
        return column == literal
    if kind is Kind.TIMESTAMP:
        return COMPARE[op](column, timestamp(found.name, literal))  # type: ignore[no-any-return]
    raise QueryError(f"field {found.name!r} cannot be compared")  # pragma: no cover


def _path_compare(scope: Scope, found: Field, op: str, literal: Any) -> ColumnElement[bool]:
    if op == "=":
        if not isinstance(literal, list) or not all(
                isinstance(v, str) or is_number(v) for v in literal):
            raise QueryError(f"{found.name!r} = takes an array of path elements, e.g. "
                             f"[\"os\", \"family\"]; got {describe(literal)}")
        return path_key(scope, found) == ent.path_key(literal)
    if op == "~":
        return regex_match(path_key(scope, found), regex(found.name, literal),
                           scope.dialect, table_column=True)
    raise QueryError(f"{op} is not supported on {found.name!r}; use =, ~ or ~>")


def _path_regex(scope: Scope, node: list[Any]) -> ColumnElement[bool]:
    if len(node) != 3:
        raise QueryError(f"'~>' takes a field and an array of regexes: {describe(node)}")
    found = field_of(scope, node[1])
    if found.kind is not Kind.PATH:
        raise QueryError(f"'~>' matches paths; {found.name!r} is not a path (try 'path')")
    parts = node[2]
    if not isinstance(parts, list) or not parts:
        raise QueryError(f"'~>' takes a non-empty array of regexes: {describe(node)}")
    for part in parts:
        if not isinstance(part, str):
            raise QueryError(f"'~>': {describe(part)} is not a regex string")
        regex(found.name, part)
    pattern = "^" + ent.PATH_SEPARATOR.join(f"(?:{p})" for p in parts) + "$"
    # The depth pins one element per regex: ".*" cannot reach across separators.
    return and_(path_key(scope, found).regexp_match(pattern),
                scope.c(scope.entity.base, "depth") == len(parts) - 1)


def _null(scope: Scope, node: list[Any]) -> ColumnElement[bool]:
    if len(node) != 3 or not isinstance(node[2], bool):
        raise QueryError(f"'null?' takes a field and true or false: {describe(node)}")
    found = field_of(scope, node[1])
    if not found.filterable or found.kind is Kind.SPECIAL:
        raise QueryError(f"field {found.name!r} cannot be tested with 'null?'")
    if found.kind is Kind.VALUE:
        is_null = value(scope, found).is_null()
    else:
        is_null = sql(scope, found).is_(None)
    return is_null if node[2] else not_(is_null)


# -- subqueries -------------------------------------------------------------------------------


def _in(scope: Scope, node: list[Any]) -> ColumnElement[bool]:
    if len(node) != 3:
        raise QueryError(f"'in' takes fields and an array or a subquery: {describe(node)}")
    names = node[1] if isinstance(node[1], list) else [node[1]]
    if not names:
        raise QueryError("'in' needs at least one field")
    target = node[2]
    if isinstance(target, list) and target and target[0] == "array":
        if len(names) != 1:
            raise QueryError("'in' with an array takes exactly one field")
        if len(target) != 2 or not isinstance(target[1], list) or not target[1]:
            raise QueryError(f"'array' takes a non-empty list of values: "
                             f"{describe(target)}")
        return or_(*(compare(scope, "=", names[0], v) for v in target[1]))
    if isinstance(target, list) and target and target[0] == "extract":
        legacy = legacy_select(target)
        if legacy is None:
            raise QueryError(f"'in' needs [\"from\", <entity>, [\"extract\", ...]]: "
                             f"{describe(target)}")
        target = legacy
    if not (isinstance(target, list) and target and target[0] == "from"):
        raise QueryError(f"'in' takes [\"array\", [...]] or a subquery [\"from\", ...]: "
                         f"{describe(target)}")
    parts = split(target, scope.entities)
    if not parts.projection:
        raise QueryError(
            f"the subquery after 'in' must project the fields to compare, e.g. "
            f"{parts.entity.name}[certname] {{ ... }}"
        )
    return _in_subquery(scope, names, parts)


def _in_subquery(scope: Scope, names: list[Any], parts: Parts) -> ColumnElement[bool]:
    if len(parts.projection or ()) != len(names):
        raise QueryError(f"'in' compares {len(names)} field(s) with a subquery projecting "
                         f"{len(parts.projection or ())}")
    if parts.group_by:
        raise QueryError("a subquery after 'in' cannot use group_by")
    inner = open_scope(parts.entity, scope.tables, scope.dialect, scope.entities)
    outer_exprs: list[ColumnElement[Any]] = []
    inner_exprs: list[ColumnElement[Any]] = []
    for outer_name, inner_name in zip(names, parts.projection or (), strict=True):
        if not isinstance(inner_name, str):
            raise QueryError(f"a subquery after 'in' projects plain fields, not "
                             f"{describe(inner_name)}")
        outer_field = field_of(scope, outer_name)
        inner_field = field_of(inner, inner_name)
        for found, at in ((outer_field, scope), (inner_field, inner)):
            if not found.filterable or found.kind in (Kind.SPECIAL, Kind.EXPANDED,
                                                      Kind.DOCUMENT):
                raise QueryError(f"field {found.name!r} of {at.entity.name!r} cannot "
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
            outer_exprs.append(comparable(scope, outer_field))
            inner_exprs.append(comparable(inner, inner_field))
    conditions = where(inner, parts.filter)
    order = [order_expr(inner, name, direction, {})
             for name, direction in parts.order_by or ()]
    conditions.extend(implicit_conditions(inner, True))
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


def _implicit_subquery(scope: Scope, node: list[Any]) -> ColumnElement[bool]:
    if len(node) not in (2, 3):
        raise QueryError(f"'subquery' takes an entity and an optional query: "
                         f"{describe(node)}")
    inner_entity = scope.entities.entity(node[1])
    pairs = scope.entities.relation(scope.entity, inner_entity)
    parts = Parts(inner_entity, [inner for _, inner in pairs],
                  node[2] if len(node) == 3 else None, None, None, None, None)
    return _in_subquery(scope, [outer for outer, _ in pairs], parts)
