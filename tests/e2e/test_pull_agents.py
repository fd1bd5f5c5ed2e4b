"""The control plane end to end: a real server process, real pull agents in sandboxes.

Each test runs against SQLite and PostgreSQL (see conftest.py). Agents are subprocesses
(``python -m steward agent``) with their own ``--root``; operators use the real CLI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.e2e.harness import SECRET_VALUE, Server, make_node


def test_join_token_enrollment_converges_several_agents(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    nodes = [make_node(tmp_path, f"join{i}", server) for i in range(3)]
    for node in nodes:
        done = node.once(join_token=join_token)
        assert done.returncode == 2, done.stdout + done.stderr  # changes made
        assert "enrolled with the join token" in done.stdout
        assert (node.root / "etc/app/greeting").read_text() == f"hello {node.certname}\n"
        # The node's own secret reached it (and only in the managed file, mode 0600).
        token_file = node.root / "etc/app/token"
        assert token_file.read_text() == SECRET_VALUE
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert SECRET_VALUE not in done.stdout + done.stderr
        credential = node.state / "credential.json"
        assert credential.stat().st_mode & 0o777 == 0o600
    again = nodes[0].once()
    assert again.returncode == 0, again.stdout + again.stderr  # in sync: nothing to do
    for node in nodes:
        reports = server.reports(node.certname)
        assert len(reports) == (2 if node is nodes[0] else 1)
        assert all(SECRET_VALUE not in json.dumps(r) for r in reports)
    listed = server.cli("node", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {n["certname"]: n["status"] for n in json.loads(listed.stdout)}
    assert all(statuses[n.certname] == "approved" for n in nodes)


def test_enrollment_by_operator_approval(server: Server, tmp_path: Path) -> None:
    node = make_node(tmp_path, "approved1", server)
    node.start("--interval", "1h", "--retry", "500ms")
    try:
        node.wait_for("waiting for an operator", timeout=20)
        pending = json.loads(server.cli("node", "list", "--status", "pending", "--json").stdout)
        assert [n["certname"] for n in pending] == ["approved1"]
        assert pending[0]["pending_request"]
        approved = server.cli("node", "approve", "approved1")
        assert approved.returncode == 0, approved.stderr
        assert "approved approved1" in approved.stdout
        node.wait_for("enrollment approved", timeout=30)
        node.wait_for("(server); exit 2", timeout=15)
    finally:
        node.stop()
    assert (node.root / "etc/app/greeting").exists()
    assert len(server.reports("approved1")) == 1


def test_run_now_starts_a_run_within_seconds(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    node = make_node(tmp_path, "runnow1", server)
    node.start("--interval", "1h", join_token=join_token)
    try:
        node.wait_for("run 1:", timeout=20)
        time.sleep(0.5)  # the agent is now in its long poll
        asked = time.monotonic()
        requested = server.cli("node", "run", "runnow1")
        assert requested.returncode == 0, requested.stderr
        node.wait_for("run 2:", timeout=10)
        assert time.monotonic() - asked < 5
    finally:
        node.stop()
    assert "run requested by an operator" in "\n".join(node.lines)


def test_a_node_cannot_read_another_nodes_catalog_and_the_denial_is_audited(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    alice, bob = make_node(tmp_path, "alice", server), make_node(tmp_path, "bob", server)
    assert alice.once(join_token=join_token).returncode == 2
    assert bob.once(join_token=join_token).returncode == 2
    with server.client(alice.token()) as client:
        stolen = client.get("/api/v1/nodes/bob/catalog")
        assert stolen.status_code == 403
        assert "may not act for node 'bob'" in stolen.json()["error"]
        assert SECRET_VALUE not in stolen.text
        forged = client.post("/api/v1/nodes/bob/reports", json={"node": "bob"})
        assert forged.status_code == 403
        facts = client.put("/api/v1/nodes/bob/facts", json={"values": {}})
        assert facts.status_code == 403
        queried = client.get("/pdb/query/v4", params={"query": "nodes {}"})
        assert queried.status_code == 403
        own = client.get("/api/v1/nodes/alice/catalog")
        assert own.status_code == 200
        assert own.json()["sensitive_values"]
    denials = server.api("GET", "/api/v1/audit", params={"outcome": "denied"})
    alice_denials = [d for d in denials if d["actor"] == "node:alice"]
    assert {d["target"] for d in alice_denials} >= {"bob"}
    assert any(d["action"] == "GET /api/v1/nodes/bob/catalog" for d in alice_denials)
    assert len(alice_denials) >= 4


def test_revocation_takes_effect_on_the_next_request(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    node = make_node(tmp_path, "revoked1", server)
    assert node.once(join_token=join_token).returncode == 2
    token = node.token()
    with server.client(token) as client:
        assert client.get("/api/v1/nodes/revoked1/catalog").status_code == 200
        revoked = server.cli("node", "revoke", "revoked1")
        assert revoked.returncode == 0, revoked.stderr
        after = client.get("/api/v1/nodes/revoked1/catalog")
        assert after.status_code == 401
        assert "revoked" in after.json()["error"]
    run = node.once()
    assert run.returncode == 1
    assert "refused this node's credential" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    # A join token does not re-admit a revoked node: it waits for an operator.
    retry = node.once(join_token=join_token)
    assert retry.returncode == 1
    assert "waiting for an operator" in retry.stdout
    denials = server.api("GET", "/api/v1/audit", params={"outcome": "denied"})
    assert any("revoked" in (d["reason"] or "") for d in denials)


def test_server_killed_mid_run_loses_no_report(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    node = make_node(tmp_path, "crash1", server)
    node.start("--interval", "300ms", join_token=join_token)
    try:
        node.wait_for("(server);", timeout=20)
        server.kill()
        # The agent keeps enforcing its cached catalog and queues every report.
        node.wait_for("(cache);", timeout=20, count=3)
        tampered = node.mark()
        (node.root / "etc/app/greeting").write_text("tampered\n")
        node.wait_for("(cache); exit 2", timeout=20, since=tampered)
        assert (node.root / "etc/app/greeting").read_text() == "hello crash1\n"
        queued = len(list((node.state / "spool").glob("*.json")))
        assert queued >= 3
        restarted = node.mark()
        server.start()
        node.wait_for("(server);", timeout=30, since=restarted)
        assert "queued 0" in next(line for line in node.read()[restarted:]
                                  if "(server);" in line)
    finally:
        node.stop()
    uuids = node.report_uuids()
    assert len(uuids) >= 5
    stored = {r["transaction_uuid"]: r for r in server.reports("crash1")}
    missing = [u for u in uuids if u not in stored]
    assert missing == [], f"reports lost: {missing}"
    assert list((node.state / "spool").glob("*.json")) == []
    # The correction made offline is in the store, flagged as drift.
    assert any(r.get("corrective_change") for r in stored.values())


def test_drift_is_corrected_and_reported(server: Server, join_token: str,
                                         tmp_path: Path) -> None:
    node = make_node(tmp_path, "drift1", server)
    assert node.once(join_token=join_token).returncode == 2
    (node.root / "etc/app/greeting").write_text("edited by hand\n")
    corrected = node.once()
    assert corrected.returncode == 2
    assert (node.root / "etc/app/greeting").read_text() == "hello drift1\n"
    latest = max(server.reports("drift1"), key=lambda r: r["end_time"])
    assert latest["corrective_change"] is True


def test_query_over_https_with_the_cli(server: Server, join_token: str,
                                       tmp_path: Path) -> None:
    node = make_node(tmp_path, "query1", server)
    assert node.once(join_token=join_token).returncode == 2
    as_json = server.cli("query", 'nodes[certname] { certname = "query1" }', "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{"certname": "query1"}]
    table = server.cli("query", 'nodes[certname] { certname = "query1" }')
    assert table.returncode == 0, table.stderr
    assert "query1" in table.stdout
    broken = server.cli("query", "nodes[certname] { certname = }")
    assert broken.returncode != 0
    assert "400" in broken.stderr
    assert "Traceback" not in broken.stderr
    # PuppetDB's own endpoints, as PuppetDB clients call them (X-Authentication header).
    with httpx.Client(base_url=server.url, verify=server.tls(),
                      headers={"X-Authentication": server.admin_token}) as client:
        rows = client.get("/pdb/query/v4/nodes",
                          params={"query": '["=", "certname", "query1"]'}).json()
        assert [r["certname"] for r in rows] == ["query1"]
        one = client.get("/pdb/query/v4/nodes/query1")
        assert one.status_code == 200
        assert one.json()["certname"] == "query1"
        posted = client.post("/pdb/query/v4", json={"query": "nodes[certname] {}",
                                                    "limit": 1})
        assert posted.status_code == 200
        assert len(posted.json()) == 1


def test_a_compile_error_keeps_the_last_good_catalog_enforced(
    server: Server, join_token: str, tmp_path: Path
) -> None:
    node = make_node(tmp_path, "broken2", server)
    assert node.once(join_token=join_token).returncode == 2
    profile = server.data_dir.parent / "repo" / "profiles" / "app.yaml"
    original = profile.read_text()
    (node.root / "etc/app/greeting").write_text("drifted\n")
    try:
        profile.write_text(original + "  nonsense[x]: {}\n")
        run = node.once()
    finally:
        profile.write_text(original)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "(cache)" in run.stdout
    assert "could not compile the catalog" in run.stdout
    assert (node.root / "etc/app/greeting").read_text() == "hello broken2\n"
    latest = max(server.reports("broken2"), key=lambda r: r["end_time"])
    assert latest["corrective_change"] is True
    logs = latest["logs"]["data"]  # PuppetDB's shape: {"href": ..., "data": [...]}
    assert any("could not compile" in entry["message"] for entry in logs)
