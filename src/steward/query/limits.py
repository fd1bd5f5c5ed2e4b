"""Query limits: no PQL text or AST may crash the server or make it do unbounded work.

The parser's transformer, the compiler and Python's own ``json`` decoder recurse over a query,
so a query nested thousands of levels deep would otherwise raise ``RecursionError`` (a 500);
a number past 64 bits overflows the database driver; a limit of 10^20 is no limit. Each check
runs before the step it protects, iteratively, and raises :class:`QueryLimitError` (a 400
everywhere) naming the limit (docs/query.md#limits).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from steward.query.errors import QueryError

#: Characters of one query (PQL text or AST JSON).
MAX_QUERY_CHARS: Final = 64 * 1024
#: Nesting of brackets, braces and parentheses in the text, and of lists in the AST.
MAX_DEPTH: Final = 64
#: Lists and values in one AST.
MAX_AST_NODES: Final = 10_000
#: The largest limit or offset (a signed 32-bit integer, as PuppetDB's paging).
MAX_PAGE: Final = 2**31 - 1
_INT_RANGE: Final = (-(2**63), 2**63 - 1)
#: Digits of the longest signed 64-bit integer (with leading zeros allowed for: 2**63 has 19).
_INT_DIGITS: Final = 40
_OPENERS: Final = frozenset("([{")
_CLOSERS: Final = frozenset(")]}")


class QueryLimitError(QueryError):
    """A query over one of the limits."""


def check_text(text: str, max_chars: int = MAX_QUERY_CHARS, what: str = "the query") -> None:
    """Length and bracket nesting of PQL or AST JSON text, before anything parses it."""
    if len(text) > max_chars:
        raise QueryLimitError(f"{what} is {len(text)} characters; the limit is "
                              f"{max_chars} (docs/query.md#limits)")
    depth = 0
    quote: str | None = None
    escaped = False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _OPENERS:
            depth += 1
            if depth > MAX_DEPTH:
                raise QueryLimitError(f"{what} nests brackets more than {MAX_DEPTH} levels "
                                      "deep (docs/query.md#limits)")
        elif char in _CLOSERS:
            depth -= 1


def _read_int(text: str, what: str) -> int:
    """``int(text)``, refused by its length first: past 4,300 digits ``int()`` itself raises
    ``ValueError`` (a 500), and far fewer are out of any range of a query."""
    if len(text.lstrip("+-")) > _INT_DIGITS:
        raise QueryLimitError(f"{what} {text[:24]}... ({len(text)} characters) is out of range "
                              "(a query's integers are signed 64-bit)")
    return int(text)


def parse_int(text: str, what: str = "the number") -> int:
    """An integer of a query's text (PQL or JSON), a signed 64-bit one."""
    value = _read_int(text, what)
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise QueryLimitError(f"{what} {value} is out of range (a query's integers are "
                              "signed 64-bit)")
    return value


def parse_page(text: str, what: str) -> int:
    """A ``limit`` or ``offset`` of a query's text, in ``0..MAX_PAGE``."""
    value = _read_int(text, what)
    check_page(what, value)
    return value


def parse_float(text: str) -> float:
    """A real number of a query's text; ``1e999`` is infinite, which no database stores."""
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 30 else f"{text[:24]}..."
        raise QueryLimitError(f"the number {shown} is out of range (not a finite number)")
    return value


def _no_constant(name: str) -> Any:
    raise QueryLimitError(f"{name} is not a number a query may hold (JSON has no {name})")


def loads_ast(text: str, name: str = "query", max_chars: int = MAX_QUERY_CHARS) -> Any:
    """JSON text of an AST (or a parameter such as ``order_by``, or a whole request body of
    query parameters), within the limits: ``NaN``, ``Infinity``, ``1e999`` and integers past
    64 bits are refused as they are read."""
    check_text(text, max_chars, name)
    try:
        return json.loads(text, parse_int=parse_int, parse_float=parse_float,
                          parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise QueryError(f"{name} is not valid JSON: {exc.msg} at column {exc.colno}") \
            from None


def check_ast(ast: Any) -> None:
    """Depth, size and values of an AST, walked without recursion."""
    pending: list[tuple[Any, int]] = [(ast, 0)]
    nodes = 0
    while pending:
        value, depth = pending.pop()
        nodes += 1
        if nodes > MAX_AST_NODES:
            raise QueryLimitError(f"the query has more than {MAX_AST_NODES} terms "
                                  "(docs/query.md#limits)")
        if isinstance(value, list | dict):
            if depth >= MAX_DEPTH:
                raise QueryLimitError(f"the query is nested more than {MAX_DEPTH} levels deep "
                                      "(docs/query.md#limits)")
            items = value if isinstance(value, list) else [*value, *value.values()]
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
                raise QueryLimitError(f"the number {value} is out of range (a query's integers "
                                      "are signed 64-bit)")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise QueryLimitError(f"the number {value} is not finite")
        elif isinstance(value, str):
            if len(value) > MAX_QUERY_CHARS:
                raise QueryLimitError(f"a string of the query is {len(value)} characters; the "
                                      f"limit is {MAX_QUERY_CHARS}")
        else:
            raise QueryError(f"a query's AST cannot hold {type(value).__name__} values")


def check_page(what: str, value: int) -> None:
    """A limit or offset within ``0..MAX_PAGE``."""
    if value > MAX_PAGE:
        raise QueryLimitError(f"{what} {value} is out of range: at most {MAX_PAGE}")
    if value < 0:
        raise QueryLimitError(f"{what} {value} is out of range: at least 0")


def page_param(what: str, value: Any) -> int | None:
    """A ``limit`` or ``offset`` parameter as a client sends it (a GET parameter's text, or
    a POST body's JSON number or string): an integer in ``0..MAX_PAGE``, or None if absent.
    ``true``, ``1.5`` and ``1e400`` are refused, not truncated or overflowed."""
    if value is None or value == "":
        return None
    number: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            number = _read_int(text, what)
    if number is None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "..."
        raise QueryError(f"{what} must be an integer from 0 to {MAX_PAGE}, not {shown}")
    check_page(what, number)
    return number
