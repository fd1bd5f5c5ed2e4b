"""Live prediction end to end: a real server process asks real pull agents to run a change's
proposed catalog in noop, and the impact report shows what would really change on each
machine — including drift made by hand that the static diff cannot see.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from tests.e2e.harness import (
    SECRET_VALUE,
    AgentNode,
    Server,
    call,
    create_identity,
    database_url,
    free_port,
    make_node,
    ok,
    pipeline_server,
    steward,
    steward_env,
    write_repo,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "impact-report.schema.json").read_text(encoding="utf-8"))

NODES = ("web1", "web2", "web3")
LIVE_TIMEOUT = 12.0


@pytest.fixture(scope="module")
def live_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"live-{backend}")
    repo = write_repo(tmp / "repo")
    (repo / "steward.yaml").write_text("default_environment: staging\n", encoding="utf-8")
    with database_url(backend, tmp, "live") as url, \
            pipeline_server(tmp, repo, url, policies=False) as srv:
        yield srv


def _add_unreachable_ssh_node(server: Server, certname: str, *, like: str) -> None:
    from datetime import UTC, datetime

    from steward.store import Store

    server.api("POST", "/api/v1/nodes", json={
        "certname": certname, "host": "127.0.0.1", "port": free_port(), "user": "root",
        "trust_on_first_use": True})
    url = json.loads((server.data_dir / "config.json").read_text())["database_url"]
    store = Store(url)
    try:
        facts = store.latest_facts(like)
        assert facts is not None
        store.replace_facts(certname, "staging", facts, datetime.now(UTC))
    finally:
        store.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_live_prediction_shows_drift_the_static_diff_cannot_see(
    live_server: Server, tmp_path: Path
) -> None:
    server = live_server
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "live", "expires_in": 600})["token"]
    nodes: dict[str, AgentNode] = {name: make_node(tmp_path, name, server) for name in NODES}
    for node in nodes.values():
        first = node.once(join_token=join)
        assert first.returncode == 2, first.stdout + first.stderr
    # web3's agent is not running: it cannot answer.
    for name in ("web1", "web2"):
        nodes[name].start("--interval", "1h")
    try:
        for name in ("web1", "web2"):
            nodes[name].wait_for("run 1:", 30)
        # An agentless node the server can no longer reach: it ran before (its facts are in
        # the store), now nothing listens on its SSH port.
        _add_unreachable_ssh_node(server, "ssh1", like="web1")
        planner = create_identity(server, "planner-bot", "agent", "planner")
        alice = create_identity(server, "alice", "human", "approver")

        # Drift on web1, by hand: a looser mode on the secret's file. Nothing in the change
        # touches that file, so the static diff cannot know.
        token_file = nodes["web1"].root / "etc/app/token"
        os.chmod(token_file, 0o644)
        # And on web2 the secret file's content itself: the prediction must say so without
        # ever showing the secret.
        (nodes["web2"].root / "etc/app/token").write_text("tampered\n")

        profile = (Path(server.data_dir).parent / "repo" / "profiles" / "app.yaml").read_text()
        change = ok(call(server, "POST", "/api/v1/changes", planner, json={
            "environment": "staging", "title": "Friendlier greeting",
            "edits": {"profiles/app.yaml": profile.replace("hello {{ node }}",
                                                           "ahoy {{ node }}")}}))
        cid = change["id"]
        head = change["head"]
        static = ok(call(server, "GET", f"/api/v1/changes/{cid}/impact", planner))
        assert sorted(n["certname"] for n in static["nodes"]) == sorted([*NODES, "ssh1"])
        web1_static = next(n for n in static["nodes"] if n["certname"] == "web1")
        assert [r["resource"] for r in web1_static["resources"]] == ["file[/etc/app/greeting]"]
        assert all(n["live"] is None for n in static["nodes"])

        # An approval of the static report, which the live analysis will void.
        approved = ok(call(server, "POST", f"/api/v1/changes/{cid}/approve", alice, json={
            "head": head, "digest": static["digest"]}))
        assert [a["approver"]["name"] for a in approved["gates"]["approval"]["valid"]] == \
            ["alice"], approved["gates"]

        # -- live prediction over REST --------------------------------------------------
        view = ok(call(server, "POST", f"/api/v1/changes/{cid}/analyse", planner,
                         json={"live": True, "timeout": LIVE_TIMEOUT}))
        report = ok(call(server, "GET", f"/api/v1/changes/{cid}/impact", planner))
        jsonschema.Draft202012Validator(SCHEMA).validate(report)  # incl. every live answer
        live = {n["certname"]: n["live"] for n in report["nodes"]}

        web1 = live["web1"]
        assert web1["status"] == "reported", web1
        assert web1["exit_code"] == 8, web1  # noop: changes pending
        events = {(e["resource"], e["property"]): e for e in web1["events"]}
        drift = events[("file[/etc/app/token]", "mode")]
        assert drift["corrective_change"] is True
        assert (drift["old"], drift["new"]) == ("0644", "0600")
        content = events[("file[/etc/app/greeting]", "content")]
        assert content["corrective_change"] is False  # the change itself, not drift
        assert "+ahoy web1" in content["diff"]

        web2 = live["web2"]
        assert web2["status"] == "reported", web2
        assert [(e["resource"], e["property"], e["corrective_change"])
                for e in web2["events"]] == [("file[/etc/app/greeting]", "content", False),
                                             ("file[/etc/app/token]", "content", True)]
        secret_event = web2["events"][1]
        assert "diff" not in secret_event
        assert "tampered" not in json.dumps(secret_event)

        web3 = live["web3"]
        assert web3["status"] == "timeout", web3
        assert web3["report"] is None
        assert web3["events"] == []
        assert "did not ask" in web3["detail"]

        ssh1 = live["ssh1"]
        assert ssh1["status"] == "unreachable", ssh1
        assert "could not be carried out" in ssh1["detail"], ssh1

        # The static diff is unchanged; the digest covers the live results and is new.
        web1_entry = next(n for n in report["nodes"] if n["certname"] == "web1")
        assert web1_entry["resources"] == web1_static["resources"]
        from steward.pipeline.impact.report import ImpactReport

        assert ImpactReport.from_json(report).verify_digest()
        assert report["digest"] != static["digest"]
        assert view["impact"]["digest"] == report["digest"]
        # Approvers bind to what they saw: alice's approval is void now.
        assert view["gates"]["approval"]["valid"] == [], view["gates"]
        assert [v["approver"]["name"] for v in view["gates"]["approval"]["void"]] == ["alice"]
        assert SECRET_VALUE not in json.dumps(report)

        # The reports named are the nodes' noop runs of the head commit.
        stored = {r["hash"]: r for r in server.reports("web1")}
        assert stored[web1["report"]]["noop"] is True
        assert stored[web1["report"]]["code_id"] == head

        # A prediction changes nothing: the drift and the old greeting are still there, and
        # the agents did not cache the proposed catalog.
        assert _mode(token_file) == 0o644
        assert (nodes["web1"].root / "etc/app/greeting").read_text() == "hello web1\n"
        cached = json.loads((nodes["web1"].state / "catalog.json").read_text())
        assert cached["catalog"]["code_id"] == report["change"]["base"]
        nodes["web1"].wait_for("live prediction of", 5)

        # -- the readable rendering ---------------------------------------------------------
        shown = server.cli("change", "impact", cid)
        assert shown.returncode == 0, shown.stderr
        assert "Live prediction" in shown.stdout
        assert "web1: reported" in shown.stdout
        assert "file[/etc/app/token] mode" in shown.stdout
        assert "drift" in shown.stdout
        assert "web3: timeout" in shown.stdout
        assert SECRET_VALUE not in shown.stdout

        # -- the grant: only the commit a live request asked for, only while it lasts -------
        web1_token = nodes["web1"].token()
        other = "0" * 40
        refused = call(server, "GET", f"/api/v1/nodes/web1/catalog?commit={other}",
                        web1_token)
        assert refused.status_code == 403, refused.text
        assert "no live prediction has asked" in refused.text
        # web3 never took its request (withdrawn at the timeout): no grant.
        refused = call(server, "GET", f"/api/v1/nodes/web3/catalog?commit={head}",
                        nodes["web3"].token())
        assert refused.status_code == 403, refused.text
        # web1's own grant ended with the prediction (its timeout): refused now too.
        expired = call(server, "GET", f"/api/v1/nodes/web1/catalog?commit={head}",
                        web1_token)
        assert expired.status_code == 403, expired.text
        # The proposed catalog never became the node's catalog of record.
        node_record = server.api("GET", "/api/v1/nodes/web1")
        assert node_record["last_catalog_hash"] == cached["catalog"]["hash"]
        # A malformed commit is refused before anything is looked up.
        bad = call(server, "GET", "/api/v1/nodes/web1/catalog?commit=HEAD", web1_token)
        assert bad.status_code == 422, bad.text

        # -- the CLI's --live -----------------------------------------------------------------
        cli = steward("change", "impact", cid, "--live", "--timeout", "5", "--json",
                      env=steward_env(STEWARD_SERVER=server.url, STEWARD_TOKEN=planner,
                                      STEWARD_CA_CERT=str(server.ca)), timeout=180)
        assert cli.returncode == 0, cli.stderr
        again = json.loads(cli.stdout)
        statuses = {n["certname"]: n["live"]["status"] for n in again["nodes"]}
        assert statuses == {"web1": "reported", "web2": "reported", "web3": "timeout",
                            "ssh1": "unreachable"}
        audit = server.api("GET", "/api/v1/audit", params={"limit": 500})
        assert any(e["action"] == "change.live_prediction" for e in audit), audit[:5]
    finally:
        for node in nodes.values():
            node.stop()
