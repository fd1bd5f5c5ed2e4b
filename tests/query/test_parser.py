"""PQL text to PuppetDB's AST, and syntax errors a person can act on."""

from __future__ import annotations

from typing import Any

import pytest

from steward.query import QuerySyntaxError, parse_pql

# Each reference example with the AST PuppetDB's own PQL transform gives it.
EXAMPLES: list[tuple[str, list[Any]]] = [
    ('nodes[certname] { certname ~ "^web" }',
     ["from", "nodes", ["extract", ["certname"], ["~", "certname", "^web"]]]),
    ('inventory[certname] { facts.operatingsystem = "CentOS" and resources { type = "Service" '
     'and title = "httpd" } }',
     ["from", "inventory", ["extract", ["certname"], [
         "and", ["=", "facts.operatingsystem", "CentOS"],
         ["subquery", "resources", ["and", ["=", "type", "Service"],
                                    ["=", "title", "httpd"]]]]]]),
    ('nodes { resources { type = "Class" and title = "Profile::Remote_mgmt" } }',
     ["from", "nodes", ["subquery", "resources", ["and", ["=", "type", "Class"],
                                                  ["=", "title", "Profile::Remote_mgmt"]]]]),
    ("inventory[certname, facts.os.family, facts.puppetversion] { certname in nodes[certname] "
     '{ latest_report_status = "failed" } }',
     ["from", "inventory", ["extract", ["certname", "facts.os.family", "facts.puppetversion"],
                            ["in", "certname", ["from", "nodes", [
                                "extract", ["certname"],
                                ["=", "latest_report_status", "failed"]]]]]]),
    ("reports[certname, receive_time] { latest_report? = true and ! code_id = "
     "'urn:puppet:code-id:1:519e…;production' }",
     ["from", "reports", ["extract", ["certname", "receive_time"], [
         "and", ["=", "latest_report?", True],
         ["not", ["=", "code_id", "urn:puppet:code-id:1:519e…;production"]]]]]),
    ('facts[name, count(value)] { certname ~ "^web.*" group by name }',
     ["from", "facts", ["extract", ["name", ["function", "count", "value"]],
                        ["~", "certname", "^web.*"], ["group_by", "name"]]]),
    ('reports[count(), to_string(receive_time, "DAY")] { group by to_string(receive_time, '
     '"DAY") }',
     ["from", "reports", ["extract", [["function", "count"],
                                      ["function", "to_string", "receive_time", "DAY"]],
                          ["group_by", ["function", "to_string", "receive_time", "DAY"]]]]),
    ('reports { certname ~ "web.*" order by receive_time desc, certname desc limit 10 }',
     ["from", "reports", ["~", "certname", "web.*"],
      ["order_by", [["receive_time", "desc"], ["certname", "desc"]]], ["limit", 10]]),
    ('facts { [certname, name] in fact_contents[certname, name] { value ~ "a" } }',
     ["from", "facts", ["in", ["certname", "name"],
                        ["from", "fact_contents", ["extract", ["certname", "name"],
                                                   ["~", "value", "a"]]]]]),
]


@pytest.mark.parametrize(("text", "ast"), EXAMPLES, ids=[str(i) for i in range(len(EXAMPLES))])
def test_reference_examples_parse_to_puppetdb_ast(text: str, ast: list[Any]) -> None:
    assert parse_pql(text) == ast


@pytest.mark.parametrize(("text", "ast"), [
    ("nodes {}", ["from", "nodes"]),
    ("nodes", None),
    ("nodes[] {}", ["from", "nodes", ["extract", []]]),
    ('nodes { certname != "a" }', ["from", "nodes", ["not", ["=", "certname", "a"]]]),
    ('nodes { certname !~ "a" }', ["from", "nodes", ["not", ["~", "certname", "a"]]]),
    ("nodes { certname is null }", ["from", "nodes", ["null?", "certname", True]]),
    ("nodes { certname is not null }", ["from", "nodes", ["null?", "certname", False]]),
    ('nodes { certname in ["a", "b"] }',
     ["from", "nodes", ["in", "certname", ["array", ["a", "b"]]]]),
    ("facts { value >= -2.5e3 and value < 10 }",
     ["from", "facts", ["and", [">=", "value", -2500.0], ["<", "value", 10]]]),
    ("facts { value = true or value = false }",
     ["from", "facts", ["or", ["=", "value", True], ["=", "value", False]]]),
    ('fact_contents { path ~> ["networking", "eth.*"] }',
     ["from", "fact_contents", ["~>", "path", ["networking", "eth.*"]]]),
    ('inventory { facts.processors.models[0] = "x" and facts.mounts."/boot".size > 1 }',
     ["from", "inventory", ["and", ["=", "facts.processors.models[0]", "x"],
                            [">", 'facts.mounts."/boot".size', 1]]]),
    ('nodes { ! (certname = "a" or certname = "b") and !certname = "c" }',
     ["from", "nodes", ["and", ["not", ["or", ["=", "certname", "a"], ["=", "certname", "b"]]],
                        ["not", ["=", "certname", "c"]]]]),
    ("nodes { order by certname limit 5 offset 10 }",
     ["from", "nodes", ["order_by", ["certname"]], ["limit", 5], ["offset", 10]]),
    ('nodes {\n  certname = "multi\\nline"\n}',
     ["from", "nodes", ["=", "certname", "multi\nline"]]),
    ("nodes { certname = 'it\\'s' and certname = 'back\\\\slash\\d' }",
     ["from", "nodes", ["and", ["=", "certname", "it's"],
                        ["=", "certname", "back\\\\slash\\d"]]]),
    ('events { [certname, report] in reports[certname, hash] { status = "failed" } }',
     ["from", "events", ["in", ["certname", "report"], [
         "from", "reports", ["extract", ["certname", "hash"], ["=", "status", "failed"]]]]]),
    ("reports { events { } }", ["from", "reports", ["subquery", "events"]]),
])
def test_forms(text: str, ast: list[Any] | None) -> None:
    if ast is None:
        with pytest.raises(QuerySyntaxError):
            parse_pql(text)
    else:
        assert parse_pql(text) == ast


def test_error_names_line_column_and_expectations() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_pql('nodes {\n  certname = "x" and\n  and }')
    error = caught.value
    assert (error.line, error.column) == (3, 3)
    message = str(error)
    assert message.startswith("PQL syntax error at line 3, column 3: expected one of")
    assert "a field or entity name" in message
    assert "'('" in message
    assert "'!'" in message
    assert "found 'and'" in message
    assert message.endswith("\n    and }\n    ^")


def test_error_at_end_of_query() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_pql('nodes { certname = "x" ')
    message = str(caught.value)
    assert "found the end of the query" in message
    assert "'}'" in message
    assert "'and'" in message
    assert "'order'" in message
    assert (caught.value.line, caught.value.column) == (1, 24)


def test_error_on_a_stray_character() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_pql("nodes { certname @ 1 }")
    message = str(caught.value)
    assert "line 1, column 18" in message
    assert "found '@'" in message
    assert "'='" in message
    assert "a comparison (<, <=, >, >=)" in message


def test_keywords_are_not_field_names() -> None:
    with pytest.raises(QuerySyntaxError, match="found 'and'"):
        parse_pql("nodes { and = 1 }")
    # ... but names merely starting with one are.
    assert parse_pql("nodes { order_id = 1 }") == ["from", "nodes", ["=", "order_id", 1]]


def test_bad_escape_in_double_quoted_string() -> None:
    with pytest.raises(QuerySyntaxError, match=r"line 1, column 20: invalid escape"):
        parse_pql(r'nodes { certname = "\d" }')


def test_implicit_subquery_takes_no_modifiers() -> None:
    with pytest.raises(QuerySyntaxError, match="implicit subquery cannot have"):
        parse_pql("nodes { resources { limit 1 } }")


def test_group_by_needs_a_projection() -> None:
    with pytest.raises(QuerySyntaxError, match="'group by' needs a projection"):
        parse_pql("facts { group by name }")
