"""Live prediction's parts on a real database: run requests that carry a commit (never
coalesced with ordinary runs, granted only once claimed and until they expire), the report
with live results attached (digest recomputed) and its rendering."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from steward.pipeline.impact.live import LiveResult, attach_results, live_counts, live_targets
from steward.pipeline.impact.render import render_text
from steward.pipeline.impact.report import ImpactReport
from steward.server.db import SERVER_ENGINE
from steward.server.migrate import migrate
from steward.server.runs import RunSignals
from steward.store.db import make_engine
from tests.e2e.harness import database_url

HEAD = "a" * 40
OTHER = "b" * 40


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database_url(str(request.param), tmp_path, "live_runs") as url:
        eng = make_engine(url, **SERVER_ENGINE)
        migrate(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def _request(signals: RunSignals, certname: str, **kwargs: Any) -> int:
    return asyncio.run(signals.request(certname, "tester", **kwargs))


def test_live_requests_are_not_coalesced_with_ordinary_runs(engine: Engine) -> None:
    signals = RunSignals(engine)
    plain = _request(signals, "web1")
    live1 = _request(signals, "web1", commit=HEAD, environment="staging", change_id="chg-1")
    live2 = _request(signals, "web1", commit=HEAD, environment="staging", change_id="chg-1")
    other = _request(signals, "web1", commit=OTHER, environment="staging", change_id="chg-2")
    first = signals.claim("web1")
    assert first is not None
    assert (first.ids, first.commit, first.noop) == ((plain,), None, False)
    second = signals.claim("web1")
    assert second is not None
    assert (second.ids, second.commit, second.environment, second.change_id, second.noop) == \
        ((live1, live2), HEAD, "staging", "chg-1", True)
    third = signals.claim("web1")
    assert third is not None
    assert (third.ids, third.commit) == ((other,), OTHER)
    assert signals.claim("web1") is None


def test_a_grant_needs_a_claimed_unexpired_request_of_that_node(engine: Engine) -> None:
    signals = RunSignals(engine)
    _request(signals, "web1", commit=HEAD, environment="staging", change_id="chg-1")
    assert signals.grant("web1", HEAD) is None  # not taken yet
    claimed = signals.claim("web1")
    assert claimed is not None
    grant = signals.grant("web1", HEAD)
    assert grant is not None
    assert (grant.commit, grant.environment, grant.change_id) == (HEAD, "staging", "chg-1")
    assert signals.grant("web2", HEAD) is None
    assert signals.grant("web1", OTHER) is None
    signals.fail(claimed.ids, "could not reach it")
    assert signals.grant("web1", HEAD) is None
    assert signals.states(list(claimed.ids))[claimed.ids[0]].error == "could not reach it"


def test_expired_live_requests_are_closed_never_run(engine: Engine) -> None:
    signals = RunSignals(engine)
    old = _request(signals, "web1", commit=HEAD, environment="staging",
                   expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert signals.claim("web1") is None
    state = signals.states([old])[old]
    assert state.claimed_at is not None
    assert state.error is not None
    assert "expired" in state.error
    assert signals.grant("web1", HEAD) is None


def test_a_withdrawn_request_is_not_claimed(engine: Engine) -> None:
    signals = RunSignals(engine)
    request_id = _request(signals, "web1", commit=HEAD, environment="staging")
    assert signals.withdraw(request_id, "timed out") is True
    assert signals.withdraw(request_id, "timed out") is False
    assert signals.claim("web1") is None


def test_a_commit_request_needs_its_environment(engine: Engine) -> None:
    with pytest.raises(ValueError, match="environment"):
        _request(RunSignals(engine), "web1", commit=HEAD)


def _report() -> dict[str, Any]:
    def node(certname: str, status: str) -> dict[str, Any]:
        return {"certname": certname, "status": status,
                "current": {"catalog": None, "code_id": None, "stored": None, "error": None},
                "proposed": {"catalog": None, "code_id": HEAD, "environment": "staging"},
                "classification": None, "resources": [], "edges": [], "error": None,
                "live": None}

    from steward.catalog.canonical import content_hash

    report: dict[str, Any] = {
        "format": 1,
        "change": {"id": "chg-1", "environment": "staging", "base": OTHER, "head": HEAD,
                   "proposer": None, "changed_files": [], "changed_data_keys": []},
        "selection": {"mode": "inputs", "reason": "test", "nodes_in_environment": 3,
                      "nodes_recompiled": 3, "nodes_without_inputs": 0,
                      "nodes_classified_from_other_environments": 0},
        "summary": {"nodes_affected": 2, "nodes_failed": 0, "nodes_unchanged": 1,
                    "nodes_changed": 1, "nodes_new": 1, "nodes_removed": 0,
                    "resources_added": 0, "resources_removed": 0, "resources_modified": 0,
                    "blast_radius": {"nodes": 2, "resources": 0, "percent": 66.67},
                    "risk": "low", "risk_reasons": []},
        "nodes": [node("db1", "unchanged"), node("web1", "changed"), node("web2", "new")],
    }
    report["digest"] = content_hash(report)
    return report


def test_attached_results_are_covered_by_a_new_digest() -> None:
    report = _report()
    targets = live_targets(report)
    assert [(t.certname, t.environment) for t in targets] == [("web1", "staging"),
                                                              ("web2", "staging")]
    results = {
        "web1": LiveResult("web1", "reported", exit_code=8, report="r1", events=(
            {"resource": "file[/etc/app/token]", "property": "mode", "old": "0644",
             "new": "0600", "corrective_change": True},)),
        "web2": LiveResult("web2", "timeout", detail="the node did not ask"),
    }
    attached = attach_results(report, results)
    assert ImpactReport.from_json(attached).verify_digest()
    assert attached["digest"] != report["digest"]
    assert report["nodes"][1]["live"] is None  # the input is not modified
    live = {n["certname"]: n["live"] for n in attached["nodes"]}
    assert live["db1"] is None
    assert live["web1"]["status"] == "reported"
    assert live["web2"] == {"status": "timeout", "exit_code": None, "report": None,
                            "events": [], "failures": [], "detail": "the node did not ask"}
    assert live_counts(results) == {"reported": 1, "timeout": 1, "unreachable": 0,
                                    "events": 1, "corrective": 1}
    text = render_text(ImpactReport.from_json(attached))
    assert "Live prediction" in text
    assert "1 reported, 1 timeout" in text
    assert "file[/etc/app/token] mode: \"0644\" → \"0600\"  [drift" in text
    assert "web2: timeout" in text
