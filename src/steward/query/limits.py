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


def loads_ast(text: str, name: str = "query", max_chars: int = MAX_QUERY_CHARS) -> Any:
    """JSON text of an AST (or a parameter such as ``order_by``, or a whole request body of
    query parameters), within the limits."""
    check_text(text, max_chars, name)
    try:
        return json.loads(text)
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
