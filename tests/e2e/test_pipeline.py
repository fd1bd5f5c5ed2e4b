"""The change pipeline end to end, on a real server process with real pull agents.

A planner agent proposes, the impact analysis names the right nodes and properties, the
policies judge it, self-approval is refused, humans approve, an executor agent deploys in
batches; a second change fails on one node and halts the rollout; the rollback restores the
nodes; the audit log verifies, then an edited row makes verification fail.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    SECRET_VALUE,
    AgentNode,
    Server,
    call,
    create_identity,
    database_url,
    make_node,
    ok,
    pipeline_server,
    steward,
    steward_env,
)

NODES = ("web1", "web2", "web3", "web4")


def _write_repo(repo: Path) -> Path:
    (repo / "profiles").mkdir(parents=True)
    (repo / "roles").mkdir()
    (repo / "steward.yaml").write_text("default_environment: staging\n", encoding="utf-8")
    (repo / "profiles" / "app.yaml").write_text(
        "parameters:\n"
        "  token: {type: string, default: {secret: app_token}}\n"
        "  greeting: {type: string, default: hello}\n"
        "resources:\n"
        "  directory[/etc/app]:\n    mode: \"0755\"\n"
        "  file[/etc/app/greeting]:\n    content: \"{{ params.greeting }} {{ node }}\\n\"\n"
        "    mode: \"0644\"\n"
        "  file[/etc/app/token]:\n    content: \"{{ params.token }}\"\n    mode: \"0600\"\n",
        encoding="utf-8",
    )
    (repo / "roles" / "base.yaml").write_text("profiles:\n  app: {}\n", encoding="utf-8")
    (repo / "classification.yaml").write_text(
        "rules:\n  - name: all\n    match: {node: \"*\"}\n    role: base\n", encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
def pipeline(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"pipeline-{backend}")
    with database_url(backend, tmp, "pipeline") as url, \
            pipeline_server(tmp, _write_repo(tmp / "repo"), url) as srv:
        yield srv


def _reviewed(server: Server, change_id: str) -> dict[str, Any]:
    """The head and impact digest a reviewer (or deployer) reads and sends back."""
    change = server.api("GET", f"/api/v1/changes/{change_id}")
    return {"head": change["head"], "digest": change["impact_digest"]}


def _deploy(server: Server, change_id: str, token: str, **strategy: Any) -> dict[str, Any]:
    started = ok(call(server, "POST", f"/api/v1/changes/{change_id}/deploy", token,
                        json={"strategy": {"node_timeout": 60, **strategy},
                              **_reviewed(server, change_id)}))
    import time

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        deployment: dict[str, Any] = server.api("GET", f"/api/v1/deployments/{started['id']}")
        # The change's state (and a rollback's parent's) is recorded right after the rollout.
        if deployment["state"] != "running" and deployment["change_state"] != "deploying":
            return deployment
        time.sleep(0.3)
    raise AssertionError(f"deployment {started['id']} did not finish")


def test_propose_analyse_approve_deploy_halt_rollback_audit(
    pipeline: Server, backend: str, tmp_path: Path
) -> None:
    server = pipeline
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "pipeline", "expires_in": 600})["token"]
    nodes: list[AgentNode] = [make_node(tmp_path, name, server) for name in NODES]
    for node in nodes:
        first = node.once(join_token=join)
        assert first.returncode == 2, first.stdout + first.stderr
        assert (node.root / "etc/app/greeting").read_text() == f"hello {node.certname}\n"
    for node in nodes:
        node.start("--interval", "1h")
    try:
        planner = create_identity(server, "planner-bot", "agent", "planner")
        executor = create_identity(server, "exec-bot", "agent", "executor")
        alice = create_identity(server, "alice", "human", "approver")
        bob = create_identity(server, "bob", "human", "approver@staging")

        # -- 1. the planner proposes; the analysis names the nodes and the property ------
        data = {"greeting": "ahoy"}
        change = ok(call(server, "POST", "/api/v1/changes", planner, json={
            "environment": "staging", "title": "Friendlier greeting",
            "edits": {"data/common.yaml": "app::greeting: ahoy\n"}}))
        cid = change["id"]
        assert change["state"] == "analysed", change
        assert change["proposer"] == {"kind": "agent", "name": "planner-bot"}
        report = ok(call(server, "GET", f"/api/v1/changes/{cid}/impact", planner))
        assert report["summary"]["nodes_affected"] == 4
        assert sorted(n["certname"] for n in report["nodes"]) == list(NODES)
        web1 = next(n for n in report["nodes"] if n["certname"] == "web1")
        [resource] = web1["resources"]
        assert resource["resource"] == "file[/etc/app/greeting]"
        assert resource["action"] == "modify"
        [prop] = resource["properties"]
        assert (prop["name"], prop["before"], prop["after"]) == \
            ("content", "hello web1\n", f"{data['greeting']} web1\n")
        assert SECRET_VALUE not in json.dumps(report)
        # 100% of staging: the soft-mandatory blast-radius policy fails.
        assert change["policy"]["needs_override"] == ["blast_radius"]

        # -- 2. separation of duties ---------------------------------------------------
        refused = call(server, "POST", f"/api/v1/changes/{cid}/approve", planner,
                       json=_reviewed(server, cid))
        assert refused.status_code == 403, refused.text
        assert "own change" in refused.text or "change:approve" in refused.text
        early = call(server, "POST", f"/api/v1/changes/{cid}/deploy", executor,
                     json=_reviewed(server, cid))
        assert early.status_code == 409, early.text  # not approved
        denied = call(server, "POST", f"/api/v1/changes/{cid}/deploy", planner,
                      json=_reviewed(server, cid))
        assert denied.status_code == 403, denied.text
        assert "change:deploy" in denied.text

        # -- 3. humans review: an override and two approvals (blast radius > 25%) -------
        ok(call(server, "POST", f"/api/v1/changes/{cid}/override", alice,
                  json={**_reviewed(server, cid),
                        "policy": "blast_radius", "reason": "staging-wide by design"}))
        view = ok(call(server, "POST", f"/api/v1/changes/{cid}/approve", alice,
                       json=_reviewed(server, cid)))
        assert view["state"] == "analysed"
        assert any("1 more approval" in w for w in view["gates"]["waiting_for"]), view
        view = ok(call(server, "POST", f"/api/v1/changes/{cid}/approve", bob,
                       json=_reviewed(server, cid)))
        assert view["state"] == "approved", view["gates"]

        # -- 4. the executor deploys in batches -------------------------------------------
        deployment = _deploy(server, cid, executor, canary=1, batch_size="2")
        assert deployment["state"] == "succeeded", deployment
        assert [n["batch"] for n in deployment["nodes"]] == [0, 1, 1, 2]
        for node in nodes:
            assert (node.root / "etc/app/greeting").read_text() == f"ahoy {node.certname}\n"
        assert server.api("GET", f"/api/v1/changes/{cid}")["state"] == "deployed"

        # -- 5. a change that fails on web2 halts the rollout ------------------------------
        (nodes[1].root / "etc/app/conf.d").write_text("in the way\n")
        bad = ok(call(server, "POST", "/api/v1/changes", planner, json={
            "environment": "staging", "title": "Add conf.d",
            "edits": {"profiles/app.yaml": (Path(server.data_dir).parent / "repo" / "profiles"
                                            / "app.yaml").read_text()
                      + "  directory[/etc/app/conf.d]:\n    mode: \"0755\"\n"}}))
        bid = bad["id"]
        ok(call(server, "POST", f"/api/v1/changes/{bid}/override", alice,
                  json={**_reviewed(server, bid), "policy": "blast_radius", "reason": "test"}))
        ok(call(server, "POST", f"/api/v1/changes/{bid}/approve", alice,
                json=_reviewed(server, bid)))
        assert ok(call(server, "POST", f"/api/v1/changes/{bid}/approve", bob,
                       json=_reviewed(server, bid)))["state"] == \
            "approved"
        halted = _deploy(server, bid, executor, canary=1, batch_size="2", max_failures=1)
        assert halted["state"] == "halted", halted
        statuses = {n["certname"]: n["status"] for n in halted["nodes"]}
        assert statuses == {"web1": "succeeded", "web2": "failed", "web3": "succeeded",
                            "web4": "skipped"}, halted
        assert not (nodes[3].root / "etc/app/conf.d").exists()  # untouched
        assert server.api("GET", f"/api/v1/changes/{bid}")["state"] == "failed"

        # -- 6. rollback on the fast path ---------------------------------------------------
        rollback = ok(call(server, "POST", f"/api/v1/changes/{bid}/rollback", executor))
        assert rollback["kind"] == "rollback"
        assert rollback["state"] == "approved", rollback["gates"]
        undone = _deploy(server, rollback["id"], executor, canary=0, batch_size="100%",
                         max_failures=10)
        assert undone["state"] == "succeeded", undone
        assert server.api("GET", f"/api/v1/changes/{bid}")["state"] == "rolled_back"

        # -- 7. the audit trail ---------------------------------------------------------------
        trace = server.api("GET", f"/api/v1/changes/{cid}/trace")
        actions = [e["action"] for e in trace["audit"]]
        assert "change.propose" in actions
        assert "change.deploy" in actions
        assert {r["certname"] for r in trace["reports"]} == set(NODES)
        enforced = {e["target"] for e in trace["audit"] if e["action"] == "node.enforced"}
        assert enforced == {f"change:{cid}/node:{name}" for name in NODES}
        denied_rows = server.api("GET", "/pdb/query/v4",
                                 params={"query": 'audit[actor, action] { outcome = "denied" }'})
        assert any(r["actor"] == "agent:planner-bot" for r in denied_rows), denied_rows
        changes = server.api("GET", "/pdb/query/v4", params={
            "query": 'changes[id, state, kind, proposer] { environment = "staging" }'})
        assert {(c["id"], c["state"]) for c in changes} >= {(cid, "deployed"),
                                                            (bid, "rolled_back")}
        halts = server.api("GET", "/pdb/query/v4", params={
            "query": 'deployments[id, change] { state = "halted" }'})
        assert [d["change"] for d in halts] == [bid]
        deployed_nodes = server.api("GET", "/pdb/query/v4", params={
            "query": 'changes[id] { id in deployments[change] { state = "succeeded" } }'})
        assert {c["id"] for c in deployed_nodes} >= {cid, rollback["id"]}
        verified = server.api("GET", "/api/v1/audit/verify")
        assert verified["ok"], verified
    finally:
        for node in nodes:
            node.stop()

    # -- 8. an edited audit row is detected --------------------------------------------------
    server.stop()
    config = json.loads((server.data_dir / "config.json").read_text())
    url = str(config["database_url"])
    if backend == "sqlite":
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        triggers = [r[0] for r in db.execute(
            "select name from sqlite_master where type='trigger' and tbl_name='steward_audit'")]
        for name in triggers:
            db.execute(f'drop trigger "{name}"')
        db.execute("update steward_audit set actor = 'human:mallory' where action = "
                   "'change.deploy'")
        db.commit()
        db.close()
    else:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            # As someone with the database owner's access would.
            conn.execute(text("alter table steward_audit disable trigger all"))
            conn.execute(text("update steward_audit set actor = 'human:mallory' "
                              "where action = 'change.deploy'"))
            conn.execute(text("alter table steward_audit enable trigger all"))
        engine.dispose()
    check = steward("audit", "verify", "--data-dir", str(server.data_dir), env=steward_env())
    assert check.returncode == 1, check.stdout + check.stderr
    assert "was edited" in (check.stdout + check.stderr)
    server.start()


def test_a_pushed_branch_becomes_a_change(pipeline: Server, tmp_path: Path) -> None:
    """People clone desired.git, push a branch, and propose it with the CLI."""
    import subprocess

    server = pipeline
    repo = server.data_dir / "desired.git"
    clone = tmp_path / "clone"
    git_env = {**steward_env(), "GIT_AUTHOR_NAME": "Carol", "GIT_AUTHOR_EMAIL": "c@example.com",
               "GIT_COMMITTER_NAME": "Carol", "GIT_COMMITTER_EMAIL": "c@example.com"}

    def git(*args: str, cwd: Path = clone) -> None:
        done = subprocess.run(["git", *args], cwd=cwd, env=git_env, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr

    git("clone", "-q", "--branch", "development", str(repo), str(clone), cwd=tmp_path)
    git("checkout", "-q", "-b", "carol/greeting")
    (clone / "data").mkdir(exist_ok=True)
    (clone / "data" / "common.yaml").write_text("app::greeting: hi\n")
    git("add", "-A")
    git("commit", "-q", "-m", "Say hi")
    git("push", "-q", "origin", "carol/greeting")
    proposed = server.cli("change", "propose", "--branch", "carol/greeting", "--to",
                          "development", "-m", "Say hi", "--json")
    assert proposed.returncode == 0, proposed.stdout + proposed.stderr
    change = json.loads(proposed.stdout)
    assert change["environment"] == "development"
    assert change["state"] in ("analysed", "approved")  # development needs no approval
    # Pushing straight to an environment branch is refused by the repository itself.
    git("checkout", "-q", "development")
    (clone / "README").write_text("x\n")
    git("add", "-A")
    git("commit", "-q", "-m", "sneak")
    sneak = subprocess.run(["git", "push", "-q", "origin", "development"], cwd=clone,
                           env=git_env, capture_output=True, text=True, check=False)
    assert sneak.returncode != 0
    shown = server.cli("change", "show", change["id"])
    assert shown.returncode == 0, shown.stderr
    assert change["id"] in shown.stdout


@pytest.fixture(scope="module")
def own_pipeline(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: no other test's nodes (their agents stopped) in its rollouts."""
    tmp = tmp_path_factory.mktemp(f"auto-{backend}")
    with database_url(backend, tmp, "pipeline_auto") as url, \
            pipeline_server(tmp, _write_repo(tmp / "repo"), url) as srv:
        yield srv


def test_auto_rollback_and_promotion(own_pipeline: Server, tmp_path: Path) -> None:
    """A halted rollout rolls itself back when asked to; a deployed change is promoted."""
    server = own_pipeline
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "auto", "expires_in": 600})["token"]
    nodes = [make_node(tmp_path, name, server) for name in ("auto1", "auto2")]
    for node in nodes:
        assert node.once(join_token=join).returncode == 2
        node.start("--interval", "1h")
    try:
        planner = create_identity(server, "planner-auto", "agent", "planner")
        executor = create_identity(server, "exec-auto", "agent", "executor")
        carol = create_identity(server, "carol", "human", "approver")
        dave = create_identity(server, "dave", "human", "approver")
        (nodes[0].root / "etc/app/extra").mkdir(parents=True)  # in the way on auto1
        profile = ok(call(server, "GET", "/api/v1/changes", planner))  # planners may list
        assert isinstance(profile, list)
        base = (server.data_dir.parent / "repo" / "profiles" / "app.yaml").read_text()
        change = ok(call(server, "POST", "/api/v1/changes", planner, json={
            "environment": "staging", "title": "Add an extra file",
            "edits": {"profiles/app.yaml": base + "  file[/etc/app/extra]:\n"
                                                  "    content: \"x\\n\"\n"}}))
        cid = change["id"]
        ok(call(server, "POST", f"/api/v1/changes/{cid}/override", carol,
                json={**_reviewed(server, cid), "policy": "blast_radius", "reason": "test"}))
        ok(call(server, "POST", f"/api/v1/changes/{cid}/approve", carol,
                json=_reviewed(server, cid)))
        assert ok(call(server, "POST", f"/api/v1/changes/{cid}/approve", dave,
                       json=_reviewed(server, cid)))["state"] == \
            "approved"
        halted = _deploy(server, cid, executor, canary=1, batch_size="100%",
                         auto_rollback=True)
        assert halted["state"] == "halted", halted
        import time

        deadline = time.monotonic() + 120
        while server.api("GET", f"/api/v1/changes/{cid}")["state"] != "rolled_back":
            assert time.monotonic() < deadline, server.api("GET", f"/api/v1/changes/{cid}")
            time.sleep(0.5)
        shown = server.api("GET", f"/api/v1/changes/{cid}")
        assert any(h["action"] == "rollback_proposed" for h in shown["history"]), shown
        rollbacks = server.api("GET", "/api/v1/changes", params={"state": "deployed"})
        assert any(c["kind"] == "rollback" and c["parent"] == cid for c in rollbacks)

        # Promotion: a change deployed to development (no nodes there, no approval needed)
        # goes to staging as a new change, analysed afresh against staging's nodes.
        dev = ok(call(server, "POST", "/api/v1/changes", planner, json={
            "environment": "development", "title": "Warmer greeting",
            "edits": {"data/common.yaml": "app::greeting: welcome\n"}}))
        assert dev["state"] == "approved", dev["gates"]
        assert _deploy(server, dev["id"], executor)["state"] == "succeeded"
        denied = call(server, "POST", f"/api/v1/changes/{dev['id']}/promote", planner,
                      json={"environment": "staging"})
        assert denied.status_code == 403, denied.text  # promotion is the executor's
        promoted = ok(call(server, "POST", f"/api/v1/changes/{dev['id']}/promote",
                           executor, json={"environment": "staging"}))
        assert promoted["kind"] == "promotion"
        assert promoted["parent"] == dev["id"]
        assert promoted["environment"] == "staging"
        assert promoted["state"] == "analysed"
        assert promoted["impact"]["summary"]["nodes_affected"] >= 2
    finally:
        for node in nodes:
            node.stop()
