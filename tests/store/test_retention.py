"""gc: expiring silent nodes, purging inactive ones, dropping old reports and fact paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from steward.store import Store
from tests.store.backends import Clock
from tests.store.test_ingest import FACTS, catalog, report

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def seed(store: Store) -> None:
    """old: silent for 20 days; gone: deactivated 40 days ago; live: reports every 5 days."""
    store.replace_facts("old", "production", FACTS, T0)
    store.store_report(report(catalog("old"), T0))
    store.replace_facts("gone", "production", {"only": "here", "deep": {"x": [1]}}, T0)
    store.store_report(report(catalog("gone"), T0, failed=True))
    store.deactivate_node("gone", T0 + DAY)
    store.replace_facts("live", "production", FACTS, T0 + 19 * DAY)
    store.replace_catalog(catalog("live").to_json(), T0 + 19 * DAY)
    for day in (0, 5, 10, 15, 20):
        store.store_report(report(catalog("live"), T0 + day * DAY))


def test_gc(store: Store, clock: Clock) -> None:
    seed(store)
    now = T0 + 41 * DAY
    counts = store.gc(now, report_ttl=timedelta(days=14), node_ttl=timedelta(days=21),
                      node_purge_ttl=timedelta(days=30))
    # "old" was silent for more than 21 days: it expires (now, too recently to purge).
    # "gone" was deactivated 40 days ago: purged with its report (3 events) and its facts,
    # whose 4 paths no other node has. Every remaining report is older than 14 days.
    assert counts == {"expired_nodes": 1, "purged_nodes": 1, "reports": 7, "events": 9,
                      "fact_paths": 4}
    assert store.query("nodes[certname] {}") == [{"certname": "live"}]
    assert store.query('nodes[certname, expired] { node_state = "any" }') == [
        {"certname": "live", "expired": None},
        {"certname": "old", "expired": "2024-06-11T00:00:00.000Z"},
    ]
    assert store.query("reports[certname] {}") == []
    assert store.query('fact_paths[path] { path ~> ["only|deep", ".*"] or path = ["only"] '
                       'or path = ["deep"] }') == []
    assert store.latest_facts("gone") is None


def test_gc_keeps_recent_things_and_expired_nodes_come_back(store: Store, clock: Clock) -> None:
    seed(store)
    now = T0 + 22 * DAY
    counts = store.gc(now, report_ttl=timedelta(days=14), node_ttl=timedelta(days=21),
                      node_purge_ttl=None)
    # old expires; the reports of day 0 and 5 go (old's, gone's, and two of live's).
    assert counts == {"expired_nodes": 1, "purged_nodes": 0, "reports": 4, "events": 6,
                      "fact_paths": 0}
    assert [r["certname"] for r in store.query("nodes[certname] {}")] == ["live"]
    assert [r["certname"] for r in store.query("reports[certname] {}")] == ["live"] * 3
    store.replace_facts("old", "production", FACTS, now + DAY)
    assert [r["certname"] for r in store.query("nodes[certname] {}")] == ["live", "old"]
    assert store.gc(now, report_ttl=timedelta(days=100), node_ttl=None,
                    node_purge_ttl=None) == {"expired_nodes": 0, "purged_nodes": 0,
                                             "reports": 0, "events": 0, "fact_paths": 0}
