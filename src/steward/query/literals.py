"""A query's literals checked against the field they meet: timestamps, numbers, regexes,
and comparisons on JSON values by the literal's own type."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement

from steward.query.errors import QueryError, describe
from steward.query.sqlexpr import ColumnsValue, ValueAccess, regex_match

#: PQL's comparison operators (``~`` aside) as Python's, which SQLAlchemy overloads.
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def timestamp(field_name: str, value: Any) -> datetime:
    """An ISO 8601 literal as an aware UTC datetime (naive means UTC)."""
    if not isinstance(value, str):
        raise QueryError(f"field {field_name!r} is a timestamp; compare it with an ISO 8601 "
                         f"string, not {describe(value)}")
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


def is_number(value: Any) -> bool:
    """An int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def regex(field_name: str, value: Any) -> str:
    """A regex literal that compiles, so a bad one is the author's error, not the database's."""
    if not isinstance(value, str):
        raise QueryError(f"the regex for {field_name!r} must be a string, not "
                         f"{describe(value)}")
    try:
        re.compile(value)
    except re.error as exc:
        raise QueryError(f"invalid regular expression {value!r} for {field_name!r}: "
                         f"{exc}") from None
    return value


def value_condition(field_name: str, access: ValueAccess, op: str, value: Any,
                    dialect: str) -> ColumnElement[bool]:
    """A comparison on a JSON value: by the literal's type (see sqlexpr)."""
    if isinstance(value, bool):
        if op != "=":
            raise QueryError(f"{field_name!r}: booleans can only be compared with =")
        return access.boolean_is(value)
    if is_number(value):
        if op == "~":
            raise QueryError(f"{field_name!r}: ~ takes a string regex, not {value!r}")
        return COMPARE[op](access.number(), value)  # type: ignore[no-any-return]
    if isinstance(value, str):
        if op == "~":
            return regex_match(access.text(), regex(field_name, value), dialect,
                               table_column=isinstance(access, ColumnsValue))
        if op == "=":
            return access.text_equals(value)
        return COMPARE[op](access.text(), value)  # type: ignore[no-any-return]
    raise QueryError(f"{field_name!r} can be compared with a string, number or boolean, not "
                     f"{describe(value)}")
