"""Commands into the store: facts, catalogs, reports, deactivation; on both backends."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from steward.catalog.model import Catalog, Edge, Resource
from steward.engine.report import build_report
from steward.engine.transaction import Event, ResourceResult, RunResult
from steward.errors import CatalogError
from steward.store import Store, StoreError
from steward.store.models import TABLES
from tests.store.backends import Clock, store_url

T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
FACTS = {"os": {"family": "Debian", "release": {"major": "12"}}, "kernel": "Linux",
         "processors": {"count": 4, "models": ["EPYC", "EPYC"]}, "is_virtual": False,
         "load": 0.5, "empty": {}, "nothing": None}


def catalog(node: str = "web1", *, content: str = "hello\n", code_id: str | None = "c1",
            profiles: tuple[str, ...] = ("base", "remote_mgmt")) -> Catalog:
    resources = [
        Resource("package", "nginx", {"ensure": "installed"}, ("profile:base", "role:web"),
                 "profiles/base.yaml", 4),
        Resource("file", "/etc/motd", {"path": "/etc/motd", "content": content},
                 ("profile:base", "role:web"), "profiles/base.yaml", 9),
        Resource("service", "nginx", {"ensure": "running"}, ("profile:base", "role:web"),
                 "profiles/base.yaml", 12),
    ]
    edges = [Edge("package[nginx]", "service[nginx]", "before"),
             Edge("file[/etc/motd]", "service[nginx]", "notifies")]
    return Catalog(node=node, environment="production", resources=resources, edges=edges,
                   code_id=code_id,
                   classification={"roles": ["web"], "profiles": list(profiles)}).seal()


def report(source: Catalog, start: datetime, *, failed: bool = False, noop: bool = False,
           transaction: str | None = None) -> dict[str, Any]:
    results = []
    for resource in source.resources:
        result = ResourceResult(resource, evaluation_time=0.01)
        if resource.type == "file":
            result.status = "noop" if noop else "changed"
            result.events.append(Event("content", "{sha256}aa", "{sha256}bb",
                                       "noop" if noop else "success", "content changed",
                                       corrective_change=True))
        if failed and resource.type == "package":
            result.status = "failed"
            result.events.append(Event("ensure", "absent", "installed", "failure", "boom"))
        if failed and resource.type == "service":
            result.status = "skipped"
            result.failed_dependencies = ["package[nginx]"]
            result.message = "dependency package[nginx] failed"
        results.append(result)
    begin = start.timestamp()
    built = build_report(RunResult(source, noop, results, begin, begin + 2, frozenset(), []))
    built["transaction_uuid"] = transaction or str(uuid.uuid4())
    return built


def one(store: Store, query: str) -> dict[str, Any]:
    rows = store.query(query)
    assert len(rows) == 1, rows
    return rows[0]


# -- facts ----------------------------------------------------------------------------------------


def test_facts_are_stored_per_fact_leaf_and_path(store: Store, clock: Clock) -> None:
    store.replace_facts("web1", "production", FACTS, T0)
    assert store.latest_facts("web1") == FACTS
    assert store.latest_facts("nobody") is None
    facts = store.query('facts[name, value] { certname = "web1" }')
    assert facts == [{"name": n, "value": FACTS[n]} for n in sorted(FACTS)]
    leaves = store.query('fact_contents[path, value] { certname = "web1" }')
    assert leaves == [
        {"path": ["is_virtual"], "value": False},
        {"path": ["kernel"], "value": "Linux"},
        {"path": ["load"], "value": 0.5},
        {"path": ["nothing"], "value": None},
        {"path": ["os", "family"], "value": "Debian"},
        {"path": ["os", "release", "major"], "value": "12"},
        {"path": ["processors", "count"], "value": 4},
        {"path": ["processors", "models", 0], "value": "EPYC"},
        {"path": ["processors", "models", 1], "value": "EPYC"},
    ]
    types = {tuple(r["path"]): r["type"] for r in store.query("fact_paths {}")}
    assert types[("empty",)] == "map"
    assert types[("processors", "models")] == "array"
    assert types[("load",)] == "float"
    assert types[("nothing",)] == "null"
    inventory = one(store, "inventory {}")
    assert inventory == {"certname": "web1", "timestamp": "2024-05-06T12:00:00.000Z",
                         "environment": "production", "facts": FACTS,
                         "trusted": {"certname": "web1"}}
    node = one(store, "nodes[facts_timestamp, facts_environment, catalog_timestamp] {}")
    assert node == {"facts_timestamp": "2024-05-06T10:00:00.000Z",
                    "facts_environment": "production", "catalog_timestamp": None}


def test_older_facts_are_ignored_and_equal_facts_only_touch_timestamps(
        store: Store, clock: Clock) -> None:
    store.replace_facts("web1", "production", FACTS, T0)
    store.replace_facts("web1", "production", {"kernel": "old"}, T0 - timedelta(minutes=1))
    assert store.latest_facts("web1") == FACTS
    clock.now += timedelta(hours=1)
    store.replace_facts("web1", "production", dict(FACTS), T0 + timedelta(minutes=30))
    factset = one(store, "factsets[timestamp, producer_timestamp, hash] {}")
    assert factset["timestamp"] == "2024-05-06T13:00:00.000Z"
    assert factset["producer_timestamp"] == "2024-05-06T10:30:00.000Z"
    store.replace_facts("web1", "staging", {"kernel": "new", "trusted": {"certname": "web1",
                                                                         "extensions": {}}},
                        T0 + timedelta(hours=1))
    assert store.query("facts[name, value, environment] {}") == [
        {"name": "kernel", "value": "new", "environment": "staging"},
        {"name": "trusted", "value": {"certname": "web1", "extensions": {}}, "environment":
         "staging"},
    ]
    assert one(store, "inventory[trusted] {}") == {"trusted": {"certname": "web1",
                                                               "extensions": {}}}
    assert {r["name"] for r in store.query("environments {}")} == {"production", "staging"}


# -- catalogs -------------------------------------------------------------------------------------


def test_catalog_as_puppetdb_resources_and_edges(store: Store) -> None:
    source = catalog()
    store.replace_catalog(source.to_json(), T0)
    resources = store.query("resources[type, title, tags, file, line, exported, parameters] {}")
    assert resources == [
        {"type": "Class", "title": "Profile::Base", "tags": ["class", "profile",
                                                             "profile::base"],
         "file": None, "line": None, "exported": False, "parameters": {}},
        {"type": "Class", "title": "Profile::Remote_mgmt",
         "tags": ["class", "profile", "profile::remote_mgmt"], "file": None, "line": None,
         "exported": False, "parameters": {}},
        {"type": "Class", "title": "Role::Web", "tags": ["class", "role", "role::web"],
         "file": None, "line": None, "exported": False, "parameters": {}},
        {"type": "File", "title": "/etc/motd", "tags": ["profile:base", "role:web"],
         "file": "profiles/base.yaml", "line": 9, "exported": False,
         "parameters": {"content": "hello\n", "path": "/etc/motd"}},
        {"type": "Package", "title": "nginx", "tags": ["profile:base", "role:web"],
         "file": "profiles/base.yaml", "line": 4, "exported": False,
         "parameters": {"ensure": "installed"}},
        {"type": "Service", "title": "nginx", "tags": ["profile:base", "role:web"],
         "file": "profiles/base.yaml", "line": 12, "exported": False,
         "parameters": {"ensure": "running"}},
    ]
    assert store.query("edges[source_type, source_title, relationship, target_type] {}") == [
        {"source_type": "File", "source_title": "/etc/motd", "relationship": "notifies",
         "target_type": "Service"},
        {"source_type": "Package", "source_title": "nginx", "relationship": "before",
         "target_type": "Service"},
    ]
    stored = one(store, "catalogs[certname, hash, version, code_id, environment] {}")
    assert stored == {"certname": "web1", "hash": source.hash, "version": "c1",
                      "code_id": "c1", "environment": "production"}


def test_unchanged_catalog_is_not_rewritten(store: Store) -> None:
    store.replace_catalog(catalog().to_json(), T0)
    resources = TABLES["resources"]
    with store.engine.connect() as conn:
        before = conn.execute(select(resources.c.id).order_by(resources.c.id)).scalars().all()
    store.replace_catalog(catalog().to_json(), T0 + timedelta(minutes=30))
    with store.engine.connect() as conn:
        after = conn.execute(select(resources.c.id).order_by(resources.c.id)).scalars().all()
    assert before == after
    assert one(store, "catalogs[producer_timestamp] {}") == {
        "producer_timestamp": "2024-05-06T10:30:00.000Z"}
    assert one(store, "nodes[catalog_timestamp] {}") == {
        "catalog_timestamp": "2024-05-06T10:30:00.000Z"}
    store.replace_catalog(catalog(content="changed\n").to_json(), T0 + timedelta(minutes=40))
    assert one(store, 'resources[parameters.content] { type = "File" }') == {
        "parameters.content": "changed\n"}
    store.replace_catalog(catalog(content="older\n").to_json(), T0)  # older: ignored
    assert one(store, 'resources[parameters.content] { type = "File" }') == {
        "parameters.content": "changed\n"}


def test_long_titles_are_queryable(store: Store) -> None:
    long_title = "/usr/bin/run " + "x" * 3000
    source = catalog()
    source.resources.append(Resource("exec", long_title, {"command": long_title}))
    store.replace_catalog(source.seal().to_json(), T0)
    rows = store.query(["from", "resources", ["extract", ["type"],
                                              ["=", "title", long_title]]])
    assert rows == [{"type": "Exec"}]
    assert store.query(["from", "resources", ["=", "title", long_title[:-1]]]) == []


def test_malformed_catalogs(store: Store) -> None:
    with pytest.raises(StoreError, match="catalog field 'node' must be a string"):
        store.replace_catalog({"catalog_format": 1}, T0)
    with pytest.raises(CatalogError, match="unsupported catalog_format 7"):
        store.replace_catalog({"catalog_format": 7, "node": "x", "environment": "p"}, T0)


# -- reports --------------------------------------------------------------------------------------


def test_report_and_events(store: Store, clock: Clock) -> None:
    source = catalog()
    document = report(source, T0, failed=True)
    digest = store.store_report(document)
    assert len(digest) == 40
    row = one(store, "reports[hash, certname, status, noop, noop_pending, corrective_change, "
                     "puppet_version, report_format, configuration_version, code_id, "
                     "producer, receive_time, start_time, end_time, catalog_hash, "
                     "exit_code, type] {}")
    assert row == {
        "hash": digest, "certname": "web1", "status": "failed", "noop": False,
        "noop_pending": False, "corrective_change": True, "puppet_version": "0.1.0",
        "report_format": 1, "configuration_version": "c1", "code_id": "c1",
        "producer": "steward", "receive_time": "2024-05-06T12:00:00.000Z",
        "start_time": "2024-05-06T10:00:00.000Z", "end_time": "2024-05-06T10:00:02.000Z",
        "catalog_hash": source.hash, "exit_code": 6, "type": "agent",
    }
    events = store.query("events[status, resource_type, resource_title, property, old_value, "
                         "new_value, message, containing_class, corrective_change, file, "
                         "line, report] {}")
    assert events == [
        {"status": "failure", "resource_type": "Package", "resource_title": "nginx",
         "property": "ensure", "old_value": "absent", "new_value": "installed",
         "message": "boom", "containing_class": "Profile::Base", "corrective_change": False,
         "file": "profiles/base.yaml", "line": 4, "report": digest},
        {"status": "success", "resource_type": "File", "resource_title": "/etc/motd",
         "property": "content", "old_value": "{sha256}aa", "new_value": "{sha256}bb",
         "message": "content changed", "containing_class": "Profile::Base",
         "corrective_change": True, "file": "profiles/base.yaml", "line": 9,
         "report": digest},
        {"status": "skipped", "resource_type": "Service", "resource_title": "nginx",
         "property": None, "old_value": None, "new_value": None,
         "message": "dependency package[nginx] failed", "containing_class": "Profile::Base",
         "corrective_change": False, "file": "profiles/base.yaml", "line": 12,
         "report": digest},
    ]
    node = one(store, "nodes[latest_report_hash, latest_report_status, "
                      "latest_report_corrective_change, report_timestamp] {}")
    assert node == {"latest_report_hash": digest, "latest_report_status": "failed",
                    "latest_report_corrective_change": True,
                    "report_timestamp": "2024-05-06T10:00:02.000Z"}


def test_store_report_is_idempotent(store: Store) -> None:
    document = report(catalog(), T0)
    first = store.store_report(document)
    assert store.store_report(document) == first
    assert store.store_report(dict(document, status="changed")) == first  # same uuid
    assert len(store.query("reports[hash] {}")) == 1
    assert len(store.query("events[status] {}")) == 1


def test_concurrent_duplicates_store_one_report(store: Store) -> None:
    document = report(catalog(), T0)
    results: list[str] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(store.store_report(document))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert len(results) == 4
    assert len(store.query("reports[hash] {}")) == 1


def _failing_node_inserts(store: Store, on: bool) -> None:
    """A trigger that makes the database reject new nodes: the last write of a report."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER fail_nodes BEFORE INSERT ON nodes "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END" if on
                else "DROP TRIGGER fail_nodes")
        elif on:
            conn.exec_driver_sql("CREATE FUNCTION fail_nodes() RETURNS trigger LANGUAGE plpgsql "
                                 "AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$")
            conn.exec_driver_sql("CREATE TRIGGER fail_nodes BEFORE INSERT ON nodes "
                                 "FOR EACH ROW EXECUTE FUNCTION fail_nodes()")
        else:
            conn.exec_driver_sql("DROP TRIGGER fail_nodes ON nodes")
            conn.exec_driver_sql("DROP FUNCTION fail_nodes()")


def test_report_is_stored_whole_or_not_at_all(store: Store) -> None:
    document = report(catalog(), T0)
    _failing_node_inserts(store, True)
    with pytest.raises(DBAPIError, match="disk full"):
        store.store_report(document)
    _failing_node_inserts(store, False)
    assert store.query(["from", "reports", ["extract", ["hash"]]]) == []
    assert store.query(["from", "events", ["extract", ["status"]]]) == []
    assert store.query(["from", "environments"]) == []
    assert store.query(["from", "nodes", ["extract", ["certname"],
                                          ["=", "node_state", "any"]]]) == []
    assert len(store.store_report(document)) == 40
    assert store.query(["from", "environments"]) == [{"name": "production"}]
    assert len(store.query(["from", "events", ["extract", ["status"]]])) == 1


def test_only_newer_reports_become_latest(store: Store) -> None:
    source = catalog()
    newer = store.store_report(report(source, T0 + timedelta(hours=1)))
    store.store_report(report(source, T0, failed=True))
    node = one(store, "nodes[latest_report_hash, latest_report_status] {}")
    assert node == {"latest_report_hash": newer, "latest_report_status": "changed"}
    latest = store.query("reports[hash] { latest_report? = true }")
    assert latest == [{"hash": newer}]


def test_noop_report(store: Store) -> None:
    store.store_report(report(catalog(), T0, noop=True))
    assert one(store, "nodes[latest_report_noop, latest_report_noop_pending] {}") == {
        "latest_report_noop": True, "latest_report_noop_pending": True}
    assert one(store, "events[status] {}") == {"status": "noop"}


@pytest.mark.parametrize(("change", "message"), [
    ({"node": 5}, "report field 'node' is missing or not a string"),
    ({"resources": {}}, "report field 'resources' is missing or not a list"),
    ({"start_time": "yesterday"}, "report field 'start_time': 'yesterday' is not an ISO"),
    ({"resources": [{"resource_type": "file", "title": "x", "status": "changed",
                     "events": [{"property": "mode"}]}]}, "each event needs a 'status'"),
    ({"resources": ["x"]}, "report resources[0] must be an object"),
])
def test_malformed_reports(store: Store, change: dict[str, Any], message: str) -> None:
    document = dict(report(catalog(), T0), **change)
    with pytest.raises(StoreError, match=re.escape(message)):
        store.store_report(document)


# -- deactivation ---------------------------------------------------------------------------------


def test_deactivation_and_revival(store: Store, clock: Clock) -> None:
    store.replace_facts("web1", "production", FACTS, T0)
    store.replace_facts("web2", "production", FACTS, T0)
    store.deactivate_node("web1", T0 + timedelta(minutes=5))
    assert store.query("nodes[certname] {}") == [{"certname": "web2"}]
    store.replace_facts("web1", "production", FACTS, T0 + timedelta(minutes=1))  # older
    assert store.query("nodes[certname] {}") == [{"certname": "web2"}]
    store.store_report(report(catalog("web1"), T0 + timedelta(minutes=10)))
    assert store.query("nodes[certname, deactivated] {}") == [
        {"certname": "web1", "deactivated": None}, {"certname": "web2", "deactivated": None}]
    store.deactivate_node("ghost")  # unknown: recorded, deactivated now
    assert store.query('nodes[certname, deactivated] { certname = "ghost" and '
                       'node_state = "inactive" }') == [
        {"certname": "ghost", "deactivated": "2024-05-06T12:00:00.000Z"}]


def test_naive_timestamps_are_utc(store: Store) -> None:
    store.replace_facts("web1", "production", FACTS, datetime(2024, 5, 6, 10, 0))
    assert one(store, "nodes[facts_timestamp] {}") == {
        "facts_timestamp": "2024-05-06T10:00:00.000Z"}
    with pytest.raises(StoreError, match="producer_timestamp must be a datetime"):
        store.replace_facts("web1", "production", FACTS, "2024-05-06")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="certname must be a non-empty string"):
        store.replace_facts("", "production", FACTS, T0)


def test_rolled_back_environments_are_not_remembered(store: Store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from steward.store import ingest

    def explode(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(ingest, "_update_node", explode)
    with pytest.raises(RuntimeError, match="connection lost"):
        store.replace_facts("web1", "staging", FACTS, T0)
    monkeypatch.undo()
    assert store.query("environments {}") == []
    store.replace_facts("web2", "staging", FACTS, T0)
    assert store.query("environments {}") == [{"name": "staging"}]


def test_fast_report_commits(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        fast = Store(url, durable_reports=False)
        try:
            fast.migrate()
            digest = fast.store_report(report(catalog(), T0))
            assert fast.query("reports[hash] {}") == [{"hash": digest}]
            with fast.engine.connect() as conn:  # facts and catalogs stay durable
                if backend == "postgresql":
                    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            with fast._report_engine.connect() as conn:
                if backend == "postgresql":
                    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        finally:
            fast.close()


def test_report_survives_a_dropped_connection(store: Store) -> None:
    """PostgreSQL stores reports on connections that are not pinged first: one found dead
    is replaced and the report sent again (idempotent, so never stored twice)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    first = store.store_report(report(catalog(), T0))
    with store._report_engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})").scalar()
    second = store.store_report(report(catalog(), T0 + timedelta(hours=1)))
    assert {row["hash"] for row in store.query("reports[hash] {}")} == {first, second}
    assert one(store, "nodes[latest_report_hash] {}") == {"latest_report_hash": second}
