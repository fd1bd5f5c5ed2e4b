"""The entity framework: what a PQL entity is made of, and the building blocks of one.

A field knows its type (which decides the operators and literals it accepts), how to read
it in SQL for a given :class:`Scope` (one SELECT level, with its own table aliases), and
how to render it in a response. Joins are added only for tables a query actually touches.

No entity is defined here: the packages owning the tables define theirs (the store
PuppetDB's, access the audit log, the pipeline its changes and deployments, tasks the jobs)
and register them in an :class:`EntityRegistry`, which the composition root (the server,
the application) builds from the owners present. Tables are given by name
(``tables["nodes"]``), so the query layer imports none of its owners. Names are listed
sorted, so error messages and descriptions are stable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Table, true

from steward.clock import iso as clock_iso
from steward.query.errors import QueryError
from steward.query.sqlexpr import ColumnsValue, JsonPathValue, PathElement, ValueAccess


class Kind(Enum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    #: A JSON value compared by its type (facts, leaves, parameters, event values).
    VALUE = "value"
    #: A fact path: an array, matched with ``=`` (an array literal) or ``~>``.
    PATH = "path"
    #: A whole JSON document (``facts``, ``parameters``): projected, only tested for null.
    DOCUMENT = "document"
    #: Filled from other rows after the query (``resource_events``, catalog ``resources``).
    EXPANDED = "expanded"
    #: Filter-only fields with their own meaning (``tag``, ``node_state``, ``latest_report?``).
    SPECIAL = "special"


class Scope:
    """One SELECT level: its entity, lazily created table aliases, and the joins they need."""

    def __init__(self, entity: Entity, tables: Mapping[str, Table], dialect: str,
                 entities: EntityRegistry) -> None:
        self.entity, self.tables, self.dialect = entity, tables, dialect
        #: The registry the query's subqueries resolve their entities in.
        self.entities = entities
        self._aliases: dict[str, FromClause] = {}
        #: Set when the query names deactivated/expired/node_state: no implicit active filter.
        self.names_node_state = False
        #: Expressions built once per scope, so SELECT, GROUP BY and ORDER BY share them
        #: (and their bound parameters, which PostgreSQL needs to see as the same).
        self.memo: dict[str, ColumnElement[Any]] = {}
        #: Typed readings of VALUE fields, likewise built once per scope.
        self.values: dict[str, ValueAccess] = {}

    def t(self, name: str) -> FromClause:
        """The alias of table ``name`` in this scope, joined in if the entity can join it."""
        alias = self._aliases.get(name)
        if alias is None:
            if name != self.entity.base and name not in self.entity.joins:
                raise KeyError(f"entity {self.entity.name} cannot reach table {name}")
            alias = self._aliases[name] = self.tables[name].alias()
        return alias

    def c(self, table: str, column: str) -> ColumnElement[Any]:
        return self.t(table).c[column]

    def from_clause(self) -> FromClause:
        source = self.t(self.entity.base)
        for name, on in self.entity.joins.items():
            if name in self._aliases:
                source = source.join(self._aliases[name], on(self))
        return source

    def fresh(self, name: str) -> FromClause:
        """A new alias of ``name`` for a subquery of this scope's own making."""
        return self.tables[name].alias()


SqlOf = Callable[[Scope], ColumnElement[Any]]
#: Output rendering: (selected value, the raw row with hidden columns) -> JSON value.
Render = Callable[[Any, Mapping[str, Any]], Any]
FilterBuilder = Callable[[ValueAccess], ColumnElement[bool]]


@dataclass(frozen=True)
class Nested:
    """An EXPANDED field filled after the query with rows of another entity (a report's
    events), wrapped as PuppetDB does: ``{"href": ..., "data": [...]}``.

    The children are the rows of ``entity`` (projected to ``fields``) whose column
    ``column`` is one of the parents' hidden ``key``; each goes to the parent whose hidden
    ``group_of`` equals the child's ``group_field``, which is dropped from the child.
    """

    entity: str
    fields: tuple[str, ...]
    column: str
    key: str
    group_field: str
    group_of: str
    #: The ``href`` of a parent's collection, from the parent's raw row.
    href: Callable[[Mapping[Any, Any]], str]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    #: The column or expression; None for fields rendered only from hidden columns.
    sql: SqlOf | None = None
    #: A cheaper join key for ``in`` subqueries between entities keyed by node id.
    key: SqlOf | None = None
    #: For VALUE fields: typed readings of the value.
    value: Callable[[Scope], ValueAccess] | None = None
    #: For VALUE fields whose filters go through another table (inventory's facts.*).
    value_filter: Callable[[Scope, FilterBuilder], ColumnElement[bool]] | None = None
    #: For SPECIAL fields: (scope, operator, literal) -> condition.
    special: Callable[[Scope, str, Any], ColumnElement[bool]] | None = None
    filterable: bool = True
    projectable: bool = True
    render: Render | None = None
    #: Hidden columns ``render`` (or ``nested``) reads from the raw row.
    needs: tuple[str, ...] = ()
    #: For EXPANDED fields without ``sql`` or ``render``: the rows that fill them.
    nested: Nested | None = None
    #: Indexed by this many leading characters (the owner's prefix index).
    prefix_index: int | None = None
    #: Marks deactivated/expired/node_state: naming it lifts the implicit active filter.
    node_state: bool = False
    #: False when the column is never NULL: count(field) is then count(*).
    nullable: bool = True


@dataclass(frozen=True)
class DottedSpec:
    """Paths below a prefix (``facts.os.family``): a VALUE field made on demand."""

    make: Callable[[str, tuple[PathElement, ...]], Field]


@dataclass
class Entity:
    name: str
    base: str
    fields: dict[str, Field]
    #: Output fields when the query has no projection, in PuppetDB's order.
    default_fields: tuple[str, ...]
    #: Tie-breaking order that makes every response deterministic.
    natural_order: tuple[SqlOf, ...]
    joins: dict[str, Callable[[Scope], ColumnElement[bool]]] = field(default_factory=dict)
    hidden: dict[str, SqlOf] = field(default_factory=dict)
    dotted: dict[str, DottedSpec] = field(default_factory=dict)
    #: The implicit filter (only live nodes), lifted when the query names a field marked
    #: ``node_state``; None for entities that are never filtered so.
    active: Callable[[Scope], ColumnElement[bool]] | None = None
    distinct: bool = False
    where: Callable[[Scope], ColumnElement[bool]] | None = None

    @property
    def active_only(self) -> bool:
        return self.active is not None

    def field(self, name: str) -> Field:
        found = self.fields.get(name)
        if found is not None:
            return found
        prefix, dot, rest = name.partition(".")
        if dot and prefix in self.dotted:
            return self.dotted[prefix].make(name, parse_path(name, rest))
        valid = ", ".join(sorted(self.fields))
        dotted = "".join(f", {p}.<path>" for p in sorted(self.dotted))
        raise QueryError(f"unknown field {name!r} for entity {self.name!r}; valid fields: "
                         f"{valid}{dotted}")


# -- paths --------------------------------------------------------------------------------

PATH_SEPARATOR = "#~"
_SEGMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^.\[\]"]+)')
_INDEX = re.compile(r"\[(\d+)\]")


def parse_path(field_name: str, text: str) -> tuple[PathElement, ...]:
    """``os.family`` -> ("os", "family"); ``models[0]`` -> ("models", 0); quoted segments."""
    path: list[PathElement] = []
    pos = 0
    while True:
        match = _SEGMENT.match(text, pos)
        if match is None:
            raise QueryError(f"field {field_name!r}: cannot read the path at {text[pos:]!r}")
        quoted, plain = match.groups()
        path.append(quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted is not None
                    else plain)
        pos = match.end()
        while (index := _INDEX.match(text, pos)) is not None:
            path.append(int(index.group(1)))
            pos = index.end()
        if pos == len(text):
            return tuple(path)
        if text[pos] != ".":
            raise QueryError(f"field {field_name!r}: unexpected {text[pos]!r} in the path")
        pos += 1


def path_key(path: list[Any] | tuple[Any, ...]) -> str:
    """How a path is stored for matching: elements joined with ``#~`` (as PuppetDB does)."""
    return PATH_SEPARATOR.join(str(p) for p in path)


# -- rendering -----------------------------------------------------------------------------


def iso(value: datetime | str | None) -> str | None:
    """Timestamps as PuppetDB prints them: UTC, milliseconds, ``Z``.

    SQLite's stored form (``2024-05-06 10:00:02.123456``, always UTC) is converted as text.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:23]}Z"
        value = datetime.fromisoformat(value)
    return clock_iso(value, timespec="milliseconds")


def _render_timestamp(value: Any, _row: Mapping[str, Any]) -> Any:
    return iso(value)


def _render_bool(value: Any, _row: Mapping[str, Any]) -> Any:
    return None if value is None else bool(value)


def _render_int(value: Any, _row: Mapping[str, Any]) -> Any:
    return None if value is None else int(value)


# -- field constructors ---------------------------------------------------------------------


def col(table: str, column: str) -> SqlOf:
    return lambda s: s.c(table, column)


def string(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.STRING, sql=col(table, column or name), **kw)


def timestamp(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.TIMESTAMP, sql=col(table, column or name),
                 render=_render_timestamp, **kw)


def boolean(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.BOOLEAN, sql=col(table, column or name), render=_render_bool,
                 **kw)


def number(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.NUMBER, sql=col(table, column or name), render=_render_int, **kw)


def document(name: str, table: str, column: str | None = None) -> Field:
    return Field(name, Kind.DOCUMENT, sql=col(table, column or name))


def columns_value(table: str, *, indexed_prefix: int | None = None) -> Field:
    """A value split into typed columns; ``indexed_prefix``: the leading characters of
    strings the owner's index covers."""
    return Field("value", Kind.VALUE, sql=col(table, "value"), nullable=False,
                 value=lambda s: ColumnsValue(s.t(table), indexed_prefix=indexed_prefix))


def json_value(name: str, table: str, column: str,
               path: tuple[PathElement, ...] = ()) -> Field:
    def access(s: Scope) -> ValueAccess:
        return JsonPathValue(s.c(table, column), path, s.dialect)

    return Field(name, Kind.VALUE, sql=lambda s: access(s).json(), value=access)


def active_filter(s: Scope) -> ColumnElement[bool]:
    """The scope's entity's implicit filter (see :attr:`Entity.active`)."""
    if s.entity.active is None:
        raise QueryError(f"entity {s.entity.name!r} has no node state")
    return s.entity.active(s)


def requires_table(table: str, message: str) -> Callable[[Scope], ColumnElement[bool]]:
    """An ``Entity.where`` for an entity whose table a server may not have registered: a
    query error saying what it needs (``message``), not a crash."""
    def check(s: Scope) -> ColumnElement[bool]:
        if table not in s.tables:
            raise QueryError(message)
        return true()

    return check


@functools.lru_cache(maxsize=1024)
def puppet_type(name: str) -> str:
    """PuppetDB's spelling of a resource type: each ``::`` segment capitalised."""
    return "::".join(segment[:1].upper() + segment[1:] for segment in name.split("::"))


# -- the registry ---------------------------------------------------------------------------

#: Pairs of (outer field, inner field) relating two entities in an implicit subquery.
Pairs = tuple[tuple[str, str], ...]


class EntityRegistry:
    """Entities by name, and how implicit subqueries (``nodes { facts { ... } }``) join them.

    A relation is looked up in this order: pairs registered for the two entities
    (:meth:`relate`), a link to a target entity by one of its fields (:meth:`link`), then a
    field both entities share (:meth:`share`), each in registration order.
    """

    def __init__(self) -> None:
        self._entities: dict[str, Entity] = {}
        self._relations: dict[tuple[str, str], Pairs] = {}
        self._links: list[tuple[str, str, str]] = []
        self._shared: list[str] = []

    def register(self, entity: Entity) -> None:
        """Add ``entity``; registering the same object again is a no-op (an application
        started twice on one store), another entity under a taken name an error."""
        known = self._entities.get(entity.name)
        if known is not None and known is not entity:
            raise ValueError(f"entity {entity.name!r} is already registered")
        self._entities[entity.name] = entity

    def relate(self, outer: str, inner: str, pairs: Pairs) -> None:
        """``outer { inner { ... } }`` matches rows whose ``pairs`` of fields are equal."""
        self._relations[(outer, inner)] = pairs

    def link(self, target: str, key: str, via: str) -> None:
        """Any entity with a field ``via`` relates to ``target`` by ``target``'s ``key``
        (``environment`` to ``environments.name``), in both directions."""
        if (target, key, via) not in self._links:
            self._links.append((target, key, via))

    def share(self, name: str) -> None:
        """Two entities that both have field ``name`` relate by it (``certname``)."""
        if name not in self._shared:
            self._shared.append(name)

    def entity(self, name: Any) -> Entity:
        """An entity by name; PuppetDB's endpoint spellings (``fact-contents``) are
        accepted."""
        found = self._entities.get(name.replace("-", "_")) if isinstance(name, str) else None
        if found is None:
            raise QueryError(f"unknown entity {name!r}; valid entities: "
                             f"{', '.join(self.names())}")
        return found

    def relation(self, outer: Entity, inner: Entity) -> Pairs:
        """The fields relating ``outer`` to ``inner`` in an implicit subquery."""
        found = self._relations.get((outer.name, inner.name))
        if found is not None:
            return found
        for target, key, via in self._links:
            if inner.name == target and via in outer.fields:
                return ((via, key),)
            if outer.name == target and via in inner.fields:
                return ((key, via),)
        for name in self._shared:
            if name in outer.fields and name in inner.fields:
                return ((name, name),)
        raise QueryError(
            f"{outer.name!r} has no implicit relationship with {inner.name!r}; use an explicit "
            f"subquery: <field> in {inner.name}[<field>] {{ ... }}"
        )

    def names(self) -> list[str]:
        return sorted(self._entities)

    def items(self) -> list[tuple[str, Entity]]:
        """``(name, entity)`` sorted by name."""
        return [(name, self._entities[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entities

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entities)
