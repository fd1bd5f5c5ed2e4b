"""What queries mean, on each backend: types, operators, subqueries, paging, errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from steward.query import QueryError
from tests.query.conftest import Seeded
from tests.query.fleet import DEACTIVATED, FAILED


def certnames(rows: list[dict[str, Any]]) -> list[str]:
    return [r["certname"] for r in rows]


def active_names(seeded: Seeded, keep: Any = lambda s: True) -> list[str]:
    return sorted(s.certname for s in seeded.fleet.active if keep(s))


# -- fact values: typed comparisons --------------------------------------------------------------


def test_numbers_compare_numerically(seeded: Seeded) -> None:
    rows = seeded.store.query('facts[certname, value] { name = "uptime_seconds" and '
                              "value >= 36000 }")
    expected = active_names(seeded, lambda s: s.facts["uptime_seconds"] >= 36000)
    assert certnames(rows) == expected
    assert all(isinstance(r["value"], int) for r in rows)
    floats = seeded.store.query('facts[certname] { name = "load_average" and value > 2.5 }')
    assert certnames(floats) == active_names(seeded, lambda s: s.facts["load_average"] > 2.5)


def test_a_number_never_equals_a_string(seeded: Seeded) -> None:
    assert seeded.store.query('facts { name = "uptime_seconds" and value = "3600" }') == []
    assert certnames(seeded.store.query(
        'facts { name = "uptime_seconds" and value = 3600 }')) == ["app01.example.com",
                                                                   "db01.example.com",
                                                                   "lb01.example.com",
                                                                   "monweb01.example.com",
                                                                   "web01.example.com"]


def test_booleans(seeded: Seeded) -> None:
    virtual = seeded.store.query('facts[certname] { name = "is_virtual" and value = false }')
    assert certnames(virtual) == active_names(seeded, lambda s: not s.facts["is_virtual"])
    assert seeded.store.query('facts { name = "is_virtual" and value = "false" }') == []


def test_strings_compare_as_strings(seeded: Seeded) -> None:
    rows = seeded.store.query('fact_contents[certname, value] { path = ["os", "release", '
                              '"full"] and value < "2" }')
    # As text "12.5" sorts before "2" and "9.3" after it.
    assert {r["value"] for r in rows} == {"12.5"}


def test_structured_values_and_paths(seeded: Seeded) -> None:
    rows = seeded.store.query('inventory[certname, facts.processors.models[0], '
                              'facts.networking.eth0, trusted.certname] '
                              '{ facts.processors.count > 4 }')
    by_name = seeded.fleet.by_name()
    assert certnames(rows) == active_names(seeded, lambda s: s.facts["processors"]["count"] > 4)
    for row in rows:
        spec = by_name[row["certname"]]
        assert row["facts.processors.models[0]"] == "Intel Xeon"
        assert row["facts.networking.eth0"] == spec.facts["networking"]["eth0"]
        assert row["trusted.certname"] == spec.certname


def test_is_null_on_paths_and_columns(seeded: Seeded) -> None:
    assert seeded.store.query("inventory[certname] { facts.no_such_fact is not null }") == []
    assert len(seeded.store.query("inventory[certname] { facts.os.family is not null }")) == 36
    # A path into a container counts as present; empty arrays too.
    assert len(seeded.store.query("inventory[certname] { facts.networking is not null and "
                                  "facts.ssh_authorized_keys is not null }")) == 36
    empty_code = seeded.store.query("reports[certname] { code_id is null }")
    assert sorted(set(certnames(empty_code))) == [f"monweb0{i}.example.com" for i in range(1, 5)]


def test_fact_value_regex_matches_strings_only(seeded: Seeded) -> None:
    rows = seeded.store.query('facts[certname, name] { value ~ "^7\\\\." }')
    assert {r["name"] for r in rows} == {"puppetversion"}


# -- operators and structure ----------------------------------------------------------------------


def test_in_array_not_and_or(seeded: Seeded) -> None:
    rows = seeded.store.query('nodes[certname] { certname in ["web01.example.com", '
                              '"db02.example.com", "nope"] or (certname ~ "^lb" and '
                              '! certname = "lb02.example.com") }')
    assert certnames(rows) == ["db02.example.com", "lb01.example.com", "lb03.example.com",
                               "lb04.example.com", "web01.example.com"]


def test_not_is_null_safe(seeded: Seeded) -> None:
    everything = seeded.store.query("reports[hash] {}")
    not_equal = seeded.store.query('reports[hash] { ! code_id = "nothing-has-this" }')
    assert len(not_equal) == len(everything) == 74


def test_regex_rewrites_keep_regex_meaning(seeded: Seeded) -> None:
    """Literal patterns run as prefix/substring tests; they must agree with re.search."""
    names = [s.certname for s in seeded.fleet.active]
    for pattern in ("^web", "^web.*", "web", "web.*", "^web0", "example.com$", "^db0[1-3]",
                    "0[12]\\.", "^monweb01.example.com$", "^$", "^\U0010ffff"):
        rows = seeded.store.query(["from", "nodes", ["extract", ["certname"],
                                                    ["~", "certname", pattern]]])
        assert certnames(rows) == sorted(n for n in names if re.search(pattern, n)), pattern


def test_path_regex(seeded: Seeded) -> None:
    rows = seeded.store.query('fact_contents[path, value] { certname = "web01.example.com" '
                              'and path ~> ["processors", "models", "\\\\d+"] }')
    assert rows == [{"path": ["processors", "models", 0], "value": "Intel Xeon"},
                    {"path": ["processors", "models", 1], "value": "Intel Xeon"},
                    {"path": ["processors", "models", 2], "value": "Intel Xeon"},
                    {"path": ["processors", "models", 3], "value": "Intel Xeon"}]


def test_fact_paths_and_names(seeded: Seeded) -> None:
    paths = seeded.store.query('fact_paths { path ~> ["networking", ".*"] }')
    assert paths == [{"path": ["networking", "eth0"], "type": "map"},
                     {"path": ["networking", "lo"], "type": "map"}]
    names = seeded.store.query("fact_names {}")
    assert [r["name"] for r in names] == sorted(seeded.fleet.specs[0].facts)
    empty = seeded.store.query('fact_paths { path = ["ssh_authorized_keys"] }')
    assert empty == [{"path": ["ssh_authorized_keys"], "type": "array"}]


def test_implicit_subqueries(seeded: Seeded) -> None:
    with_failures = seeded.store.query('reports[certname] { latest_report? = true and '
                                       'events { status = "failure" } }')
    assert certnames(with_failures) == sorted(FAILED)
    events = seeded.store.query('events[certname, status] { reports { status = "failed" } '
                                'and status = "skipped" }')
    # app06's failed package has no service depending on it.
    assert sorted(set(certnames(events))) == sorted(FAILED - {"app06.example.com"})
    nodes = seeded.store.query('nodes[certname] { facts { name = "operatingsystem" and '
                               'value = "CentOS" } and resources { type = "Package" and '
                               'title = "postgresql" } }')
    assert certnames(nodes) == [f"db0{i}.example.com" for i in range(1, 5)]
    production = seeded.store.query("environments { facts { name = \"kernel\" } }")
    assert production == [{"name": "production"}]


def test_multi_column_in(seeded: Seeded) -> None:
    rows = seeded.store.query('events[certname, status] { [certname, report] in '
                              'reports[certname, hash] { latest_report? = true and '
                              'status = "failed" } }')
    assert sorted({(r["certname"], r["status"]) for r in rows}) == sorted(
        [(c, s) for c in FAILED for s in ("failure", "skipped")
         if (c, s) != ("app06.example.com", "skipped")])


def test_latest_report_false(seeded: Seeded) -> None:
    old = seeded.store.query("reports[certname, hash] { latest_report? = false }")
    assert [(r["certname"], r["hash"]) for r in old] == sorted(
        (s.certname, s.reports[0][1]) for s in seeded.fleet.specs)


def test_tags_and_parameters(seeded: Seeded) -> None:
    rows = seeded.store.query('resources[certname, title, parameters.ensure] '
                              '{ tag = "profile:postgresql" and parameters.ensure = '
                              '"running" }')
    assert rows == [{"certname": c, "title": "postgresql", "parameters.ensure": "running"}
                    for c in active_names(seeded, lambda s: "postgresql" in s.profiles)]
    uid = seeded.store.query('resources[certname] { type = "User" and parameters.uid = 1500 '
                             'and certname ~ "^lb" }')
    assert certnames(uid) == active_names(seeded, lambda s: s.role == "lb")
    regex_tag = seeded.store.query('resources[title] { certname = "app03.example.com" and '
                                   'tag ~ "^profile:a" }')
    assert [r["title"] for r in regex_tag] == ["migrate-db", "python3"]  # Exec, Package


def test_edges_and_catalogs(seeded: Seeded) -> None:
    edges = seeded.store.query('edges { certname = "web07.example.com" }')
    assert {"certname": "web07.example.com", "relationship": "notifies",
            "source_type": "File", "source_title": "/etc/nginx/nginx.conf",
            "target_type": "Service", "target_title": "nginx"} in edges
    catalog = seeded.store.query('catalogs { certname = "web07.example.com" }')[0]
    spec = seeded.fleet.by_name()["web07.example.com"]
    assert catalog["hash"] == spec.catalog.hash if spec.catalog else False
    assert catalog["version"] == catalog["code_id"] == spec.code_id
    assert catalog["resources"]["href"] == "/pdb/query/v4/catalogs/web07.example.com/resources"
    assert {(r["type"], r["title"]) for r in catalog["resources"]["data"]} == spec.resource_refs
    assert len(catalog["edges"]["data"]) == len(edges)
    assert catalog["classification"]["roles"] == ["web"]


def test_deactivated_nodes(seeded: Seeded) -> None:
    assert DEACTIVATED not in certnames(seeded.store.query("nodes[certname] {}"))
    assert seeded.store.query(f'facts {{ certname = "{DEACTIVATED}" }}') == []
    everyone = seeded.store.query('nodes[certname, deactivated] { node_state = "any" }')
    assert len(everyone) == 37
    gone = seeded.store.query("nodes[certname, deactivated] { deactivated is not null }")
    assert gone == [{"certname": DEACTIVATED, "deactivated": "2024-05-06T21:00:00.000Z"}]
    inactive = seeded.store.query(f'resources[type] {{ node_state = "inactive" and '
                                  f'certname = "{DEACTIVATED}" and type = "Class" }}')
    assert len(inactive) == 4


# -- projections, aggregates, paging ------------------------------------------------------------


def test_aggregates(seeded: Seeded) -> None:
    rows = seeded.store.query('facts[count(), avg(value), sum(value), min(value), max(value)] '
                              '{ name = "uptime_seconds" }')
    values = [s.facts["uptime_seconds"] for s in seeded.fleet.active]
    assert rows == [{"count": 36, "avg": sum(values) / 36, "sum": float(sum(values)),
                     "min": float(min(values)), "max": float(max(values))}]
    lines = seeded.store.query('resources[type, count(), max(line)] { type = "File" or '
                               'type = "Exec" group by type }')
    file_lines = [r.line for s in seeded.fleet.active if s.catalog
                  for r in s.catalog.resources if r.type == "file"]
    assert lines == [{"type": "Exec", "count": 8, "max": None},
                     {"type": "File", "count": len(file_lines), "max": max(file_lines)}]
    earliest = seeded.store.query("reports[min(receive_time), max(receive_time)] {}")
    assert earliest == [{"min": "2024-05-04T10:01:30.000Z", "max": "2024-05-06T10:39:30.000Z"}]


def test_to_string_formats(seeded: Seeded) -> None:
    rows = seeded.store.query('reports[to_string(receive_time, "FMDay, DD Mon YYYY"), count()] '
                              '{ group by to_string(receive_time, "FMDay, DD Mon YYYY") }')
    assert rows == [{"to_string": "Monday, 06 May 2024", "count": 19},
                    {"to_string": "Saturday, 04 May 2024", "count": 37},
                    {"to_string": "Sunday, 05 May 2024", "count": 18}]
    with pytest.raises(QueryError, match="to_string format: pattern 'TZ'"):
        seeded.store.query('reports[to_string(receive_time, "YYYY TZ")] {}')
    with pytest.raises(QueryError, match=r"unexpected 'T'.*quoted"):
        seeded.store.query('reports[to_string(receive_time, "YYYY-MM-DDTHH24")] {}')


def test_order_limit_offset(seeded: Seeded) -> None:
    everything = seeded.store.query('nodes[certname, latest_report_status] '
                                    '{ order by latest_report_status desc, certname }')
    assert [r["latest_report_status"] for r in everything[:13]] == ["unchanged"] * 13
    assert everything == sorted(everything, key=lambda r: (
        [-ord(c) for c in r["latest_report_status"]], r["certname"]))
    page = seeded.store.query('nodes[certname] { order by latest_report_status desc, certname'
                              ' limit 5 offset 3 }')
    assert page == [{"certname": r["certname"]} for r in everything[3:8]]
    by_param = seeded.store.query("nodes[certname] {}", limit=5, offset=3,
                                  order_by=[("latest_report_status", "desc"),
                                            ("certname", "asc")])
    assert by_param == page
    by_count = seeded.store.query("facts[name, count()] { value ~ \"a\" group by name "
                                  "order by count desc, name }")
    counts = [r["count"] for r in by_count]
    assert counts == sorted(counts, reverse=True)


def test_paging_given_twice(seeded: Seeded) -> None:
    with pytest.raises(QueryError, match="limit is given both in the query and as a param"):
        seeded.store.query("nodes { limit 1 }", limit=2)


def test_entity_endpoints(seeded: Seeded) -> None:
    rows = seeded.store.query_entity("fact-contents", ["=", "name", "kernel"], limit=2)
    assert rows == [{"certname": "app01.example.com", "environment": "production",
                     "path": ["kernel"], "name": "kernel", "value": "Linux"},
                    {"certname": "app02.example.com", "environment": "production",
                     "path": ["kernel"], "name": "kernel", "value": "Linux"}]
    factset = seeded.store.query_entity("factsets", ["=", "certname", "lb01.example.com"])
    assert factset[0]["facts"]["data"][0] == {"name": "datacenter", "value": "dc2"}
    extract = seeded.store.query_entity("nodes", ["extract", ["certname"],
                                                  ["=", "certname", "lb01.example.com"]])
    assert extract == [{"certname": "lb01.example.com"}]
    assert seeded.store.query_entity("environments", None) == [{"name": "production"}]


def test_report_shape(seeded: Seeded) -> None:
    target = "web04.example.com"
    report = seeded.store.query(f'reports {{ certname = "{target}" and latest_report? = true }}')
    assert len(report) == 1
    row = report[0]
    assert row["status"] == "failed"
    assert row["producer"] == "steward"
    assert row["puppet_version"] == "0.1.0"
    assert row["report_format"] == 1
    assert row["configuration_version"] == row["code_id"]
    catalog = seeded.store.query(f'catalogs[catalog_uuid] {{ certname = "{target}" }}')
    assert row["catalog_uuid"] == catalog[0]["catalog_uuid"]
    events = row["resource_events"]["data"]
    assert {e["status"] for e in events} == {"failure", "skipped"}
    skipped = next(e for e in events if e["status"] == "skipped")
    assert skipped["property"] is None
    assert skipped["message"].startswith("skipped: dependency")
    assert skipped["containment_path"][-1] == f"{skipped['resource_type']}[" \
                                              f"{skipped['resource_title']}]"
    statuses = row["resources"]["data"]
    assert {s["resource_type"] for s in statuses} >= {"Package", "Service", "File"}
    assert row["logs"]["data"] == [{"level": "info", "source": "steward", "message": "applied"}]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "message"), [
    ("nodez {}", "unknown entity 'nodez'; valid entities: catalogs, edges, environments, "
                 "events, fact_contents, fact_names, fact_paths, facts, factsets, inventory, "
                 "nodes, reports, resources"),
    ("nodes { certnme = 1 }", "unknown field 'certnme' for entity 'nodes'; valid fields: "
                              "catalog_environment, catalog_timestamp, certname"),
    ("inventory { fact.os = 1 }", "valid fields: certname, environment, facts, node_state, "
                                  "timestamp, trusted, facts.<path>, trusted.<path>"),
    ('nodes { certname < "a" }', "< is not supported on 'certname' (a string); use = or ~"),
    ("nodes { certname = 1 }", "field 'certname' is a string; got 1"),
    ('nodes { latest_report_noop = "yes" }', "is a boolean; compare it with = true or"),
    ('reports { receive_time > "yesterday" }', "'yesterday' is not an ISO 8601 timestamp"),
    ('nodes { certname ~ "(" }', "invalid regular expression '(' for 'certname'"),
    ('resources { line ~ "1" }', "~ matches strings; 'line' is a number"),
    ("facts[name, count()] {}", "\"name\" is projected with aggregate functions, so it must"),
    ('facts[name, value] { group by name }', "\"value\" is projected with aggregate"),
    ("nodes[node_state] {}", "'node_state' of 'nodes' can be filtered on but not returned"),
    ("reports { metrics is null }", "'metrics' cannot be tested with 'null?'"),
    ('nodes { certname in facts { name = "x" } }', "must project the fields to compare"),
    ('nodes { certname in facts[certname, name] { name = "x" } }',
     "'in' compares 1 field(s) with a subquery projecting 2"),
    ('fact_paths { resources { type = "x" } }', "'fact_paths' has no implicit relationship "
                                                "with 'resources'"),
    ('nodes { latest_report? = true }', "unknown field 'latest_report?'"),
    ('reports { latest_report? = "yes" }', "'latest_report?' takes only '= true' or"),
    ('nodes { node_state = "gone" }', "'node_state' takes = \"active\", \"inactive\" or"),
    ('facts { value = ["a"] }', "can be compared with a string, number or boolean"),
    ('facts[name] { order by value limit 1 }', None),
    ("reports[certname, count()] { group by certname order by receive_time }",
     "cannot order by 'receive_time': with aggregates"),
])
def test_query_errors(seeded: Seeded, query: str, message: str | None) -> None:
    if message is None:
        assert len(seeded.store.query(query)) == 1
        return
    with pytest.raises(QueryError) as caught:
        seeded.store.query(query)
    assert message in str(caught.value)


@pytest.mark.parametrize(("ast", "message"), [
    ({"from": "nodes"}, "a query must be PQL text or an AST list"),
    (["nodes"], 'starts with ["from", <entity>, ...]'),
    (["from", "nodes", ["==", "certname", "x"]], "unknown operator '=='; valid operators"),
    (["from", "nodes", ["=", "certname"]], "'=' takes a field and a value"),
    (["from", "nodes", ["and"]], "'and' needs at least one expression"),
    (["from", "nodes", ["limit", -1]], "limit takes one non-negative integer"),
    (["from", "nodes", ["order_by", [["certname", "up"]]]], "must be a field or"),
    (["from", "nodes", ["null?", "certname", "yes"]], "'null?' takes a field and true or"),
    (["from", "nodes", ["in", "certname", ["array", []]]], "non-empty list of values"),
    (["from", "facts", ["extract", [["function", "median", "value"]]]],
     "expected a field or [\"function\""),
    (["from", "nodes", ["extract", ["certname", "certname"]]], "'certname' is projected twice"),
    (["from", "nodes", ["from", "facts"]], "a subquery must be the right-hand side of 'in'"),
])
def test_ast_errors(seeded: Seeded, ast: Any, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        seeded.store.query(ast)
    assert message in str(caught.value)


def test_legacy_select_subquery(seeded: Seeded) -> None:
    rows = seeded.store.query_entity(
        "nodes", ["in", "certname", ["extract", "certname",
                                     ["select_resources", ["=", "title", "haproxy"]]]])
    assert certnames(rows) == [f"lb0{i}.example.com" for i in range(1, 5)]
