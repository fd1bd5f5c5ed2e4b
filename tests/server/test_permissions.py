"""Every server endpoint authorises by permission, for every kind of token and role.

A real server (uvicorn, TLS, loopback) in a thread, built by ``steward.api.app.build_app`` on
a versioned data directory, so the change pipeline is there and installs its role-based
authoriser. The table below is the contract: each route names the permission it needs and
each identity the permissions it holds; every (route, identity) pair is one test, on SQLite
and PostgreSQL. A refusal must be 403, name the permission, and be in the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from steward.access.authorize import Forbidden, entity_permissions, kind_authorizer
from steward.access.principal import Principal
from steward.api.app import build_app
from steward.server.config import load_config
from steward.server.init import init_data_dir
from tests.e2e.harness import database_url, free_port, write_repo
from tests.server.serving import serving

NODE = "perm-node"  # an enrolled node with facts, the object of the node routes
SELF = "perm-self"  # the node whose credential is the "node" identity

# -- the identities and what they hold ---------------------------------------------------------

SERVER_PERMISSIONS = frozenset({"query", "node:manage", "token:manage", "audit:read", "admin",
                                "report:read", "desired_state:read"})
OPERATOR = SERVER_PERMISSIONS - {"admin"}
READ = frozenset({"desired_state:read"})

#: identity -> (how it is made: token kind or pipeline kind with roles, what it holds here)
IDENTITIES: dict[str, tuple[str, tuple[str, ...], frozenset[str]]] = {
    "admin": ("admin", (), SERVER_PERMISSIONS),
    "operator": ("operator", (), OPERATOR),
    "planner": ("human", ("planner",), READ | {"query"}),
    "debugger": ("human", ("debugger",), READ | {"query", "report:read"}),
    "approver": ("human", ("approver",), READ | {"query", "report:read"}),
    "executor": ("human", ("executor",), READ | {"report:read"}),
    "security": ("human", ("security",), READ | {"query", "report:read", "audit:read"}),
    "ops-human": ("human", ("operator",), OPERATOR),
    "prod-planner": ("human", ("planner@production",), frozenset()),  # not bound in "*"
    "planner-bot": ("agent", ("planner",), READ | {"query"}),
    "node": ("node", (), frozenset()),
}


@dataclass
class Env:
    client: httpx.Client
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.headers(), **kwargs)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json()

    def join_token(self) -> str:
        return str(self.admin("POST", "/api/v1/tokens",
                              json={"kind": "join", "name": "perm", "max_uses": 1})["token"])

    def enroll(self, certname: str) -> str:
        response = self.client.post("/api/v1/enroll", json={"certname": certname},
                                    headers={"Authorization": f"Bearer {self.join_token()}"})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def denials(self, who: str) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/api/v1/audit", params={
            "outcome": "denied", "actor": self.labels[who], "limit": 5}))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"permissions-{backend}")
    with database_url(backend, tmp, "permissions") as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                               port=free_port())
        # No SSH push during the test: the SSH nodes added here point nowhere.
        config = load_config(tmp / "data").with_overrides(scheduler_tick_seconds=3600.0)
        with serving(build_app(config), config) as client:
            yield _populate(Env(client, result.admin_token,
                                tokens={"admin": result.admin_token}))


def _populate(env: Env) -> Env:
    """The identities of the table, and the node the node routes act on."""
    me = env.admin("GET", "/api/v1/whoami")
    env.labels["admin"] = f"{me['kind']}:{me['name']}"
    for who, (kind, roles, _held) in IDENTITIES.items():
        if kind == "admin":
            continue
        if kind == "operator":
            env.tokens[who] = env.admin("POST", "/api/v1/tokens",
                                        json={"kind": "operator", "name": who})["token"]
        elif kind == "node":
            env.tokens[who] = env.enroll(SELF)
        else:
            env.tokens[who] = env.admin("POST", "/api/v1/identities", json={
                "name": who, "kind": kind, "roles": list(roles)})["token"]
        me = env.client.get("/api/v1/whoami", headers=env.headers(who)).json()
        env.labels[who] = f"{me['kind']}:{me['name']}"
    node_token = env.enroll(NODE)
    facts = env.client.put(f"/api/v1/nodes/{NODE}/facts",
                           headers={"Authorization": f"Bearer {node_token}"},
                           json={"values": {"os": {"family": "Debian"}}})
    assert facts.status_code == 200, facts.text
    return env


# -- the routes and what they need -------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    #: All needed, checked in this order (the first missing one is named); none: any token.
    permissions: tuple[str, ...]
    ok: int
    #: Makes what the route acts on (a pending request, a token ...) for one test case;
    #: returns the path and the JSON body. ``case`` makes names unique.
    setup: Callable[[Env, str], tuple[str, Any]] | None = None


def _pending(env: Env, case: str) -> tuple[str, Any]:
    certname = f"pend-{case}"
    asked = env.client.post("/api/v1/enroll", json={"certname": certname})
    assert asked.status_code == 202, asked.text
    return f"/api/v1/nodes/{certname}/approve", None


def _enrolled(env: Env, case: str) -> tuple[str, Any]:
    certname = f"rev-{case}"
    env.enroll(certname)
    return f"/api/v1/nodes/{certname}/revoke", None


def _token(kind: str) -> Callable[[Env, str], tuple[str, Any]]:
    def make(env: Env, case: str) -> tuple[str, Any]:
        created = env.admin("POST", "/api/v1/tokens", json={"kind": kind, "name": case})
        return f"/api/v1/tokens/{created['id']}", None
    return make


ROUTES: dict[str, Route] = {
    "whoami": Route("GET", "/api/v1/whoami", (), 200),
    "openapi": Route("GET", "/openapi.json", (), 200),
    "status": Route("GET", "/api/v1/status", ("query",), 200),
    "list-nodes": Route("GET", "/api/v1/nodes", ("query",), 200),
    "get-node": Route("GET", f"/api/v1/nodes/{NODE}", ("query",), 200),
    "add-ssh-node": Route("POST", "/api/v1/nodes", ("node:manage",), 201, lambda _env, case: (
        "/api/v1/nodes", {"certname": f"ssh-{case}", "host": "127.0.0.1", "port": 9})),
    "approve-node": Route("POST", "/api/v1/nodes/{}/approve", ("node:manage",), 200, _pending),
    "revoke-node": Route("POST", "/api/v1/nodes/{}/revoke", ("node:manage",), 200, _enrolled),
    "run-node": Route("POST", f"/api/v1/nodes/{NODE}/run", ("node:manage",), 202,
                      lambda _env, _case: (f"/api/v1/nodes/{NODE}/run", {"noop": True})),
    "create-join-token": Route("POST", "/api/v1/tokens", ("token:manage",), 201, lambda _e, c: (
        "/api/v1/tokens", {"kind": "join", "name": c})),
    "create-operator-token": Route(
        "POST", "/api/v1/tokens", ("token:manage", "admin"), 201,
        lambda _e, c: ("/api/v1/tokens", {"kind": "operator", "name": c})),
    "list-tokens": Route("GET", "/api/v1/tokens", ("token:manage",), 200),
    "revoke-join-token": Route("DELETE", "/api/v1/tokens/{}", ("token:manage",), 200,
                               _token("join")),
    "revoke-operator-token": Route("DELETE", "/api/v1/tokens/{}", ("token:manage", "admin"), 200,
                                   _token("operator")),
    "audit-log": Route("GET", "/api/v1/audit", ("audit:read",), 200),
    "pdb-pql-get": Route("GET", "/pdb/query/v4?query=nodes[certname]{}", ("query",), 200),
    "pdb-pql-post": Route("POST", "/pdb/query/v4", ("query",), 200, lambda _e, _c: (
        "/pdb/query/v4", {"query": "nodes[certname] {}"})),
    "pdb-entity": Route("GET", "/pdb/query/v4/nodes", ("query",), 200),
    "pdb-named": Route("GET", f"/pdb/query/v4/nodes/{NODE}", ("query",), 200),
    "pdb-facts": Route("GET", "/pdb/query/v4/facts/os", ("query",), 200),
    # Entities guarded elsewhere by another permission need it in PQL too.
    "pdb-audit": Route("GET", "/pdb/query/v4?limit=1&query=audit[id]{}",
                       ("query", "audit:read"), 200),
    "pdb-reports": Route("GET", "/pdb/query/v4?query=reports[hash]{}",
                         ("query", "report:read"), 200),
    "pdb-reports-subquery": Route(
        "GET", '/pdb/query/v4?query=nodes[certname]{ reports { status = "failed" } }',
        ("query", "report:read"), 200),
    "pdb-events-entity": Route("GET", "/pdb/query/v4/events", ("query", "report:read"), 200),
    "pdb-changes": Route("POST", "/pdb/query/v4", ("query", "desired_state:read"), 200,
                         lambda _e, _c: ("/pdb/query/v4", {"query": "changes[id] {}"})),
}


def _case_name(route: str, who: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"{route}-{who}")


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("route_name", list(ROUTES))
def test_permission_table(env: Env, route_name: str, who: str) -> None:
    route = ROUTES[route_name]
    held = IDENTITIES[who][2]
    missing = [p for p in route.permissions if p not in held]
    path, body = route.path, None
    if route.setup is not None:
        path, body = route.setup(env, _case_name(route_name, who))
    response = env.client.request(route.method, path, headers=env.headers(who), json=body)
    expected = 403 if missing else route.ok
    assert response.status_code == expected, (route_name, who, response.text)
    if not missing:
        return
    refusal = response.json()
    assert refusal["permission"] == missing[0]
    assert refusal["environment"] is None
    assert f"{env.labels[who]} lacks permission {missing[0]}" in refusal["error"]
    latest = env.denials(who)[0]
    assert latest["reason"] == refusal["error"]
    assert latest["parameters"] == {"environment": None, "permission": missing[0]}
    assert latest["outcome"] == "denied"


# -- the details -------------------------------------------------------------------------------


def test_a_node_reads_itself_and_no_other_node(env: Env) -> None:
    mine = env.client.get(f"/api/v1/nodes/{SELF}", headers=env.headers("node"))
    assert mine.status_code == 200
    assert mine.json()["certname"] == SELF
    other = env.client.get(f"/api/v1/nodes/{NODE}", headers=env.headers("node"))
    assert other.status_code == 403
    assert other.json()["error"].startswith(f"node:{SELF} may not read node '{NODE}': "
                                            f"node:{SELF} lacks permission query")
    assert env.denials("node")[0]["target"] == NODE


def test_a_role_bound_to_one_environment_is_not_a_global_permission(env: Env) -> None:
    refused = env.client.get("/api/v1/nodes", headers=env.headers("prod-planner"))
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        "user:prod-planner lacks permission query (it needs a role bound in every "
        "environment, '*')")


def test_user_and_agent_messages_name_the_principal(env: Env) -> None:
    refused = env.client.post(f"/api/v1/nodes/{NODE}/run", headers=env.headers("planner-bot"))
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("agent:planner-bot lacks permission node:manage")
    assert env.denials("planner-bot")[0]["target"] == NODE


def test_a_granted_or_revoked_role_counts_on_the_next_request(env: Env) -> None:
    who, principal = "executor", "human:executor"
    assert env.client.get("/api/v1/audit", headers=env.headers(who)).status_code == 403
    env.admin("POST", f"/api/v1/identities/{principal}/roles", json={"role": "security"})
    assert env.client.get("/api/v1/audit", headers=env.headers(who)).status_code == 200
    env.admin("DELETE", f"/api/v1/identities/{principal}/roles/security")
    assert env.client.get("/api/v1/audit", headers=env.headers(who)).status_code == 403


def test_token_managers_revoke_join_user_and_agent_tokens_only(env: Env) -> None:
    bot = env.admin("POST", "/api/v1/identities",
                    json={"name": "short-lived-bot", "kind": "agent", "roles": ["planner"]})
    revoked = env.client.delete(f"/api/v1/tokens/{bot['id']}", headers=env.headers("ops-human"))
    assert revoked.status_code == 200, revoked.text
    assert env.client.get("/api/v1/whoami", headers={
        "Authorization": f"Bearer {bot['token']}"}).status_code == 401
    node = next(t for t in env.admin("GET", "/api/v1/tokens") if t["kind"] == "node")
    kept = env.client.delete(f"/api/v1/tokens/{node['id']}", headers=env.headers("operator"))
    assert kept.status_code == 403
    assert kept.json()["error"].startswith("node tokens are revoked by an admin only: ")
    assert kept.json()["permission"] == "admin"


def _queries_of(env: Env, who: str) -> list[dict[str, Any]]:
    entries = env.admin("GET", "/api/v1/audit", params={"actor": env.labels[who],
                                                        "limit": 10000})
    return [e for e in entries if e["action"] == "query"]


def test_queries_by_agents_are_audited(env: Env) -> None:
    before = len(_queries_of(env, "planner-bot"))
    h = env.headers("planner-bot")
    pql = f'nodes[certname] {{ certname = "{NODE}" }}'
    rows = env.client.get("/pdb/query/v4", headers=h, params={"query": pql})
    assert rows.json() == [{"certname": NODE}]
    facts = env.client.get("/pdb/query/v4/facts/os", headers=h)
    assert facts.status_code == 200
    long = "nodes[certname] { " + " or ".join(f'certname = "n{i:03}"' for i in range(60)) + " }"
    assert env.client.post("/pdb/query/v4", headers=h, json={"query": long}).json() == []
    bad = env.client.get("/pdb/query/v4", headers=h, params={"query": "nodes[certname] {"})
    assert bad.status_code == 400
    entries = _queries_of(env, "planner-bot")
    assert len(entries) == before + 4
    failed, truncated, by_entity, first = entries[:4]  # newest first
    assert (first["target"], first["outcome"]) == ("nodes", "succeeded")
    assert first["parameters"] == {"path": "/pdb/query/v4", "query": pql, "rows": 1}
    assert by_entity["target"] == "facts"
    assert by_entity["parameters"]["rows"] == len(facts.json())
    assert by_entity["parameters"]["path"] == "/pdb/query/v4/facts/os"
    assert truncated["parameters"]["query"] == long[:500]
    assert truncated["parameters"]["query_chars"] == len(long)
    assert truncated["parameters"]["rows"] == 0
    assert failed["outcome"] == "failed"
    assert failed["reason"] == bad.text
    assert failed["parameters"]["rows"] is None


def test_queries_by_people_and_operators_are_not_audited(env: Env) -> None:
    for who in ("admin", "operator", "planner"):
        response = env.client.get("/pdb/query/v4", headers=env.headers(who),
                                  params={"query": "nodes[certname] {}"})
        assert response.status_code == 200
        assert _queries_of(env, who) == []


def test_the_openapi_spec_builds_with_the_pipeline_routes(env: Env) -> None:
    spec = env.client.get("/openapi.json", headers=env.headers("planner-bot"))
    assert spec.status_code == 200, spec.text
    paths = set(spec.json()["paths"])
    assert {"/api/v1/changes", "/api/v1/tokens", "/pdb/query/v4", "/api/v1/audit"} <= paths


def test_the_entities_a_query_reads_are_found_in_subqueries_too() -> None:
    from steward.query.parser import parse_pql

    assert entity_permissions(parse_pql("nodes { facts { name = 'os' } }")) == []
    assert entity_permissions(parse_pql(
        "facts { certname in nodes[certname] { certname in audit[target] {} } }")) == [
        ("audit", "audit:read")]
    assert entity_permissions(["extract", ["certname"], ["select_events", ["=", "x", 1]]]) == [
        ("events", "report:read")]
    assert entity_permissions(None, "fact-contents") == []
    assert entity_permissions(["=", "certname", "x"], "reports") == [("reports", "report:read")]
    assert entity_permissions(parse_pql("deployments { change in changes[id] {} }")) == [
        ("changes", "desired_state:read"), ("deployments", "desired_state:read")]


# -- the server's own rules, without the pipeline ----------------------------------------------


def _identity(kind: str) -> Principal:
    return Principal.authenticated(kind, "t1", "x", "x" if kind == "node" else None)


@pytest.mark.parametrize("permission", sorted(SERVER_PERMISSIONS))
def test_kind_rules_admin_everything_operator_all_but_admin(permission: str) -> None:
    kind_authorizer(_identity("admin"), permission, None)
    if permission != "admin":
        kind_authorizer(_identity("operator"), permission, "staging")
        return
    with pytest.raises(Forbidden, match="operator:x lacks permission admin: only an admin"):
        kind_authorizer(_identity("operator"), permission, None)


@pytest.mark.parametrize("kind", ["user", "agent", "node", "join", "enrollment"])
def test_kind_rules_refuse_every_other_kind_naming_the_permission(kind: str) -> None:
    with pytest.raises(Forbidden) as refused:
        kind_authorizer(_identity(kind), "query", "production")
    assert refused.value.permission == "query"
    assert refused.value.environment == "production"
    assert str(refused.value).startswith(f"{kind}:x lacks permission query in environment "
                                         "production: ")
