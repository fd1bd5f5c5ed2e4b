"""Issue 10.2: an approval binds to what the approver saw.

The attacker is the planner agent (or anyone racing the reviewer): between the moment a human
reads a change and the moment they approve it, the change gets a new impact report (a node
joins and the planner re-runs the analysis) or a new head (the planner amends it). Before,
``approve`` took only a comment and bound to whatever was current when it arrived, so the new
report was approved unseen. Now approve, reject, override and deploy carry the head and digest
their caller read; the server refuses a mismatch with 409 naming the current ones and records
nothing but the audited refusal. And every reviewer can read the full report it approves,
while running a new analysis stays ``change:impact``.

A real server (in-process uvicorn over TLS, a versioned repository, the built-in policies) on
SQLite and PostgreSQL; the CLI runs as its own process against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from steward.access.principal import Principal
from steward.api.app import build_app
from steward.pipeline.policy.evaluate import install_default_policies
from steward.pipeline.service import Pipeline
from steward.secrets.store import SecretStore
from steward.server.config import ServerConfig, load_config
from steward.server.init import init_data_dir
from tests.e2e.harness import SECRET_VALUE, database_url, free_port, steward, write_repo
from tests.server.serving import serving

PROFILE = "profiles/app.yaml"
#: One approval in staging, and no blast-radius rule: the tests are about binding, not counts
#: (the soft-mandatory blast_radius *policy* still fails, so overrides are exercised too).
APPROVALS = "environments:\n  staging: {approvals: 1, humans: 1, blast_radius: null}\n"
#: A custom role that may approve but not read: it must not approve what it cannot see.
RBAC = "roles:\n  blind-approver:\n    permissions: [change:approve]\n"


@dataclass
class Site:
    client: httpx.Client
    config: ServerConfig
    pipeline: Pipeline
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)
    nodes: int = 0

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs, headers={
            "Authorization": f"Bearer {self.tokens.get(who, who)}"})

    def ok(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        response = self.call(method, path, who, **kwargs)
        assert response.is_success, (response.status_code, response.text)
        return response.json()

    def enroll(self, name: str) -> None:
        """A node joins with facts and a catalog: the next analysis sees one more node."""
        join = self.ok("POST", "/api/v1/tokens", self.admin,
                       json={"kind": "join", "name": name, "expires_in": 600})
        enrolled = self.client.post("/api/v1/enroll", json={"certname": name}, headers={
            "Authorization": f"Bearer {join['token']}"})
        assert enrolled.status_code == 200, enrolled.text
        node = {"Authorization": f"Bearer {enrolled.json()['token']}"}
        facts = self.client.put(f"/api/v1/nodes/{name}/facts", headers=node, json={
            "values": {"hostname": name, "fqdn": f"{name}.example.com",
                       "os": {"family": "Debian"}}})
        assert facts.status_code == 200, facts.text
        catalog = self.client.get(f"/api/v1/nodes/{name}/catalog", headers=node)
        assert catalog.status_code == 200, catalog.text

    def cli(self, who: str, *args: str) -> Any:
        return steward(*args, "--server", self.config.server_url, "--ca-cert",
                       str(self.config.ca_cert), "--token", self.tokens[who])

    def propose(self, title: str) -> dict[str, Any]:
        self.nodes += 1
        text = (Path(self.config.data_dir).parent / "repo" / PROFILE).read_text()
        change: dict[str, Any] = self.ok("POST", "/api/v1/changes", "planner", json={
            "environment": "staging", "title": title,
            "edits": {PROFILE: text.replace("hello {{ node }}",
                                            f"{title} {{{{ node }}}}")}})
        assert change["state"] == "analysed", change
        return change

    def audit(self, action: str, change_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.ok("GET", "/pdb/query/v4", self.admin, params={
            "query": f'audit[actor, outcome, reason, parameters] {{ action = "{action}" and '
                     f'target = "change:{change_id}" order by id }}'})
        return rows


def reviewed(change: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer read: the change's head and impact digest."""
    return {"head": change["head"], "digest": change["impact_digest"]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp(f"binding-{request.param}")
    repo = write_repo(tmp / "repo")
    (repo / "steward.yaml").write_text("default_environment: staging\n", encoding="utf-8")
    with database_url(str(request.param), tmp, "approval_binding") as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=repo, port=free_port())
        data = result.config.data_dir
        SecretStore(data).set("app_token", SECRET_VALUE)
        install_default_policies(data)
        (data / "approvals.yaml").write_text(APPROVALS, encoding="utf-8")
        (data / "rbac.yaml").write_text(RBAC, encoding="utf-8")
        config = load_config(data).with_overrides(long_poll_seconds=2.0)
        app = build_app(config)
        with serving(app, config) as client:
            pipeline = app.state.steward.extras["pipeline"]
            assert isinstance(pipeline, Pipeline)
            s = Site(client, config, pipeline, result.admin_token)
            for name, kind, role in (("planner-bot", "agent", "planner"),
                                     ("exec-bot", "agent", "executor"),
                                     ("alice", "human", "approver"),
                                     ("bob", "human", "approver"),
                                     ("carol", "human", "blind-approver")):
                created = s.ok("POST", "/api/v1/identities", s.admin,
                               json={"name": name, "kind": kind, "roles": [role]})
                s.tokens[name.split("-")[0]] = created["token"]
            s.enroll("web1")
            yield s


def _stale(response: httpx.Response, current: dict[str, Any]) -> str:
    """A 409 that names the change's current head and digest, as text and as fields."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["head"], body["digest"]) == (current["head"], current["impact_digest"]), body
    assert current["head"] in body["error"]
    if current["impact_digest"]:
        assert current["impact_digest"] in body["error"]
    return str(body["error"])


def test_a_report_replaced_after_review_is_not_approved_unseen(site: Site) -> None:
    """alice reads D1; a node joins and the planner re-analyses (D2); her D1 approval is 409."""
    change = site.propose("re-analysed")
    cid = change["id"]
    seen = site.ok("GET", f"/api/v1/changes/{cid}", "alice")
    report = site.ok("GET", f"/api/v1/changes/{cid}/impact", "alice")
    assert report["digest"] == seen["impact_digest"]
    site.enroll(f"late{site.nodes}")
    site.ok("POST", f"/api/v1/changes/{cid}/analyse", "planner")
    now = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert now["impact_digest"] != seen["impact_digest"], "the re-analysis changed nothing"
    assert now["head"] == seen["head"]

    # The approval and the override of what alice read are refused, naming D2.
    message = _stale(site.call("POST", f"/api/v1/changes/{cid}/approve", "alice", json={
        **reviewed(seen), "comment": "looks right"}), now)
    assert f"not {seen['impact_digest']} as reviewed" in message
    _stale(site.call("POST", f"/api/v1/changes/{cid}/override", "alice", json={
        **reviewed(seen), "policy": "blast_radius", "reason": "seen"}), now)
    # Nothing recorded but the audited refusals.
    after = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert after["state"] == "analysed"
    assert after["gates"]["approval"]["valid"] == after["gates"]["approval"]["void"] == []
    assert site.pipeline.approvals.records(cid) == []
    assert not site.pipeline.analyses.overrides(cid, now["impact_digest"])
    [denied] = site.audit("change.approve", cid)
    assert (denied["actor"], denied["outcome"]) == ("human:alice", "denied")
    assert now["impact_digest"] in denied["reason"]
    assert denied["parameters"]["digest"] == seen["impact_digest"]
    assert [e["outcome"] for e in site.audit("policy.override", cid)] == ["denied"]

    # Reviewing D2 and approving it is what moves the change.
    site.ok("POST", f"/api/v1/changes/{cid}/override", "alice",
            json={**reviewed(now), "policy": "blast_radius", "reason": "every node, fine"})
    approved = site.ok("POST", f"/api/v1/changes/{cid}/approve", "alice", json=reviewed(now))
    assert approved["state"] == "approved", approved["gates"]
    [valid] = approved["gates"]["approval"]["valid"]
    assert valid["impact_digest"] == now["impact_digest"]


def test_an_amended_head_is_not_approved_unseen(site: Site) -> None:
    """The planner amends the change after bob read it: approving the old head is 409."""
    change = site.propose("amended")
    cid = change["id"]
    seen = site.ok("GET", f"/api/v1/changes/{cid}", "bob")
    planner = Principal("planner-bot", "agent")
    text = site.pipeline.repo.read_file(seen["head"], PROFILE)
    assert text is not None
    site.pipeline.changes.update_head(cid, planner, edits={
        PROFILE: text.decode().replace("mode: \"0600\"", "mode: \"0644\"")},
        message="also make the token world-readable")
    amended = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert amended["head"] != seen["head"]
    assert amended["state"] == "proposed"
    assert amended["impact_digest"] is None

    # Before the new head is analysed: the verdict names the new head, no report.
    message = _stale(site.call("POST", f"/api/v1/changes/{cid}/approve", "bob",
                               json=reviewed(seen)), amended)
    assert "no impact analysis yet" in message
    # A reviewer cannot make Steward run the analysis by reading the report.
    missing = site.call("GET", f"/api/v1/changes/{cid}/impact", "bob")
    assert missing.status_code == 409, missing.text
    assert "change:impact" in missing.text

    site.ok("POST", f"/api/v1/changes/{cid}/analyse", "planner")
    now = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert now["state"] == "analysed"
    assert now["head"] != seen["head"]
    # The old head with the old digest, and the old head with the new digest: both 409.
    message = _stale(site.call("POST", f"/api/v1/changes/{cid}/approve", "bob",
                               json=reviewed(seen)), now)
    assert f"now at head {now['head']}" in message
    _stale(site.call("POST", f"/api/v1/changes/{cid}/approve", "bob",
                     json={"head": seen["head"], "digest": now["impact_digest"]}), now)
    _stale(site.call("POST", f"/api/v1/changes/{cid}/reject", "bob",
                     json={**reviewed(seen), "reason": "no"}), now)
    assert site.pipeline.approvals.records(cid) == []
    assert site.ok("GET", f"/api/v1/changes/{cid}", site.admin)["state"] == "analysed"

    # A rejection of what bob read now is recorded and closes it.
    rejected = site.ok("POST", f"/api/v1/changes/{cid}/reject", "bob",
                       json={**reviewed(now), "reason": "token mode"})
    assert rejected["state"] == "rejected"


def test_the_bound_fields_are_mandatory(site: Site) -> None:
    """No head or digest: 422 naming the field, never a fallback to what is current."""
    change = site.propose("mandatory")
    cid = change["id"]
    for path, body, missing in (
            ("approve", {}, ("head", "digest")),
            ("approve", {"head": change["head"]}, ("digest",)),
            ("reject", {"reason": "x", "digest": change["impact_digest"]}, ("head",)),
            ("override", {"policy": "blast_radius", "reason": "x"}, ("head", "digest")),
            ("deploy", {"strategy": {"canary": 1}}, ("head", "digest"))):
        who = "exec" if path == "deploy" else "alice"
        response = site.call("POST", f"/api/v1/changes/{cid}/{path}", who, json=body)
        assert response.status_code == 422, (path, response.text)
        for name in missing:
            assert f"body.{name}" in response.json()["error"], (path, response.text)
    no_body = site.call("POST", f"/api/v1/changes/{cid}/approve", "alice")
    assert no_body.status_code == 422, no_body.text
    assert site.pipeline.approvals.records(cid) == []
    site.ok("POST", f"/api/v1/changes/{cid}/reject", "alice",
            json={**reviewed(change), "reason": "done"})


def test_deploy_carries_the_approved_digest(site: Site) -> None:
    """The executor must name the head and digest the change was approved at."""
    change = site.propose("deployed")
    cid = change["id"]
    site.ok("POST", f"/api/v1/changes/{cid}/override", "alice",
            json={**reviewed(change), "policy": "blast_radius", "reason": "all of staging"})
    approved = site.ok("POST", f"/api/v1/changes/{cid}/approve", "alice",
                       json=reviewed(change))
    assert approved["state"] == "approved", approved["gates"]
    other = site.propose("another")  # a real digest and head, of another change
    strategy = {"canary": 1, "node_timeout": 1}
    for attempt in ({"head": change["head"], "digest": other["impact_digest"]},
                    {"head": other["head"], "digest": change["impact_digest"]},
                    {"head": change["head"], "digest": "sha256:" + "0" * 64}):
        refused = site.call("POST", f"/api/v1/changes/{cid}/deploy", "exec",
                            json={**attempt, "strategy": strategy})
        _stale(refused, approved)
    assert site.pipeline.deployments.for_change(cid) == []
    assert site.ok("GET", f"/api/v1/changes/{cid}", site.admin)["state"] == "approved"
    assert [e["outcome"] for e in site.audit("change.deploy", cid)] == ["denied"] * 3
    started = site.ok("POST", f"/api/v1/changes/{cid}/deploy", "exec",
                      json={**reviewed(approved), "strategy": strategy})
    assert started["commit"] == change["head"]
    [deploy] = [e for e in site.audit("change.deploy", cid) if e["outcome"] == "succeeded"]
    assert deploy["parameters"]["digest"] == change["impact_digest"]
    site.ok("POST", f"/api/v1/changes/{other['id']}/reject", "alice",
            json={**reviewed(other), "reason": "done"})


def test_an_approver_reads_the_full_report_but_cannot_run_one(site: Site) -> None:
    """The built-in approver role reads every node's diff (REST, text, CLI); re-running the
    analysis needs change:impact and is refused (403, audited)."""
    change = site.propose("readable")
    cid = change["id"]
    report = site.ok("GET", f"/api/v1/changes/{cid}/impact", "alice")
    assert report["digest"] == change["impact_digest"]
    assert report["nodes"]
    assert all("resources" in n for n in report["nodes"])
    assert SECRET_VALUE not in json.dumps(report)
    text = site.call("GET", f"/api/v1/changes/{cid}/impact", "alice",
                     params={"format": "text"})
    assert text.status_code == 200, text.text
    assert "file[/etc/app/greeting]" in text.text
    shown = site.cli("alice", "change", "impact", cid, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["digest"] == change["impact_digest"]

    denied = site.call("POST", f"/api/v1/changes/{cid}/analyse", "alice")
    assert denied.status_code == 403, denied.text
    assert denied.json()["permission"] == "change:impact"
    assert [e["outcome"] for e in site.audit("change.analyse", cid)] == ["succeeded",
                                                                         "denied"]
    again = site.cli("alice", "change", "impact", cid, "--again")
    assert again.returncode != 0
    assert "change:impact" in again.stdout + again.stderr
    site.ok("POST", f"/api/v1/changes/{cid}/reject", "alice",
            json={**reviewed(change), "reason": "done"})


def test_the_cli_shows_and_sends_what_it_approves(site: Site) -> None:
    """``steward change approve`` prints the digest it sends; ``--digest`` pins what was read."""
    change = site.propose("cli")
    cid = change["id"]
    read = site.ok("GET", f"/api/v1/changes/{cid}", "alice")
    site.enroll(f"late{site.nodes}")
    site.ok("POST", f"/api/v1/changes/{cid}/analyse", "planner")
    now = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert now["impact_digest"] != read["impact_digest"]
    pinned = site.cli("alice", "change", "approve", cid, "--head", read["head"],
                      "--digest", read["impact_digest"], "-m", "as I read it")
    assert pinned.returncode != 0
    output = pinned.stdout + pinned.stderr
    assert f"approving {cid} at head {read['head']}, impact report {read['impact_digest']}" \
        in output
    assert now["impact_digest"] in output
    assert site.pipeline.approvals.records(cid) == []
    site.ok("POST", f"/api/v1/changes/{cid}/override", "alice",
            json={**reviewed(now), "policy": "blast_radius", "reason": "all of staging"})
    current = site.cli("alice", "change", "approve", cid, "-m", "read the new one")
    assert current.returncode == 0, current.stdout + current.stderr
    assert f"impact report {now['impact_digest']}" in current.stderr
    [record] = site.pipeline.approvals.records(cid)
    assert (record.head, record.impact_digest) == (now["head"], now["impact_digest"])


def test_every_reviewer_role_reads_the_reports_it_reviews() -> None:
    """Each built-in role that gives verdicts, overrides or deploys reads the full report
    (desired_state:read); none needs change:impact for it."""
    from steward.access.roles import BUILTIN_ROLES

    acting = {"change:approve", "change:reject", "policy:override", "change:deploy",
              "change:rollback"}
    for name, permissions in BUILTIN_ROLES.items():
        if permissions & acting:
            assert "desired_state:read" in permissions, name
    assert "change:impact" not in BUILTIN_ROLES["approver"]


def test_a_role_that_cannot_read_cannot_approve(site: Site) -> None:
    """A custom role holding change:approve but not desired_state:read is refused (403)."""
    change = site.propose("blind")
    cid = change["id"]
    assert site.call("GET", f"/api/v1/changes/{cid}/impact", "carol").status_code == 403
    refused = site.call("POST", f"/api/v1/changes/{cid}/approve", "carol",
                        json=reviewed(change))
    assert refused.status_code == 403, refused.text
    assert refused.json()["permission"] == "desired_state:read"
    assert site.pipeline.approvals.records(cid) == []
    site.ok("POST", f"/api/v1/changes/{cid}/reject", "alice",
            json={**reviewed(change), "reason": "done"})
