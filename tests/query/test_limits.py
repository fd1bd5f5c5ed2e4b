"""Query limits (docs/query.md#limits): each is a QueryError naming the limit, raised before
the step it protects, so no query text or AST reaches a RecursionError, an int() past 4,300
digits, an infinite float or a database integer overflow. The server's side of the same
guarantee (a 400, never a 5xx) is tests/security/test_pql_fuzz.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from steward.access import audit_entity
from steward.pipeline import entities as pipeline_entities
from steward.query import Compiler, QueryError, parse_pql
from steward.query.limits import (
    MAX_AST_NODES,
    MAX_DEPTH,
    MAX_PAGE,
    MAX_QUERY_CHARS,
    QueryLimitError,
    check_ast,
    check_text,
    loads_ast,
    page_param,
)
from steward.store.entities import store_entities
from steward.store.models import TABLES
from steward.tasks import entities as task_entities
from tests.query.conftest import Seeded

DIGITS = "1" * 5000  # past int()'s own 4,300-digit limit: a ValueError there


@pytest.mark.parametrize(("text", "message"), [
    ("x" * (MAX_QUERY_CHARS + 1), f"the limit is {MAX_QUERY_CHARS}"),
    ("nodes[certname] { " + "(" * (MAX_DEPTH + 1) + "certname = 'a'" + ")" * (MAX_DEPTH + 1)
     + " }", f"nests brackets more than {MAX_DEPTH} levels"),
    ("nodes[certname] { certname in " * 2000 + "nodes[certname] {}" + " }" * 2000,
     f"nests brackets more than {MAX_DEPTH} levels"),
    ("nodes[certname] { limit 100000000000000000000 }", f"at most {MAX_PAGE}"),
    (f"nodes[certname] {{ limit {MAX_PAGE + 1} }}", f"at most {MAX_PAGE}"),
    ("nodes[certname] { offset -1 }", "offset -1 is out of range: at least 0"),
    ("nodes[certname] { limit -1 }", "limit -1 is out of range: at least 0"),
    (f"nodes[certname] {{ limit {DIGITS} }}", "(5000 characters) is out of range"),
    (f"facts[value] {{ value = {DIGITS} }}", "(5000 characters) is out of range"),
    ("facts[value] { value > 99999999999999999999 }", "is out of range (a query's integers"),
    ("facts[value] { value > 1.0e400 }", "1.0e400 is out of range (not a finite number)"),
    ("facts[value] { value in [1, 2, 1.0e999] }", "is out of range (not a finite number)"),
])
def test_pql_over_a_limit(text: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_pql(text)
    assert message in str(caught.value)


def test_brackets_inside_strings_do_not_count() -> None:
    parse_pql("nodes[certname] { certname = '" + "(" * 500 + "' }")
    check_text('["=", "certname", "' + "[" * 500 + '\\"' + "[" * 500 + '"]')


def test_the_limits_themselves_are_allowed() -> None:
    parse_pql(f"nodes[certname] {{ limit {MAX_PAGE} offset {MAX_PAGE} }}")
    parse_pql("facts[value] { value > 9223372036854775807 or value < -9223372036854775808 }")
    nested: Any = ["=", "certname", "a"]
    for _ in range(MAX_DEPTH - 3):
        nested = ["not", nested]
    check_ast(["from", "nodes", nested])


def _nested(levels: int) -> str:
    return '["from", "nodes", ' + '["not", ' * levels + '["=", "certname", "a"]' \
        + "]" * levels + "]"


@pytest.mark.parametrize(("text", "message"), [
    (_nested(100_000)[:MAX_QUERY_CHARS], "nests brackets more than"),
    ("[" * 50_000, "nests brackets more than"),
    ('["from", "nodes", ["=", "certname", NaN]]', "NaN is not a number a query may hold"),
    ('["from", "nodes", ["=", "certname", -Infinity]]', "-Infinity is not a number"),
    ('["from", "facts", ["=", "value", 1e400]]', "1e400 is out of range"),
    (f'["from", "facts", ["=", "value", {DIGITS}]]', "(5000 characters) is out of range"),
    ('["from", "facts", ["=", "value", 9223372036854775808]]', "is out of range"),
    ('["from", "nodes", ', "is not valid JSON"),
])
def test_ast_text_over_a_limit(text: str, message: str) -> None:
    """What json.loads would recurse into, overflow on or accept but no database can hold."""
    with pytest.raises(QueryError) as caught:
        loads_ast(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(("ast", "message"), [
    (json.loads(_nested(MAX_DEPTH)), f"nested more than {MAX_DEPTH} levels deep"),
    (["from", "nodes", ["or", *[["=", "certname", "a"]] * MAX_AST_NODES]],
     f"more than {MAX_AST_NODES} terms"),
    (["from", "nodes", ["=", "certname", 2**63]], "is out of range"),
    (["from", "nodes", ["=", "certname", float("inf")]], "is not finite"),
    (["from", "nodes", ["=", "certname", "x" * (MAX_QUERY_CHARS + 1)]], "a string of the"),
    (["from", "nodes", ["=", "certname", {1, 2}]], "cannot hold set values"),
])
def test_ast_over_a_limit(ast: Any, message: str) -> None:
    with pytest.raises(QueryLimitError if "cannot hold" not in message else QueryError) \
            as caught:
        check_ast(ast)
    assert message in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), (0, 0), ("0", 0), (" 7 ", 7), (5.0, 5), (MAX_PAGE, MAX_PAGE),
    (str(MAX_PAGE), MAX_PAGE),
])
def test_page_parameters(value: Any, expected: int | None) -> None:
    assert page_param("limit", value) == expected


@pytest.mark.parametrize(("value", "message"), [
    (-1, "at least 0"), ("-1", "at least 0"), (MAX_PAGE + 1, f"at most {MAX_PAGE}"),
    (str(10**20), f"at most {MAX_PAGE}"), (1e30, f"at most {MAX_PAGE}"),
    (DIGITS, "(5000 characters) is out of range"), (1.5, "must be an integer"),
    (True, "must be an integer"), ("1e3", "must be an integer"), ("abc", "must be an integer"),
    (float("inf"), "must be an integer"), (float("nan"), "must be an integer"),
    ({}, "must be an integer"), ([1], "must be an integer"), ("\u0663", "must be an integer"),
])
def test_page_parameters_refused(value: Any, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        page_param("limit", value)
    assert message in str(caught.value)


@pytest.mark.parametrize(("query", "message"), [
    ("reports[] {}", "extract needs at least one field"),
    ("nodes[] { certname = 'a' }", "extract needs at least one field"),
    (["from", "nodes", ["extract", []]], "extract needs at least one field"),
    ("nodes[certname] { limit 100000000000000000000 }", f"at most {MAX_PAGE}"),
    (["from", "nodes", ["limit", 10**20]], "is out of range"),
    (["from", "nodes", ["limit", MAX_PAGE + 1]], f"at most {MAX_PAGE}"),
    (["from", "facts", ["=", "value", 10**30]], "is out of range"),
])
def test_the_store_refuses_them_too(seeded: Seeded, query: Any, message: str) -> None:
    """Store.query is what every caller (REST, MCP, CLI) ends in."""
    with pytest.raises(QueryError) as caught:
        seeded.store.query(query)
    assert message in str(caught.value)


@pytest.mark.parametrize(("paging", "message"), [
    ({"limit": MAX_PAGE + 1}, f"at most {MAX_PAGE}"),
    ({"offset": 2**63}, f"at most {MAX_PAGE}"),
    ({"offset": -1}, "non-negative integer"),
])
def test_paging_arguments_of_the_store(seeded: Seeded, paging: dict[str, int],
                                       message: str) -> None:
    with pytest.raises(QueryError) as caught:
        seeded.store.query("nodes[certname] {}", **paging)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_path_groups_and_orders_on_both_backends(seeded: Seeded) -> None:
    """Before: PostgreSQL refused ORDER BY path under GROUP BY path (a GroupingError, 500)."""
    rows = seeded.store.query("fact_paths[path, count()] { group by path order by path "
                              "limit 3 }")
    assert [r["path"] for r in rows] == [["datacenter"], ["fqdn"], ["hostname"]]
    rows = seeded.store.query(["from", "fact_paths",
                               ["extract", ["path"], ["group_by", "path"]],
                               ["order_by", [["path", "desc"]]], ["limit", 1]])
    assert rows == [{"path": ["uptime_seconds"]}]


ABOVE_THE_STORE = ["audit", "changes", "deployments", "jobs", "job_results"]


def _queries(entity: str) -> list[Any]:
    return [f"{entity} {{}}", ["from", entity],
            ["from", "nodes", ["in", "certname", ["from", entity, ["extract", ["id"]]]]]]


@pytest.mark.parametrize("entity", ABOVE_THE_STORE)
def test_an_entity_registered_without_its_table_is_a_query_error(
        seeded: Seeded, entity: str) -> None:
    """Before: a KeyError (a 500) on a server without the change pipeline (a plain-directory
    repository), where the application registers the entities but not their tables."""
    registry = store_entities()
    for owner in (audit_entity.register, pipeline_entities.register, task_entities.register):
        owner(registry)
    compiler = Compiler(TABLES, seeded.store.dialect, registry)
    for query in _queries(entity):
        with pytest.raises(QueryError) as caught:
            compiler.compile(query)
        assert f"the '{entity}' entity is available only on" in str(caught.value)


@pytest.mark.parametrize("entity", ABOVE_THE_STORE)
def test_a_bare_store_knows_only_its_own_entities(seeded: Seeded, entity: str) -> None:
    for query in _queries(entity):
        with pytest.raises(QueryError) as caught:
            seeded.store.query(query)
        assert f"unknown entity {entity!r}; valid entities: catalogs," in str(caught.value)
