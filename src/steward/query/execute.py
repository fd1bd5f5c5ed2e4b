"""Running a compiled query and shaping rows as PuppetDB's v4 endpoints return them.

Nested collections (a report's ``resource_events``, a catalog's ``resources`` and
``edges``) are fetched after the main query with one query per 500 parents, through the
same compiler, so they are rendered exactly as the ``events``/``resources``/``edges``
entities render them, each with PuppetDB's ``{"href": ..., "data": [...]}`` wrapper.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Result, RowMapping

from steward.query.compiler import CompiledQuery, Compiler
from steward.query.entities import Render, Scope

CHUNK = 500

#: The fields of an event as embedded in a report (PuppetDB's ``resource_events``).
REPORT_EVENT_FIELDS = ["report", "status", "timestamp", "resource_type", "resource_title",
                       "property", "new_value", "old_value", "message", "file", "line",
                       "containment_path", "containing_class", "corrective_change"]
CATALOG_RESOURCE_FIELDS = ["certname", "resource", "type", "title", "tags", "exported",
                           "file", "line", "parameters"]
CATALOG_EDGE_FIELDS = ["certname", "source_type", "source_title", "target_type",
                       "target_title", "relationship"]


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
        _EXPANDERS[(compiled.entity.name, name)](conn, compiler,
                                                 [raw._mapping for raw in raws], rows)
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


def _report_events(conn: Connection, compiler: Compiler, raws: Sequence[RowMapping],
                   rows: list[dict[str, Any]]) -> None:
    events = _children(conn, compiler, "events", REPORT_EVENT_FIELDS, "report",
                       [raw["_hash"] for raw in raws], "report")
    for raw, row in zip(raws, rows, strict=True):
        row["resource_events"] = {
            "href": f"/pdb/query/v4/reports/{raw['_hash']}/events",
            "data": events.get(raw["_hash"], []),
        }


def _catalog_part(name: str, entity: str, fields: list[str]) -> Expander:
    def expand(conn: Connection, compiler: Compiler, raws: Sequence[RowMapping],
               rows: list[dict[str, Any]]) -> None:
        children = _children(conn, compiler, entity, fields, "certname_id",
                             [raw["_certname_id"] for raw in raws], "certname")
        for raw, row in zip(raws, rows, strict=True):
            row[name] = {
                "href": f"/pdb/query/v4/catalogs/{raw['_certname']}/{name}",
                "data": children.get(raw["_certname"], []),
            }

    return expand


Expander = Callable[[Connection, Compiler, Sequence[RowMapping], list[dict[str, Any]]], None]

_EXPANDERS: Mapping[tuple[str, str], Expander] = {
    ("reports", "resource_events"): _report_events,
    ("catalogs", "resources"): _catalog_part("resources", "resources",
                                             CATALOG_RESOURCE_FIELDS),
    ("catalogs", "edges"): _catalog_part("edges", "edges", CATALOG_EDGE_FIELDS),
}
