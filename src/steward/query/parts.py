"""A ``from`` query taken apart: entity, projection, filter, grouping and paging, checked.

The compiler works on these parts, not on the raw AST, so each shape error (a misplaced
clause, a bad ``limit``) is reported once, here, with the offending fragment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steward.query.entities import Entity, EntityRegistry
from steward.query.errors import QueryError, describe
from steward.query.limits import check_page
from steward.query.parser import parse_pql


@dataclass
class Parts:
    """A ``from`` taken apart."""

    entity: Entity
    projection: list[Any] | None
    filter: Any
    group_by: list[Any] | None
    order_by: list[tuple[str, str]] | None
    limit: int | None
    offset: int | None


def as_from(query: Any, entity_name: str | None, entities: EntityRegistry) -> list[Any]:
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
        raise QueryError(f"a query must be PQL text or an AST list, got {describe(query)}")
    if query[0] != "from":
        raise QueryError(
            f"a top-level AST query starts with [\"from\", <entity>, ...], got {describe(query)}"
        )
    return query


def _order_items(node: Any) -> list[tuple[str, str]]:
    if len(node) != 2 or not isinstance(node[1], list) or not node[1]:
        raise QueryError(f"order_by takes a list of fields: {describe(node)}")
    items: list[tuple[str, str]] = []
    for item in node[1]:
        if isinstance(item, str):
            items.append((item, "asc"))
        elif (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
              and item[1] in ("asc", "desc")):
            items.append((item[0], item[1]))
        else:
            raise QueryError(f"order_by item {describe(item)} must be a field or "
                             "[field, \"asc\"|\"desc\"]")
    return items


def _count(node: Any, what: str) -> int:
    if (len(node) != 2 or not isinstance(node[1], int) or isinstance(node[1], bool)
            or node[1] < 0):
        raise QueryError(f"{what} takes one non-negative integer: {describe(node)}")
    check_page(what, node[1])
    return int(node[1])


def split(node: list[Any], entities: EntityRegistry) -> Parts:
    """``["from", entity, query?, paging...]`` -> its :class:`Parts`."""
    if len(node) < 2:
        raise QueryError(f"'from' needs an entity: {describe(node)}")
    entity = entities.entity(node[1])
    body: Any = None
    order_by: list[tuple[str, str]] | None = None
    limit: int | None = None
    offset: int | None = None
    for clause in node[2:]:
        if not isinstance(clause, list) or not clause:
            raise QueryError(f"unexpected {describe(clause)} in 'from'")
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
                             f"{describe(clause)}")
    projection, filter_, group_by = _body(entity, body)
    return Parts(entity, projection, filter_, group_by, order_by, limit, offset)


def _body(entity: Entity, body: Any) -> tuple[list[Any] | None, Any, list[Any] | None]:
    """A ``from``'s query -> (projection, filter, group_by)."""
    projection: list[Any] | None = None
    group_by: list[Any] | None = None
    filter_: Any = body
    if isinstance(body, list) and body and body[0] == "extract":
        if len(body) < 2 or len(body) > 4:
            raise QueryError(f"extract takes fields, an optional query and an optional "
                             f"group_by: {describe(body)}")
        fields = body[1]
        projection = [fields] if isinstance(fields, str) else fields
        if not isinstance(projection, list):
            raise QueryError(f"extract's fields must be a list: {describe(body)}")
        if not projection:
            raise QueryError(f"extract needs at least one field (an empty projection such as "
                             f"{entity.name}[] selects nothing): {describe(body)}")
        filter_ = None
        for extra in body[2:]:
            if isinstance(extra, list) and extra and extra[0] == "group_by":
                if len(extra) < 2:
                    raise QueryError("group_by needs at least one field")
                group_by = list(extra[1:])
            elif filter_ is None:
                filter_ = extra
            else:
                raise QueryError(f"unexpected {describe(extra)} in extract")
    elif isinstance(body, list) and body and body[0] == "group_by":
        raise QueryError("group_by needs a projection: [\"extract\", [...], query, "
                         "[\"group_by\", ...]]")
    return projection, filter_, group_by


def legacy_select(node: list[Any]) -> list[Any] | None:
    """``["extract", f, ["select_resources", q]]`` (PuppetDB v3 style) -> a ``from``."""
    if (len(node) == 3 and node[0] == "extract" and isinstance(node[2], list) and node[2]
            and isinstance(node[2][0], str) and node[2][0].startswith("select_")):
        inner = node[2]
        return ["from", inner[0].removeprefix("select_"),
                ["extract", node[1], *inner[1:2]]]
    return None


def merge_paging(parts: Parts, limit: int | None, offset: int | None,
                 order_by: Sequence[tuple[str, str]] | None) -> Parts:
    """Paging given as parameters joins the query's own; given in both is an error."""
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
