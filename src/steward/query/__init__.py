"""PQL, PuppetDB's query language, over Steward's store: parse, validate, compile, run.

``parse_pql`` turns text into PuppetDB's AST; :class:`Compiler` turns an AST (or text)
into one SQLAlchemy ``select`` with bound parameters for SQLite or PostgreSQL; ``fetch``
runs it and returns rows shaped like PuppetDB's v4 responses. docs/query.md is the
reference.
"""

from __future__ import annotations

from steward.query.compiler import CompiledQuery, Compiler
from steward.query.entities import EntityRegistry, iso, path_key, puppet_type
from steward.query.errors import QueryError, QuerySyntaxError
from steward.query.execute import fetch
from steward.query.parser import parse_pql

__all__ = [
    "CompiledQuery",
    "Compiler",
    "EntityRegistry",
    "QueryError",
    "QuerySyntaxError",
    "fetch",
    "iso",
    "parse_pql",
    "path_key",
    "puppet_type",
]
