"""The transaction's semantics: order, failure skips, noop, pending, refresh, drift, secrets.

Providers here are an in-memory "system" behind the real Provider contract, so each rule of
the walk is tested on its own; the real providers have their own tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from steward.catalog.model import Catalog, Edge, Resource
from steward.catalog.sensitive import sensitive_placeholder
from steward.engine import transaction
from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError, Unresolved
from steward.engine.report import build_report
from steward.engine.runner import SubprocessRunner


class FakeSystem:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.failing: set[str] = set()
        self.refreshed: list[str] = []
        self.synced: list[str] = []


SYSTEM = FakeSystem()  # reset in place by the autouse fixture


class FakeFile(Provider):
    """A 'file' whose content lives in SYSTEM.values; 'needs' names a key that must exist."""

    type_name = "file"

    def check(self) -> list[Change]:
        needs = self.params.get("group")
        if needs and needs not in SYSTEM.values:
            raise Unresolved(f"group {needs} does not exist")
        current = SYSTEM.values.get(self.name)
        if current == self.params["content"]:
            return []
        return [Change("content", current, self.params["content"], "content changed")]

    def sync(self, changes: list[Change]) -> None:
        if self.name in SYSTEM.failing:
            raise ProviderError(f"cannot write {self.name}")
        SYSTEM.values[self.name] = self.params["content"]
        SYSTEM.synced.append(self.name)


class FakeService(Provider):
    type_name = "service"

    def check(self) -> list[Change]:
        return []

    def refresh(self) -> str | None:
        SYSTEM.refreshed.append(self.name)
        return "restarted"


@pytest.fixture(autouse=True)
def fake_providers(monkeypatch: pytest.MonkeyPatch) -> FakeSystem:
    SYSTEM.__init__()  # type: ignore[misc]
    classes = {"file": FakeFile, "service": FakeService}
    monkeypatch.setattr(transaction, "provider_class", lambda name: classes[name])
    return SYSTEM


def f(path: str, content: str = "x", **extra: Any) -> Resource:
    return Resource("file", path, {"content": content, **extra}, file="profiles/p.yaml", line=3)


def catalog(resources: list[Resource], edges: list[tuple[str, str, str]] = ()) -> Catalog:
    return Catalog(
        node="n1", environment="production", resources=resources,
        edges=[Edge(*e) for e in edges],
    ).seal()


def run(cat: Catalog, tmp_path: Path, *, noop: bool = False,
        secrets: dict[str, str] | None = None) -> dict[str, Any]:
    ctx = Context(runner=SubprocessRunner(), noop=noop, state_dir=tmp_path / "state")
    return build_report(transaction.apply_catalog(cat, ctx, secrets))


def by_ref(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["ref"]: r for r in report["resources"]}


def test_order_follows_edges_then_catalog_order(tmp_path: Path) -> None:
    cat = catalog([f("/c"), f("/a"), f("/b")], [("file[/b]", "file[/c]", "before")])
    report = run(cat, tmp_path)
    assert [r["ref"] for r in report["resources"]] == ["file[/a]", "file[/b]", "file[/c]"]
    assert report["status"] == "changed"
    assert report["exit_code"] == 2


def test_failure_skips_dependents_transitively_naming_the_cause(tmp_path: Path) -> None:
    SYSTEM.failing.add("/a")
    cat = catalog([f("/a"), f("/b"), f("/c"), f("/d")],
                  [("file[/a]", "file[/b]", "required-by"), ("file[/b]", "file[/c]", "before")])
    report = run(cat, tmp_path)
    res = by_ref(report)
    assert res["file[/a]"]["status"] == "failed"
    assert res["file[/a]"]["events"][0]["status"] == "failure"
    assert res["file[/b]"]["status"] == "skipped"
    assert res["file[/c]"]["failed_dependencies"] == ["file[/a]"]
    assert res["file[/d]"]["status"] == "changed"
    assert report["status"] == "failed"
    assert report["exit_code"] == 2 | 4


def test_noop_reports_without_changing_and_exits_pending(tmp_path: Path) -> None:
    report = run(catalog([f("/a", "new")]), tmp_path, noop=True)
    assert SYSTEM.values == {}
    event = report["resources"][0]["events"][0]
    assert event["status"] == "noop"
    assert event["message"].startswith("would have")
    assert report["noop"] is True
    assert report["noop_pending"] is True
    assert report["status"] == "unchanged"
    assert report["exit_code"] == 8


def test_noop_marks_dependents_of_pending_changes_pending_not_failed(tmp_path: Path) -> None:
    cat = catalog([f("deploy", "group"), f("/b", group="deploy"), f("/c", group="other")],
                  [("file[deploy]", "file[/b]", "autorequire")])
    res = by_ref(run(cat, tmp_path, noop=True))
    assert res["file[/b]"]["status"] == "pending"
    assert "file[deploy]" in res["file[/b]"]["message"]
    assert res["file[/c]"]["status"] == "failed"  # nothing pending would create it


def test_refresh_only_when_the_source_changed(tmp_path: Path) -> None:
    svc = Resource("service", "nginx", {})
    cat = catalog([f("/conf", "v1"), svc], [("file[/conf]", "service[nginx]", "notifies")])
    report = run(cat, tmp_path)
    assert SYSTEM.refreshed == ["nginx"]
    assert by_ref(report)["service[nginx]"]["events"][0]["property"] == "refresh"
    SYSTEM.refreshed.clear()
    run(cat, tmp_path)
    assert SYSTEM.refreshed == []


def test_noop_predicts_refresh_without_performing_it(tmp_path: Path) -> None:
    svc = Resource("service", "nginx", {})
    cat = catalog([f("/conf", "v1"), svc], [("file[/conf]", "service[nginx]", "subscription-of")])
    res = by_ref(run(cat, tmp_path, noop=True))
    assert SYSTEM.refreshed == []
    assert res["service[nginx]"]["status"] == "noop"
    assert "would have refreshed" in res["service[nginx]"]["events"][0]["message"]


def test_drift_is_flagged_corrective_but_code_changes_are_not(tmp_path: Path) -> None:
    cat = catalog([f("/motd", "hello")])
    first = run(cat, tmp_path)
    assert first["corrective_change"] is False
    SYSTEM.values["/motd"] = "tampered"
    second = run(cat, tmp_path)
    assert second["resources"][0]["events"][0]["corrective_change"] is True
    assert second["corrective_change"] is True
    third = run(catalog([f("/motd", "hello v2")]), tmp_path)
    assert third["corrective_change"] is False
    assert run(catalog([f("/motd", "hello v2")]), tmp_path)["status"] == "unchanged"


def test_noop_detects_drift_without_recording_history(tmp_path: Path) -> None:
    cat = catalog([f("/motd", "hello")])
    run(cat, tmp_path)
    SYSTEM.values["/motd"] = "tampered"
    noop = run(cat, tmp_path, noop=True)
    assert noop["resources"][0]["events"][0]["corrective_change"] is True
    assert run(cat, tmp_path)["corrective_change"] is True


def test_sensitive_values_never_reach_the_report(tmp_path: Path) -> None:
    secret = "s3cr3t-password"
    res = f("/db.conf", content=sensitive_placeholder("secret:db"))
    report = run(catalog([res]), tmp_path, secrets={"secret:db": secret})
    assert SYSTEM.values["/db.conf"] == secret
    text = json.dumps(report)
    assert secret not in text
    assert report["resources"][0]["events"][0]["new_value"] == "[redacted]"


def test_missing_sensitive_value_fails_that_resource_clearly(tmp_path: Path) -> None:
    res = f("/db.conf", content=sensitive_placeholder("secret:db"))
    report = run(catalog([res, f("/other")]), tmp_path)
    failed = by_ref(report)["file[/db.conf]"]
    assert failed["status"] == "failed"
    assert "secret:db" in failed["message"]
    assert "--secrets" in failed["message"]
    assert by_ref(report)["file[/other]"]["status"] == "changed"


def test_root_sandbox_skips_system_resources(tmp_path: Path) -> None:
    cat = catalog([Resource("service", "nginx", {})])
    ctx = Context(runner=SubprocessRunner(), root=tmp_path, state_dir=tmp_path / "state")
    report = build_report(transaction.apply_catalog(cat, ctx))
    assert report["resources"][0]["status"] == "skipped"
    assert "--root" in report["resources"][0]["message"]
    assert report["status"] == "unchanged"


def test_reports_match_the_published_schema(tmp_path: Path) -> None:
    schema = json.loads((Path(__file__).parents[2] / "schemas/report.schema.json").read_text())
    SYSTEM.failing.add("/bad")
    svc = Resource("service", "nginx", {})
    cat = catalog([f("/a"), f("/bad"), f("/c"), svc],
                  [("file[/bad]", "file[/c]", "before"), ("file[/a]", "service[nginx]",
                                                          "notifies")])
    for noop in (True, False):
        jsonschema.validate(run(cat, tmp_path, noop=noop), schema)


def test_root_sandbox_skips_what_depends_on_unconfined_resources(tmp_path: Path) -> None:
    """Under --root, a prerequisite that an unenforced package would create is not a failure."""
    pkg = Resource("service", "pg", {})
    conf = f("/etc/pg.conf", group="postgres-group")
    unrelated = f("/etc/other.conf", group="missing-group")
    cat = catalog([pkg, conf, unrelated], [("service[pg]", "file[/etc/pg.conf]", "required-by")])
    ctx = Context(runner=SubprocessRunner(), root=tmp_path, state_dir=tmp_path / "state")
    res = by_ref(build_report(transaction.apply_catalog(cat, ctx)))
    assert res["file[/etc/pg.conf]"]["status"] == "skipped"
    assert "service[pg], which --root does not enforce" in res["file[/etc/pg.conf]"]["message"]
    assert res["file[/etc/other.conf]"]["status"] == "failed"
