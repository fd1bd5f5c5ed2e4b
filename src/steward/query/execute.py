"""Running a compiled query and shaping rows as PuppetDB's v4 endpoints return them.

Nested collections (fields with a :class:`~steward.query.entities.Nested`, such as a
report's ``resource_events``) are fetched after the main query with one query per 500
parents, through the same compiler, so they are rendered exactly as their own entity
renders them, each with PuppetDB's ``{"href": ..., "data": [...]}`` wrapper.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Result, RowMapping

from steward.query.compiler import CompiledQuery, Compiler
from steward.query.entities import Nested, Render, Scope

CHUNK = 500


def fetch(conn: Connection, compiler: Compiler, compiled: CompiledQuery) -> list[dict[str, Any]]:
    result = conn.execute(compiled.statement)
    positions = {key: index for index, key in enumerate(result.keys())}
    plan = [(c.key, positions[c.label] if c.label else None, c.render)
            for c in compiled.columns]
    # Renderers of expanded fields read hidden columns (labelled "_...") by name; other
    # rows are read as tuples, which is most of the cost saved on large responses.
    by_name = bool(compiled.expansions) or any(name.startswith("_") for name in positions)
    if not by_name and all(index is not None for _, index, _ in plan):
        return _plain_rows(result, plan)
    raws = result.all()
    rows: list[dict[str, Any]] = []
    for raw in raws:
        named = cast(Mapping[str, Any], raw._mapping) if by_name else _NO_NAMES
        row: dict[str, Any] = {}
        for key, index, render in plan:
            value = raw[index] if index is not None else None
            row[key] = render(value, named) if render is not None else value
        rows.append(row)
    for name in compiled.expansions:
        nested = compiled.entity.field(name).nested
        if nested is None:
            raise TypeError(f"{compiled.entity.name}.{name} is expanded but not nested")
        _expand(conn, compiler, name, nested, [raw._mapping for raw in raws], rows)
    return rows


_NO_NAMES: Mapping[str, Any] = {}


def _plain_rows(result: Result[Any], plan: list[tuple[str, int | None, Render | None]],
                ) -> list[dict[str, Any]]:
    """Rows whose every value is a selected column, rendered without the rest of the row.

    Rows are shaped as they come from the cursor, a chunk at a time (one call into the
    driver per chunk, not per row), so the driver's row objects are freed as they go
    instead of all living until the end (on a large response, survivors are what makes
    the garbage collector's full passes frequent and long); per row, the work is a few
    C-level calls plus one call per rendered value.
    """
    keys = [key for key, _, _ in plan]
    indexes = [index for _, index, _ in plan]
    renders = [(n, render) for n, (_, _, render) in enumerate(plan) if render is not None]
    if indexes == list(range(len(indexes))):
        pick: Callable[[Any], Any] = tuple
    elif len(indexes) == 1:
        only = indexes[0]
        def pick(raw: Any) -> Any:
            return (raw[only],)
    else:
        pick = operator.itemgetter(*indexes)
    rows: list[dict[str, Any]] = []
    append = rows.append
    for chunk in result.partitions(CHUNK):
        if not renders:
            for raw in chunk:
                append(dict(zip(keys, pick(raw), strict=True)))
            continue
        for raw in chunk:
            values = list(pick(raw))
            for n, render in renders:
                values[n] = render(values[n], _NO_NAMES)
            append(dict(zip(keys, values, strict=True)))
    return rows


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


def _children(conn: Connection, compiler: Compiler, entity: str, fields: list[str],
              parent_column: str, parent_ids: list[Any], group_key: str,
              ) -> dict[Any, list[dict[str, Any]]]:
    """Rows of ``entity`` whose ``parent_column`` is one of ``parent_ids``, by ``group_key``."""
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(set(parent_ids))):
        compiled = compiler.compile(
            ["from", entity, ["extract", fields]],
            extra_where=partial(_parent_in, parent_column, chunk),
            active_only=False,
        )
        for child in fetch(conn, compiler, compiled):
            grouped.setdefault(child.pop(group_key), []).append(child)
    return grouped


def _parent_in(column: str, ids: Sequence[Any], scope: Scope) -> ColumnElement[bool]:
    return scope.c(scope.entity.base, column).in_(ids)


def _expand(conn: Connection, compiler: Compiler, name: str, nested: Nested,
            raws: Sequence[RowMapping], rows: list[dict[str, Any]]) -> None:
    """Fill field ``name`` of each row with its children (see :class:`Nested`)."""
    children = _children(conn, compiler, nested.entity, list(nested.fields), nested.column,
                         [raw[nested.key] for raw in raws], nested.group_field)
    for raw, row in zip(raws, rows, strict=True):
        row[name] = {"href": nested.href(raw), "data": children.get(raw[nested.group_of], [])}
