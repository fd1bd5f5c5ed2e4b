"""Issue 10.1: impact analysis sees every change to what a secret-bearing resource renders.

A hostile planner agent edits what surrounds a secret (the template text around it, a data
key rendered next to it, the profile expression that embeds it, a branch that renders it only
on a fact no node has yet) hoping for "0 nodes affected, risk low" and a single approval. Each
edit goes to a real server (in-process uvicorn over TLS, the example repository, the
``db_password`` secret, the built-in policies) on SQLite and PostgreSQL, and:

* the report shows the secret-bearing resource as changed and ``sensitive``, counted in nodes
  affected, blast radius and risk, with a content diff whose secret lines are masked;
* nothing of the secret appears in the report, the rendering or the change view;
* the policy input marks it and the built-in hard-mandatory ``sensitive_changes`` policy makes
  every approval a human's: an agent holding the approver role is refused (403), a human's
  approval is what moves the change to ``approved``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from steward.api.app import build_app
from steward.pipeline.policy.evaluate import install_default_policies
from steward.secrets.store import SecretStore
from steward.server.config import load_config
from steward.server.init import init_data_dir
from tests.e2e.harness import database_url, free_port
from tests.server.serving import serving

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECRET = json.loads((EXAMPLES / "secrets" / "demo-secrets.json").read_text())["db_password"]
PGPASS = "file[/var/lib/postgresql/.pgpass]"
DB_NODES = ("db1", "db2")


@dataclass
class Site:
    client: httpx.Client
    admin: str
    planner: str
    review_bot: str
    alice: str
    bob: str

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                   **kwargs)

    def ok(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        response = self.call(method, path, token, **kwargs)
        assert response.is_success, (response.status_code, response.text)
        return response.json()


def _facts(name: str) -> dict[str, Any]:
    kind = "db1" if name.startswith("db") else "web1"
    facts: dict[str, Any] = json.loads((EXAMPLES / "facts" / f"{kind}.json").read_text())
    facts.update(hostname=name, fqdn=f"{name}.example.com")
    facts["networking"].update(hostname=name, fqdn=f"{name}.example.com")
    return facts


def _identity(client: httpx.Client, admin: str, name: str, kind: str, *roles: str) -> str:
    response = client.post("/api/v1/identities", headers={"Authorization": f"Bearer {admin}"},
                           json={"name": name, "kind": kind, "roles": list(roles)})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["token"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    """The example repository on a versioned server; db1, db2 and web1 enrolled, with facts
    and a catalog each (their recorded inputs drive selection)."""
    tmp = tmp_path_factory.mktemp(f"sensitive-{request.param}")
    with database_url(str(request.param), tmp, "sensitive_impact") as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=EXAMPLES / "repo",
                               port=free_port())
        data = result.config.data_dir
        SecretStore(data).set("db_password", SECRET)
        install_default_policies(data)
        config = load_config(data).with_overrides(long_poll_seconds=2.0)
        with serving(build_app(config), config) as client:
            admin = result.admin_token
            auth = {"Authorization": f"Bearer {admin}"}
            for name in (*DB_NODES, "web1"):
                join = client.post("/api/v1/tokens", headers=auth,
                                   json={"kind": "join", "name": name, "expires_in": 600})
                assert join.status_code == 201, join.text
                enrolled = client.post("/api/v1/enroll", json={"certname": name}, headers={
                    "Authorization": f"Bearer {join.json()['token']}"})
                assert enrolled.status_code == 200, enrolled.text
                node = {"Authorization": f"Bearer {enrolled.json()['token']}"}
                facts = client.put(f"/api/v1/nodes/{name}/facts", headers=node,
                                   json={"values": _facts(name)})
                assert facts.status_code == 200, facts.text
                catalog = client.get(f"/api/v1/nodes/{name}/catalog", headers=node)
                assert catalog.status_code == 200, catalog.text
            yield Site(
                client, admin,
                planner=_identity(client, admin, "planner-bot", "agent", "planner"),
                review_bot=_identity(client, admin, "review-bot", "agent", "approver"),
                alice=_identity(client, admin, "alice", "human", "approver"),
                bob=_identity(client, admin, "bob", "human", "approver"),
            )


def _read(name: str) -> str:
    return (EXAMPLES / "repo" / name).read_text()


PGPASS_J2 = "templates/postgresql/pgpass.j2"
PROFILE = "profiles/postgresql.yaml"

#: The hostile edits: each changes what a secret-bearing resource renders (or would render),
#: never the secret itself (secrets are not in the repository), and never the placeholder key.
ATTACKS: dict[str, tuple[dict[str, str], str]] = {
    # The template text around the secret: the placeholder key param:<ref>:content is the same.
    "template-around-secret": (
        {PGPASS_J2: _read(PGPASS_J2).replace(":*:app:", ":*:postgres:")}, PGPASS),
    # A data key rendered on the secret's line (automatic parameter lookup postgresql::port).
    "data-next-to-secret": (
        {"data/roles/db.yaml": _read("data/roles/db.yaml") + "postgresql::port: 6432\n"},
        PGPASS),
    # The profile expression that embeds the secret.
    "profile-expression": (
        {PROFILE: _read(PROFILE).replace('content: "{{ params.password }}"',
                                         'content: "{{ params.password }}\\n"')},
        "file[/etc/steward/db_password]"),
    # A line that renders the secret transformed (upper-cased): masked too.
    "template-transformed-secret": (
        {PGPASS_J2: _read(PGPASS_J2) + "# {{ params.password | upper }}\n# unrelated\n"},
        PGPASS),
}


def _propose(site: Site, edits: dict[str, str], title: str) -> dict[str, Any]:
    change: dict[str, Any] = site.ok("POST", "/api/v1/changes", site.planner, json={
        "environment": "production", "title": title, "edits": edits})
    return change


def _approve(site: Site, change: dict[str, Any], token: str) -> httpx.Response:
    """An approval carrying what the approver reviewed (head and digest)."""
    return site.call("POST", f"/api/v1/changes/{change['id']}/approve", token, json={
        "comment": "reviewed", "head": change["head"], "digest": change["impact"]["digest"]})


def _no_secret_anywhere(*documents: Any) -> None:
    for document in documents:
        text = document if isinstance(document, str) else json.dumps(document)
        assert SECRET not in text
        assert SECRET.upper() not in text


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_edit_around_a_secret_is_reported_and_needs_a_human(site: Site, attack: str) -> None:
    edits, target = ATTACKS[attack]
    change = _propose(site, edits, f"harmless tidy-up ({attack})")
    cid = change["id"]
    report = site.ok("GET", f"/api/v1/changes/{cid}/impact", site.planner)
    summary = report["summary"]
    # Before the fix: nodes_affected 0, risk low, both db nodes "unchanged".
    assert summary["nodes_affected"] == 2, summary
    assert summary["risk"] in ("medium", "high"), summary
    assert summary["blast_radius"]["nodes"] == 2
    assert summary["sensitive"]["resources"] >= 2
    assert summary["sensitive"]["values"] >= 2
    for node in report["nodes"]:
        assert node["certname"] in DB_NODES  # web1 reads none of these files or keys
        assert node["status"] == "changed", node
        entry = next(e for e in node["resources"] if e["resource"] == target)
        assert entry["sensitive"] is True
        [content] = [p for p in entry["properties"] if p["name"] == "content"]
        assert content == {"name": "content", "before": "[redacted]", "after": "[redacted]",
                           "sensitive": True, "digest_changed": True}
        diff = entry["content_diff"]
        assert "[redacted]" in diff
        if target == PGPASS:  # the comment line holds no secret: it is shown
            assert "# hostname:port:database:username:password" in diff
        if attack == "template-transformed-secret":
            assert "+# unrelated" in diff
            assert "+[redacted]" in diff
    # The policy input marks it; the built-in policy makes every approval a human's.
    policy = change["policy"]
    assert policy["blocking"] == [], policy  # nothing is denied ...
    [verdict] = [r for r in policy["results"] if r["name"] == "sensitive_changes"]
    assert verdict["level"] == "hard-mandatory"
    assert verdict["passed"] is True
    assert any(target in message for message in verdict["human_approval"]), verdict
    assert any(reason.startswith("policy sensitive_changes: ") for reason in
               policy["human_approval"]), policy
    rendered = site.call("GET", f"/api/v1/changes/{cid}", site.planner)
    _no_secret_anywhere(report, change, rendered.text)
    _review(site, change)


def _review(site: Site, change: dict[str, Any]) -> None:
    """An agent approver is refused; humans approve; then the change is rejected (cleanup)."""
    cid = change["id"]
    # 2 of 3 production nodes: over the blast-radius limit, which a human overrides.
    if "blast_radius" in change["policy"]["needs_override"]:
        site.ok("POST", f"/api/v1/changes/{cid}/override", site.alice,
                json={"policy": "blast_radius", "reason": "both database nodes, on purpose",
                      "head": change["head"], "digest": change["impact"]["digest"]})
    refused = _approve(site, change, site.review_bot)
    assert refused.status_code == 403, refused.text
    assert "must come from a human" in refused.text
    assert "sensitive_changes" in refused.text
    view = site.ok("GET", f"/api/v1/changes/{cid}", site.admin)
    assert view["state"] == "analysed"
    requirement = view["gates"]["approval"]["requirement"]
    assert requirement["humans"] == requirement["approvals"] >= 1, requirement
    assert any("by a human" in line for line in view["gates"]["waiting_for"]), view["gates"]
    for human in (site.alice, site.bob):
        approved = _approve(site, change, human)
        assert approved.status_code == 200, approved.text
        if approved.json()["state"] == "approved":
            break
    assert approved.json()["state"] == "approved", approved.json()["gates"]
    site.ok("POST", f"/api/v1/changes/{cid}/reject", site.bob, json={
        "reason": "test over", "head": change["head"], "digest": change["impact"]["digest"]})


def test_a_dormant_branch_in_a_secret_template_needs_a_human(site: Site) -> None:
    """A template edit that renders the same on today's nodes (it branches on a fact none has)
    changes no catalog, yet it feeds a secret-bearing resource: a human must approve it."""
    dormant = _read(PGPASS_J2) + (
        "{% if facts.get('steward_leak') %}*:*:*:*:{{ params.password }}\n{% endif %}")
    change = _propose(site, {PGPASS_J2: dormant}, "comment fix")
    report = site.ok("GET", f"/api/v1/changes/{change['id']}/impact", site.planner)
    assert report["summary"]["nodes_affected"] == 0
    assert report["summary"]["sensitive"]["inputs"] == [PGPASS_J2]
    assert all(node["sensitive_inputs"] == [PGPASS_J2] for node in report["nodes"])
    assert any(PGPASS_J2 in reason for reason in report["summary"]["risk_reasons"])
    assert report["summary"]["risk"] == "medium"
    assert re.search(r"policy sensitive_changes: templates/postgresql/pgpass\.j2 feeds",
                     json.dumps(change["policy"]["human_approval"]))
    _review(site, change)


def test_a_change_away_from_secrets_still_takes_an_agents_approval(site: Site) -> None:
    """The rule is about secrets, not about agents: a web-only edit needs what it needed."""
    data = _read("data/roles/web.yaml").replace("worker_connections: 4096",
                                                "worker_connections: 2048")
    change = _propose(site, {"data/roles/web.yaml": data}, "more connections")
    assert change["policy"]["human_approval"] == []
    assert change["impact"]["summary"]["sensitive"] == {
        "nodes": 0, "resources": 0, "values": 0, "inputs": []}
    view = site.ok("GET", f"/api/v1/changes/{change['id']}", site.admin)
    reasons = view["gates"]["approval"]["requirement"]["reasons"]
    assert not any("sensitive_changes" in reason for reason in reasons), reasons
    site.ok("POST", f"/api/v1/changes/{change['id']}/reject", site.bob, json={
        "reason": "done", "head": change["head"], "digest": change["impact"]["digest"]})
