"""Errors a query's author can fix: bad syntax, unknown entities or fields, wrong types."""

from __future__ import annotations

import json
from typing import Any

from steward.errors import StewardError


class QueryError(StewardError):
    """A query that cannot run as written; the message names the entity, field or value."""

    exit_code = 65


class QuerySyntaxError(QueryError):
    """PQL text that does not parse; carries the 1-based line and column of the problem."""

    def __init__(self, message: str, *, line: int, column: int) -> None:
        self.line = line
        self.column = column
        super().__init__(message)


def describe(node: Any) -> str:
    """A query fragment as short JSON for an error message: enough to find it, never a page."""
    text = json.dumps(node, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."
