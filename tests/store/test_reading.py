"""The store's typed read API (steward.store.reading), on both backends."""

from __future__ import annotations

from datetime import timedelta

from steward.store import Store
from steward.store.reading import (
    active_nodes,
    facts_of,
    first_report_of_commit,
    other_noop_commit,
    report_resources,
    reports_of_commit,
)
from tests.store.backends import Clock
from tests.store.test_ingest import FACTS, T0, catalog, report


def test_active_nodes_and_their_facts(store: Store) -> None:
    store.replace_facts("web1", "production", FACTS, T0)
    store.replace_facts("db1", "staging", {"kernel": "Linux"}, T0)
    store.replace_facts("gone", "production", FACTS, T0)
    store.replace_catalog(catalog("web1").to_json(), T0)
    store.deactivate_node("gone")
    rows = active_nodes(store.engine)
    assert [(r.certname, r.environment, r.code_id) for r in rows] == [
        ("db1", "staging", None), ("web1", "production", "c1")]
    assert rows[0].inputs is None
    assert rows[0].catalog_hash is None
    assert rows[1].catalog_hash is not None
    assert [r.certname for r in active_nodes(store.engine, "staging")] == ["db1"]
    assert facts_of(store.engine, ["web1", "db1", "nobody"]) == {
        "web1": FACTS, "db1": {"kernel": "Linux"}}


def test_reports_of_a_commit_since_a_time(store: Store, clock: Clock) -> None:
    source = catalog("web1")
    since = clock.now
    noop = store.store_report(report(source, T0, noop=True))
    clock.now += timedelta(seconds=1)
    run = store.store_report(report(source, T0 + timedelta(minutes=1), failed=True))
    found = reports_of_commit(store.engine, ["web1", "db1"], "c1", noop=True, since=since)
    assert [(r.certname, r.hash, r.code_id) for r in found] == [("web1", noop, "c1")]
    assert reports_of_commit(store.engine, ["web1"], "c2", noop=True, since=since) == []
    assert reports_of_commit(store.engine, ["web1"], "c1", noop=True,
                             since=clock.now + timedelta(seconds=1)) == []
    first = first_report_of_commit(store.engine, "web1", "c1", noop=False, since=since)
    assert first is not None
    assert (first.hash, first.status) == (run, "failed")
    assert first_report_of_commit(store.engine, "db1", "c1", noop=False, since=since) is None
    assert other_noop_commit(store.engine, "web1", "c2", since) == "c1"
    assert other_noop_commit(store.engine, "web1", "c1", since) is None


def test_report_resources_are_the_statuses_sent(store: Store) -> None:
    digest = store.store_report(report(catalog("web1"), T0, failed=True))
    statuses = {r["resource_type"] + "[" + r["title"] + "]": r["status"]
                for r in report_resources(store.engine, digest)}
    assert statuses["package[nginx]"] == "failed"
    assert statuses["service[nginx]"] == "skipped"
    assert report_resources(store.engine, "0" * 40) == []
