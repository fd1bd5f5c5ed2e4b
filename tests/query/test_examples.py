"""Every example query of the reference (puppet-ecosystem.md §1), against the seeded fleet.

Expected answers are computed from the fleet's specification, so each assertion says what
the query means, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from steward.query import QueryError
from tests.query.conftest import Seeded
from tests.query.fleet import CODE_A, DEACTIVATED, FAILED


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["certname"] for row in rows]


def test_nodes_by_certname_regex(seeded: Seeded) -> None:
    rows = seeded.store.query('nodes[certname] { certname ~ "^web" }')
    expected = sorted(s.certname for s in seeded.fleet.active if s.certname.startswith("web"))
    assert rows == [{"certname": c} for c in expected]
    assert len(rows) == 12  # web99 is deactivated; monweb* does not start with "web"


def test_inventory_by_fact_and_resource(seeded: Seeded) -> None:
    rows = seeded.store.query(
        'inventory[certname] { facts.operatingsystem = "CentOS" and '
        'resources { type = "Service" and title = "httpd" } }'
    )
    expected = sorted(s.certname for s in seeded.fleet.active
                      if s.operatingsystem == "CentOS" and "httpd" in s.profiles)
    assert names(rows) == expected
    # CentOS web nodes run httpd; Debian app01/app02 run httpd but are not CentOS.
    assert expected == [f"web{i:02d}.example.com" for i in range(1, 7)]


def test_nodes_with_a_class(seeded: Seeded) -> None:
    rows = seeded.store.query(
        'nodes { resources { type = "Class" and title = "Profile::Remote_mgmt" } }')
    expected = sorted(s.certname for s in seeded.fleet.active if "remote_mgmt" in s.profiles)
    assert names(rows) == expected
    by_name = seeded.fleet.by_name()
    for row in rows:
        spec = by_name[row["certname"]]
        assert row == {
            "certname": spec.certname,
            "deactivated": None,
            "expired": None,
            "catalog_timestamp": "2024-05-04T09:00:00.000Z",
            "facts_timestamp": "2024-05-04T09:00:00.000Z",
            "report_timestamp": row["report_timestamp"],
            "catalog_environment": "production",
            "facts_environment": "production",
            "report_environment": "production",
            "latest_report_status": spec.latest_status,
            "latest_report_hash": spec.reports[-1][1],
            "latest_report_noop": spec.noop,
            "latest_report_noop_pending": spec.noop,
            "latest_report_corrective_change": spec.latest_status == "changed",
        }


def test_inventory_of_failed_nodes(seeded: Seeded) -> None:
    rows = seeded.store.query(
        "inventory[certname, facts.os.family, facts.puppetversion] "
        '{ certname in nodes[certname] { latest_report_status = "failed" } }'
    )
    by_name = seeded.fleet.by_name()
    assert rows == [
        {"certname": c, "facts.os.family": by_name[c].family,
         "facts.puppetversion": by_name[c].facts["puppetversion"]}
        for c in sorted(FAILED)
    ]


def test_latest_reports_not_of_a_code_id(seeded: Seeded) -> None:
    rows = seeded.store.query(
        "reports[certname, receive_time] { latest_report? = true and "
        "! code_id = 'urn:puppet:code-id:1:519e…;production' }"
    )
    expected = [s for s in seeded.fleet.specs if s.code_id != CODE_A]
    assert rows == [
        {"certname": s.certname,
         "receive_time": s.reports[-1][0].isoformat(timespec="milliseconds")
         .replace("+00:00", "Z")}
        for s in sorted(expected, key=lambda s: s.certname)
    ]
    # "not" is null-safe: the monweb nodes have no code_id at all and are included.
    assert any(r["certname"].startswith("monweb") for r in rows)
    assert DEACTIVATED in names(rows)  # reports are history: deactivation does not hide them


def test_fact_counts_by_name(seeded: Seeded) -> None:
    rows = seeded.store.query('facts[name, count(value)] { certname ~ "^web.*" group by name }')
    counts: Counter[str] = Counter()
    for spec in seeded.fleet.active:
        if re.search("^web.*", spec.certname):
            counts.update(list(spec.facts))
    assert rows == [{"name": n, "count": counts[n]} for n in sorted(counts)]
    assert {r["count"] for r in rows} == {12}


def test_report_counts_by_day(seeded: Seeded) -> None:
    rows = seeded.store.query(
        'reports[count(), to_string(receive_time, "DAY")] '
        '{ group by to_string(receive_time, "DAY") }'
    )
    days = Counter(received.strftime("%A").upper().ljust(9)
                   for spec in seeded.fleet.specs for received, _ in spec.reports)
    assert rows == [{"count": days[d], "to_string": d} for d in sorted(days)]
    assert sorted(days) == ["MONDAY   ", "SATURDAY ", "SUNDAY   "]


def test_reports_ordered_and_limited(seeded: Seeded) -> None:
    rows = seeded.store.query(
        'reports { certname ~ "web.*" order by receive_time desc, certname desc limit 10 }')
    candidates = [(received, spec.certname, digest) for spec in seeded.fleet.specs
                  for received, digest in spec.reports if re.search("web.*", spec.certname)]
    candidates.sort(key=lambda c: (c[0], c[1]), reverse=True)
    assert [(r["certname"], r["hash"]) for r in rows] == [(c, h) for _, c, h in candidates[:10]]
    first = rows[0]
    assert set(first) == {
        "certname", "hash", "environment", "status", "noop", "noop_pending", "puppet_version",
        "report_format", "configuration_version", "start_time", "end_time",
        "producer_timestamp", "receive_time", "producer", "transaction_uuid", "catalog_uuid",
        "code_id", "type", "corrective_change", "catalog_hash", "exit_code", "metrics", "logs",
        "resource_events", "resources",
    }
    assert first["producer"] == "steward"
    assert first["metrics"]["href"] == f"/pdb/query/v4/reports/{first['hash']}/metrics"
    assert {"category": "resources", "name": "total",
            "value": len(first["resources"]["data"])} in first["metrics"]["data"]
    assert first["resource_events"]["href"].endswith(f"/reports/{first['hash']}/events")


def test_facts_in_fact_contents(seeded: Seeded) -> None:
    rows = seeded.store.query(
        'facts { [certname, name] in fact_contents[certname, name] { value ~ "a" } }')

    def leaves(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [leaf for v in value.values() for leaf in leaves(v)]
        if isinstance(value, list):
            return [leaf for v in value for leaf in leaves(v)]
        return [value]

    expected = sorted(
        (spec.certname, name) for spec in seeded.fleet.active
        for name, value in spec.facts.items()
        if any(isinstance(leaf, str) and re.search("a", leaf) for leaf in leaves(value))
    )
    assert [(r["certname"], r["name"]) for r in rows] == expected
    by_name = seeded.fleet.by_name()
    for row in rows:
        assert row["value"] == by_name[row["certname"]].facts[row["name"]]
        assert row["environment"] == "production"


# -- the AST examples of the reference ----------------------------------------------------------


def test_ast_extract_with_group_by(seeded: Seeded) -> None:
    target = "web04.example.com"
    rows = seeded.store.query_entity(
        "events",
        ["extract", [["function", "count"], "status"], ["=", "certname", target],
         ["group_by", "status"]],
    )
    events = seeded.store.query(["from", "events", ["=", "certname", target]])
    counts = Counter(e["status"] for e in events)
    # Grouped rows come in group order. web04's latest run failed a package and skipped the
    # service depending on it; its first run changed a file.
    assert rows == [{"count": counts[s], "status": s} for s in sorted(counts)]
    assert sorted(counts) == ["failure", "skipped", "success"]


def test_ast_from_with_paging(seeded: Seeded) -> None:
    target = "web04.example.com"
    # PuppetDB's example orders reports by "timestamp", which reports do not have.
    with pytest.raises(QueryError, match=r"unknown field 'timestamp'.*receive_time"):
        seeded.store.query(["from", "reports", ["=", "certname", target],
                            ["order_by", [["timestamp", "desc"]]], ["limit", 10],
                            ["offset", 10]])
    events = seeded.store.query(["from", "events", ["=", "certname", target],
                                 ["order_by", [["timestamp", "desc"]]], ["limit", 2],
                                 ["offset", 1]])
    everything = seeded.store.query(["from", "events", ["=", "certname", target],
                                     ["order_by", [["timestamp", "desc"]]]])
    assert events == everything[1:3]
    assert [e["timestamp"] for e in everything] == sorted(
        (e["timestamp"] for e in everything), reverse=True)


def test_ast_implicit_subquery(seeded: Seeded) -> None:
    rows = seeded.store.query_entity(
        "nodes",
        ["and", ["~", "certname", "^web0"],
         ["subquery", "resources", ["and", ["=", "type", "Package"], ["=", "title", "httpd"]]]],
    )
    assert names(rows) == [f"web0{i}.example.com" for i in range(1, 7)]


def test_ast_explicit_subquery(seeded: Seeded) -> None:
    rows = seeded.store.query_entity(
        "nodes",
        ["in", ["certname"], ["from", "resources",
                              ["extract", ["certname"], ["=", "type", "Class"]]]],
    )
    assert names(rows) == sorted(s.certname for s in seeded.fleet.active)


def test_ast_null_and_path_regex(seeded: Seeded) -> None:
    execs = seeded.store.query_entity("resources", ["null?", "line", True])
    assert {(r["type"], r["title"]) for r in execs} == {
        ("Exec", "migrate-db"), *{("Class", t) for t in _class_titles(seeded)}}
    macs = seeded.store.query_entity(
        "fact_contents", ["~>", "path", ["networking", "eth.*", "macaddress"]])
    assert [(r["certname"], r["path"], r["value"]) for r in macs] == [
        (s.certname, ["networking", "eth0", "macaddress"],
         s.facts["networking"]["eth0"]["macaddress"])
        for s in sorted(seeded.fleet.active, key=lambda s: s.certname)
    ]


def _class_titles(seeded: Seeded) -> set[str]:
    return {title for s in seeded.fleet.active for kind, title in s.resource_refs
            if kind == "Class"}
