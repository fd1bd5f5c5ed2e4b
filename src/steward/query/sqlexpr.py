"""SQL expressions that must mean the same on SQLite and PostgreSQL.

JSON access, regex matching, timestamp formatting and array membership are spelled
differently by the two backends. Each helper here builds the backend's spelling with
bound parameters only; the query compiler never sees a dialect difference beyond this
module.

A fact-like value (a fact, a leaf of the facts, a resource parameter, an event's old or new
value) is compared through a :class:`ValueAccess`: its string, number and boolean readings
are NULL unless the value has that JSON type, so ``value = 1`` never matches ``"1"``, and
numbers compare numerically.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from steward.query.errors import QueryError

PathElement = str | int


def sqlite_json_path(path: tuple[PathElement, ...]) -> str:
    """``$."os"."family"[0]``; SQLite's JSON path syntax has no escape for a double quote."""
    parts = ["$"]
    for element in path:
        if isinstance(element, int):
            parts.append(f"[{element}]")
        else:
            if '"' in element:
                raise QueryError(
                    f"path element {element!r}: names containing a double quote cannot be "
                    "queried"
                )
            parts.append(f'."{element}"')
    return "".join(parts)


def prefix_indexed_equals(column: ColumnElement[Any], value: str,
                          length: int) -> ColumnElement[bool]:
    """``column = value`` spelled so an index on ``substr(column, 1, length)`` is used.

    The constants are SQL text so the expression matches the index's. A value shorter
    than ``length`` is pinned by its prefix alone. A longer one also needs the full
    comparison, written ``column || ''`` because SQLite would otherwise substitute the
    value into ``substr(...)`` (constant propagation) and no longer see the indexed
    expression.
    """
    prefix = func.substr(column, literal_column("1"), literal_column(str(int(length))))
    if len(value) < length:
        return prefix == value
    whole = column.op("||")(literal_column("''")) == value
    return and_(prefix == value[:length], whole)


class ValueAccess(ABC):
    """Typed readings of one JSON value (see the module docstring)."""

    @abstractmethod
    def text(self) -> ColumnElement[Any]: ...

    def text_equals(self, value: str) -> ColumnElement[bool]:
        return self.text() == value

    @abstractmethod
    def number(self) -> ColumnElement[Any]: ...

    @abstractmethod
    def boolean_is(self, value: bool) -> ColumnElement[bool]: ...

    @abstractmethod
    def is_null(self) -> ColumnElement[bool]: ...

    @abstractmethod
    def json(self) -> ColumnElement[Any]:
        """The value itself, decoded to Python on output."""


class ColumnsValue(ValueAccess):
    """A value stored pre-split in ``value``/``value_type``/``value_string``/... columns."""

    def __init__(self, table: Any, *, indexed_prefix: int | None = None) -> None:
        self.c = table.c
        self.indexed_prefix = indexed_prefix

    def text(self) -> ColumnElement[Any]:
        return self.c.value_string  # type: ignore[no-any-return]

    def text_equals(self, value: str) -> ColumnElement[bool]:
        if self.indexed_prefix is None:
            return self.text() == value
        return prefix_indexed_equals(self.text(), value, self.indexed_prefix)

    def number(self) -> ColumnElement[Any]:
        return self.c.value_number  # type: ignore[no-any-return]

    def boolean_is(self, value: bool) -> ColumnElement[bool]:
        return self.c.value_boolean == value  # type: ignore[no-any-return]

    def is_null(self) -> ColumnElement[bool]:
        return self.c.value_type == "null"  # type: ignore[no-any-return]

    def json(self) -> ColumnElement[Any]:
        return self.c.value  # type: ignore[no-any-return]


class JsonPathValue(ValueAccess):
    """A value found at ``path`` inside a JSON document column."""

    def __init__(self, column: ColumnElement[Any], path: tuple[PathElement, ...],
                 dialect: str) -> None:
        self.column = column
        self.path = path
        self.dialect = dialect
        if dialect == "sqlite":
            self._sqlite_path = literal(sqlite_json_path(path), Text())
        else:
            self._pg_path = bindparam(
                None, [str(p) for p in path], type_=postgresql.ARRAY(Text()), unique=True
            )

    def _kind(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return func.json_type(self.column, self._sqlite_path)
        return func.jsonb_typeof(self._pg_value())

    def _pg_value(self) -> ColumnElement[Any]:
        return self.column.op("#>")(self._pg_path)

    def _pg_text(self) -> ColumnElement[Any]:
        return self.column.op("#>>")(self._pg_path)

    # text() and number() are built once: GROUP BY and ORDER BY must repeat the very same
    # expressions (bound parameters included) for PostgreSQL to see them as grouped.
    @functools.cached_property
    def _text(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return case(
                (self._kind() == "text", func.json_extract(self.column, self._sqlite_path)),
                else_=None,
            )
        return case((self._kind() == "string", self._pg_text()), else_=None)

    @functools.cached_property
    def _number(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return case(
                (self._kind().in_(["integer", "real"]),
                 func.json_extract(self.column, self._sqlite_path)),
                else_=None,
            )
        return case((self._kind() == "number", cast(self._pg_text(), Float())), else_=None)

    def text(self) -> ColumnElement[Any]:
        return self._text

    def number(self) -> ColumnElement[Any]:
        return self._number

    def boolean_is(self, value: bool) -> ColumnElement[bool]:
        word = "true" if value else "false"
        if self.dialect == "sqlite":
            return self._kind() == word
        return and_(self._kind() == "boolean", self._pg_text() == word)

    def is_null(self) -> ColumnElement[bool]:
        if self.dialect == "sqlite":
            kind = self._kind()
            return or_(kind.is_(None), kind == "null")
        return or_(self._pg_value().is_(None), self._kind() == "null")

    def json(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return type_coerce(self.column.op("->")(self._sqlite_path), JSON())
        return type_coerce(self._pg_value(), postgresql.JSONB())


_REGEX_META = frozenset(".^$*+?{}[]\\|()")


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (code point order)."""
    code = ord(prefix[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:
        code = 0xE000
    return prefix[:-1] + chr(code) if code <= 0x10FFFF else None


def regex_match(column: ColumnElement[Any], pattern: str, dialect: str, *,
                table_column: bool = False) -> ColumnElement[bool]:
    """``column`` matches ``pattern`` (unanchored search, as both backends do).

    A pattern that is only literal text, optionally anchored with ``^`` and followed by
    ``.*``, means exactly a substring or prefix test, which runs in C instead of calling a
    regex per row (SQLite calls Python) and, for a prefix on a table column, can use an
    index: ``certname ~ "^web"`` becomes ``certname >= 'web' AND certname < 'wec'``. The
    range is exact because text sorts by code point on both backends ("C" collation on
    PostgreSQL, byte order in SQLite); computed text might not, so it gets ``substr``.
    """
    core = pattern
    anchored = core.startswith("^")
    if anchored:
        core = core[1:]
    while core.endswith(".*") and not core.endswith("\\.*"):
        core = core[:-2]
    if not core or any(char in _REGEX_META for char in core):
        return column.regexp_match(pattern)
    if anchored:
        successor = _successor(core)
        if table_column and successor is not None:
            return and_(column >= core, column < successor)
        return func.substr(column, 1, len(core)) == core
    finder = func.instr(column, core) if dialect == "sqlite" else func.strpos(column, core)
    return finder > 0


def to_char(column: ColumnElement[Any], fmt: Any, dialect: str) -> ColumnElement[str]:
    """PostgreSQL's ``to_char`` of a UTC timestamp; ``fmt`` is a bound parameter."""
    if dialect == "sqlite":
        return func.steward_to_char(column, fmt, type_=Text())
    return func.to_char(func.timezone("UTC", column), fmt, type_=Text())


def array_any(column: ColumnElement[Any], dialect: str, *, equals: str | None = None,
              matches: str | None = None) -> ColumnElement[bool]:
    """Some element of the JSON string array ``column`` equals / matches the given text."""
    if dialect == "sqlite":
        elements = func.json_each(column).table_valued("value")
    else:
        elements = func.jsonb_array_elements_text(column).table_valued("value")
    element = elements.c.value
    condition = element == equals if equals is not None else element.regexp_match(matches)
    return exists(select(literal(1)).select_from(elements).where(condition))
