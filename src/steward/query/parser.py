"""PQL text to PuppetDB's AST (the JSON list form), with errors a person can act on.

The AST is what PuppetDB's own PQL transform produces, so a query written either way means
the same thing: ``nodes[certname] { certname ~ "^web" }`` becomes
``["from", "nodes", ["extract", ["certname"], ["~", "certname", "^web"]]]``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from steward.query.errors import QueryError, QuerySyntaxError
from steward.query.limits import check_ast, check_text, parse_float, parse_int, parse_page

#: How expected terminals are named in error messages (literal ones are shown quoted).
_TERMINAL_WORDS = {
    "NAME": "a field or entity name",
    "INT": "a number",
    "FLOAT": "a number",
    "DQSTRING": "a string",
    "SQSTRING": "a string",
    "INEQ": "a comparison (<, <=, >, >=)",
    "$END": "the end of the query",
}


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("steward.query").joinpath("pql.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=False)


def parse_pql(text: str) -> list[Any]:
    """Parse a PQL query into PuppetDB's AST; raises :class:`QuerySyntaxError`."""
    check_text(text)
    try:
        tree = _parser().parse(text)
        result: list[Any] = _ToAst().transform(tree)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, QueryError):
            raise exc.orig_exc from None
        raise
    check_ast(result)  # the AST's own limits, whoever compiles it
    return result


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return name.lower()


def _expected_words(names: set[str] | frozenset[str]) -> str:
    words = sorted({_describe_terminal(n) for n in names})
    if not words:
        return "nothing more"
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


def _excerpt(text: str, line: int, column: int) -> str:
    lines = text.splitlines() or [""]
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"\n  {source}\n  {' ' * (max(column, 1) - 1)}^"


def _syntax_error(text: str, exc: UnexpectedInput) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        found = "the end of the query"
        expected = _expected_words(set(exc.expected))
    elif isinstance(exc, UnexpectedToken):
        line, column = exc.line, exc.column
        token = exc.token
        if token.type == "$END":
            found = "the end of the query"
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        else:
            found = repr(str(token))
        expected = _expected_words(set(exc.accepts or exc.expected))
    elif isinstance(exc, UnexpectedCharacters):
        line, column = exc.line, exc.column
        pos = exc.pos_in_stream or 0
        found = repr(text[pos]) if pos < len(text) else "?"
        expected = _expected_words(set(exc.allowed or ()))
    else:  # pragma: no cover - lark raises only the three above
        line, column, found, expected = 1, 1, "?", "valid PQL"
    message = (
        f"PQL syntax error at line {line}, column {column}: expected {expected}, "
        f"found {found}{_excerpt(text, line, column)}"
    )
    return QuerySyntaxError(message, line=line, column=column)


def _string_error(token: Token, problem: str) -> QuerySyntaxError:
    line, column = token.line or 1, token.column or 1
    return QuerySyntaxError(
        f"PQL syntax error at line {line}, column {column}: {problem} in string {token!s}",
        line=line,
        column=column,
    )


@v_args(inline=True)
class _ToAst(Transformer[Token, Any]):
    """Tree to AST, following PuppetDB's ``pql/transform.clj``."""

    def start(self, query: list[Any]) -> list[Any]:
        return query

    # -- queries -----------------------------------------------------------------------
    def query(self, entity: Token, *rest: Any) -> list[Any]:
        projection: list[Any] | None = None
        if rest and isinstance(rest[0], tuple) and rest[0][0] == "projection":
            projection = rest[0][1]
            rest = rest[1:]
        filter_, group_by, paging = rest[0]
        node: list[Any] = ["from", str(entity)]
        if projection is not None:
            extract: list[Any] = ["extract", projection]
            if filter_ is not None:
                extract.append(filter_)
            if group_by is not None:
                extract.append(group_by)
            node.append(extract)
        else:
            if group_by is not None:
                raise _string_error(entity, "'group by' needs a projection ([...]) of the"
                                    " query")
            if filter_ is not None:
                node.append(filter_)
        node.extend(paging)
        return node

    def projection(self, *items: Any) -> tuple[str, list[Any]]:
        return ("projection", [i for i in items if i is not None])

    def function(self, name: Token, *args: Any) -> list[Any]:
        return ["function", str(name), *(str(a) if isinstance(a, Token) else a for a in args
                                          if a is not None)]

    def where(self, *parts: Any) -> tuple[Any, Any, list[Any]]:
        filter_: Any = None
        group_by: Any = None
        paging: list[Any] = []
        for part in parts:
            if part is None:
                continue
            if isinstance(part, tuple):
                kind, value = part
                if kind == "group_by":
                    group_by = value
                else:
                    paging.append(value)
            else:
                filter_ = part
        return filter_, group_by, paging

    def group_by(self, *items: Any) -> tuple[str, list[Any]]:
        return ("group_by", ["group_by", *(str(i) if isinstance(i, Token) else i
                                           for i in items)])

    def order_by(self, *params: Any) -> tuple[str, list[Any]]:
        return ("paging", ["order_by", list(params)])

    def order_param(self, field: Token, direction: Token | None = None) -> Any:
        return [str(field), str(direction)] if direction is not None else str(field)

    def limit(self, value: Token) -> tuple[str, list[Any]]:
        return ("paging", ["limit", parse_page(str(value), "limit")])

    def offset(self, value: Token) -> tuple[str, list[Any]]:
        return ("paging", ["offset", parse_page(str(value), "offset")])

    # -- boolean structure ---------------------------------------------------------------
    def or_(self, *terms: Any) -> list[Any]:
        return ["or", *terms]

    def and_(self, *terms: Any) -> list[Any]:
        return ["and", *terms]

    def not_(self, term: Any) -> list[Any]:
        return ["not", term]

    def subquery(self, entity: Token, where: tuple[Any, Any, list[Any]]) -> list[Any]:
        filter_, group_by, paging = where
        if group_by is not None or paging:
            raise _string_error(entity, "an implicit subquery cannot have 'group by', "
                                "'order by', 'limit' or 'offset'")
        return ["subquery", str(entity)] + ([filter_] if filter_ is not None else [])

    # -- conditions ------------------------------------------------------------------------
    def eq(self, field: Token, value: Any) -> list[Any]:
        return ["=", str(field), value]

    def ne(self, field: Token, value: Any) -> list[Any]:
        return ["not", ["=", str(field), value]]

    def regex(self, field: Token, value: str) -> list[Any]:
        return ["~", str(field), value]

    def not_regex(self, field: Token, value: str) -> list[Any]:
        return ["not", ["~", str(field), value]]

    def regex_array(self, field: Token, values: list[str]) -> list[Any]:
        return ["~>", str(field), values]

    def inequality(self, field: Token, op: Token, value: Any) -> list[Any]:
        return [str(op), str(field), value]

    def is_null(self, field: Token) -> list[Any]:
        return ["null?", str(field), True]

    def is_not_null(self, field: Token) -> list[Any]:
        return ["null?", str(field), False]

    def in_query(self, fields: Any, query: list[Any]) -> list[Any]:
        return ["in", fields, query]

    def in_array(self, fields: Any, values: list[Any]) -> list[Any]:
        return ["in", fields, ["array", values]]

    def in_field(self, name: Token) -> str:
        return str(name)

    def in_field_list(self, *names: Token) -> list[str]:
        return [str(n) for n in names]

    def regex_list(self, *values: str) -> list[str]:
        return list(values)

    def literal_list(self, *values: Any) -> list[Any]:
        return list(values)

    # -- literals --------------------------------------------------------------------------
    def integer(self, token: Token) -> int:
        return parse_int(str(token))

    def real(self, token: Token) -> float:
        return parse_float(str(token))

    def true(self, _token: Token) -> bool:
        return True

    def false(self, _token: Token) -> bool:
        return False

    def dqstring(self, token: Token) -> str:
        try:
            value = json.loads(str(token))
        except json.JSONDecodeError as exc:
            raise _string_error(token, f"invalid escape ({exc.msg})") from None
        if not isinstance(value, str):  # pragma: no cover - the token is a JSON string
            raise _string_error(token, "not a string")
        return value

    def sqstring(self, token: Token) -> str:
        return str(token)[1:-1].replace("\\'", "'")
