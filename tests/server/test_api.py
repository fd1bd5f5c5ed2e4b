"""The server's API in-process: authentication, authorisation, enrollment, catalogs, audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from steward.clock import ManualClock
from steward.secrets.store import SecretStore
from steward.server.app import create_app
from steward.server.db import SERVER_ENGINE
from steward.server.services import build_services
from steward.store.db import make_engine
from tests.e2e.harness import SECRET_VALUE, free_port
from tests.server.conftest import Env
from tests.server.serving import serving


@dataclass
class ManualEnv(Env):
    """An :class:`Env` whose server runs on a clock that moves only when told to."""

    clock: ManualClock = field(default_factory=ManualClock)


@pytest.fixture
def manual_env(env: Env) -> Iterator[ManualEnv]:
    """The same data directory and database, served by a second server on a ManualClock, so
    a test moves time past an expiry instead of sleeping until it."""
    clock = ManualClock()
    config = env.config.with_overrides(port=free_port())
    services = build_services(config, migrate_schema=False, clock=clock)
    try:
        with serving(create_app(config, services=services), config) as client:
            yield ManualEnv(config, client, env.admin_token, clock)
    finally:
        services.close()

# -- authentication --------------------------------------------------------------------------


def test_every_endpoint_needs_a_token(env: Env) -> None:
    for method, path in [("GET", "/api/v1/whoami"), ("GET", "/api/v1/nodes"),
                         ("GET", "/openapi.json"), ("GET", "/pdb/query/v4?query=nodes{}"),
                         ("GET", "/api/v1/nodes/x/catalog"), ("POST", "/api/v1/tokens"),
                         ("GET", "/api/v1/enroll/abc")]:
        response = env.client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert "authentication required" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"


def test_bearer_and_x_authentication_headers(env: Env) -> None:
    bearer = env.client.get("/api/v1/whoami", headers=env.headers())
    x_auth = env.client.get("/api/v1/whoami", headers={"X-Authentication": env.admin_token})
    assert bearer.json()["kind"] == x_auth.json()["kind"] == "admin"


def test_an_unknown_token_is_refused_and_audited(env: Env) -> None:
    response = env.client.get("/api/v1/nodes", headers=env.headers("stwo_not-a-real-token"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid credentials (unknown token)"
    audit = env.client.get("/api/v1/audit", headers=env.headers(),
                           params={"outcome": "denied", "actor": "anonymous"}).json()
    assert any(a["action"] == "GET /api/v1/nodes" and "unknown token" in a["reason"]
               for a in audit)


def test_openapi_spec_is_published_to_authenticated_clients(env: Env) -> None:
    spec = env.client.get("/openapi.json", headers=env.headers()).json()
    assert spec["info"]["title"] == "Steward control plane"
    assert {"/api/v1/enroll", "/api/v1/nodes/{certname}/catalog", "/pdb/query/v4",
            "/pdb/query/v4/{entity}"} <= set(spec["paths"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


# -- tokens ----------------------------------------------------------------------------------


def test_tokens_are_shown_once_and_stored_hashed(env: Env) -> None:
    created = env.client.post("/api/v1/tokens", headers=env.headers(),
                              json={"kind": "operator", "name": "ops"}).json()
    assert created["token"].startswith("stwo_")
    listed = env.client.get("/api/v1/tokens", headers=env.headers()).json()
    assert created["id"] in {t["id"] for t in listed}
    assert all("token" not in t and "token_hash" not in t for t in listed)
    engine = make_engine(env.config.database_url, **SERVER_ENGINE)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT token_hash FROM steward_tokens WHERE id = :id"),
                                  {"id": created["id"]}).scalar_one()
    finally:
        engine.dispose()
    assert stored != created["token"]
    assert len(stored) == 64


def test_operators_cannot_mint_operator_tokens_but_can_mint_join_tokens(env: Env) -> None:
    operator = env.client.post("/api/v1/tokens", headers=env.headers(),
                               json={"kind": "operator", "name": "op2"}).json()["token"]
    refused = env.client.post("/api/v1/tokens", headers=env.headers(operator),
                              json={"kind": "operator", "name": "escalate"})
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "operator tokens are created by an admin only: operator:op2 lacks permission "
                 "admin: only an admin token holds it",
        "permission": "admin", "environment": None,
    }
    joined = env.client.post("/api/v1/tokens", headers=env.headers(operator),
                             json={"kind": "join", "name": "rack-7", "max_uses": 2})
    assert joined.status_code == 201
    assert joined.json()["expires_at"] is not None  # join tokens always expire
    # Listing and revoking join tokens is token:manage, which operators hold; revoking an
    # operator token needs admin.
    listed = env.client.get("/api/v1/tokens", headers=env.headers(operator))
    assert listed.status_code == 200
    assert joined.json()["id"] in {t["id"] for t in listed.json()}
    assert env.client.delete(f"/api/v1/tokens/{joined.json()['id']}",
                             headers=env.headers(operator)).status_code == 200
    mine = next(t["id"] for t in listed.json() if t["kind"] == "operator" and t["name"] == "op2")
    kept = env.client.delete(f"/api/v1/tokens/{mine}", headers=env.headers(operator))
    assert kept.status_code == 403
    assert kept.json()["permission"] == "admin"


def test_expired_and_used_up_join_tokens_enroll_nobody(manual_env: ManualEnv) -> None:
    env = manual_env
    short = env.join_token(expires_in=0.3)
    env.clock.advance(0.6)
    expired = env.client.post("/api/v1/enroll", json={"certname": "late1"},
                              headers=env.headers(short))
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]
    once = env.join_token(max_uses=1)
    first = env.client.post("/api/v1/enroll", json={"certname": "once1"},
                            headers=env.headers(once))
    assert first.status_code == 200
    second = env.client.post("/api/v1/enroll", json={"certname": "once2"},
                             headers=env.headers(once))
    assert second.status_code == 401
    assert "used up" in second.json()["error"]


def test_a_join_token_only_enrolls(env: Env) -> None:
    join = env.join_token()
    assert env.client.get("/api/v1/nodes", headers=env.headers(join)).status_code == 403
    admin_enroll = env.client.post("/api/v1/enroll", json={"certname": "adm1"},
                                   headers=env.headers())
    assert admin_enroll.status_code == 403


# -- enrollment ------------------------------------------------------------------------------


def test_enrollment_by_approval(env: Env) -> None:
    asked = env.client.post("/api/v1/enroll", json={"certname": "appr1", "facts": {"a": 1}})
    assert asked.status_code == 202
    pending = asked.json()
    assert pending["status"] == "pending"
    assert "token" not in pending
    poll = env.headers(pending["poll_token"])
    path = f"/api/v1/enroll/{pending['request_id']}"
    assert env.client.get(path, headers=poll).json()["status"] == "pending"
    # The poll token reaches nothing else.
    assert env.client.get("/api/v1/nodes/appr1/catalog", headers=poll).status_code == 403
    again = env.client.post("/api/v1/enroll", json={"certname": "appr1"})
    assert again.status_code == 409
    assert "already pending" in again.json()["error"]
    approved = env.client.post("/api/v1/nodes/appr1/approve", headers=env.headers())
    assert approved.json()["status"] == "approved"
    collected = env.client.get(path, headers=poll).json()
    assert collected["status"] == "approved"
    token = collected["token"]
    assert token.startswith("stwn_")
    # Collected once: the poll token is spent.
    assert env.client.get(path, headers=poll).status_code == 401
    whoami = env.client.get("/api/v1/whoami", headers=env.headers(token)).json()
    assert whoami == {**whoami, "kind": "node", "certname": "appr1"}


def test_an_enrolled_name_cannot_be_claimed_again(env: Env) -> None:
    env.enroll("taken1")
    stolen = env.client.post("/api/v1/enroll", json={"certname": "taken1"},
                             headers=env.headers(env.join_token()))
    assert stolen.status_code == 409
    assert "already enrolled" in stolen.json()["error"]
    anonymous = env.client.post("/api/v1/enroll", json={"certname": "taken1"})
    assert anonymous.status_code == 409


def test_invalid_node_names_are_refused(env: Env) -> None:
    response = env.client.post("/api/v1/enroll", json={"certname": "../etc"})
    assert response.status_code == 409
    assert "invalid node name" in response.json()["error"]


def test_revocation_is_effective_on_the_next_request(env: Env) -> None:
    token = env.enroll("rev1")
    env.upload_facts("rev1", token)
    assert env.client.get("/api/v1/nodes/rev1/catalog", headers=env.headers(token)).is_success
    revoked = env.client.post("/api/v1/nodes/rev1/revoke", headers=env.headers()).json()
    assert revoked["tokens_revoked"] == 1
    refused = env.client.get("/api/v1/nodes/rev1/catalog", headers=env.headers(token))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]
    # Re-enrollment of a revoked name needs an operator, even with a join token.
    back = env.client.post("/api/v1/enroll", json={"certname": "rev1"},
                           headers=env.headers(env.join_token()))
    assert back.status_code == 202
    assert "only an operator" in back.json()["message"]


# -- what a node may do ----------------------------------------------------------------------


def test_a_node_reaches_only_its_own_catalog_facts_and_reports(env: Env) -> None:
    mine, other = env.enroll("own1"), env.enroll("own2")
    env.upload_facts("own2", other)
    h = env.headers(mine)
    for method, path, body in [
        ("GET", "/api/v1/nodes/own2/catalog", None),
        ("PUT", "/api/v1/nodes/own2/facts", {"values": {}}),
        ("POST", "/api/v1/nodes/own2/reports", {"node": "own2"}),
        ("GET", "/api/v1/nodes/own2/run-wait?timeout=0", None),
        ("GET", "/api/v1/nodes", None),
        ("POST", "/api/v1/nodes/own1/approve", None),
        ("POST", "/api/v1/nodes/own2/run", None),
        ("GET", "/pdb/query/v4?query=nodes{}", None),
        ("POST", "/api/v1/tokens", {"kind": "join", "name": "x"}),
    ]:
        response = env.client.request(method, path, headers=h, json=body)
        assert response.status_code == 403, (method, path, response.text)
    # A report for another node, even sent to its own endpoint, is refused.
    forged = env.client.post("/api/v1/nodes/own1/reports", headers=h,
                             json={"node": "own2", "transaction_uuid": "x"})
    assert forged.status_code == 403
    denied = env.client.get("/api/v1/audit", headers=env.headers(),
                            params={"outcome": "denied", "actor": "node:own1"}).json()
    assert len(denied) == 10
    assert {d["target"] for d in denied} >= {"own2"}


def test_operators_do_not_get_catalogs_with_secrets(env: Env) -> None:
    token = env.enroll("sec1")
    env.upload_facts("sec1", token)
    response = env.client.get("/api/v1/nodes/sec1/catalog", headers=env.headers())
    assert response.status_code == 403
    assert SECRET_VALUE not in response.text


def test_a_catalog_needs_facts_first(env: Env) -> None:
    token = env.enroll("nofacts1")
    response = env.client.get("/api/v1/nodes/nofacts1/catalog", headers=env.headers(token))
    assert response.status_code == 409
    assert "no facts" in response.json()["error"]


# -- catalogs --------------------------------------------------------------------------------


def test_catalogs_are_compiled_on_the_server_and_cached_by_input_hash(
    env: Env, repo: Path
) -> None:
    token = env.enroll("cat1")
    h = env.headers(token)
    env.upload_facts("cat1", token, role="x")
    first = env.client.get("/api/v1/nodes/cat1/catalog", headers=h)
    assert first.headers["cache-control"] == "no-store"
    one = first.json()
    assert one["catalog"]["node"] == "cat1"
    assert one["sensitive_values"] == {next(iter(one["sensitive_values"])): SECRET_VALUE}
    assert SECRET_VALUE not in str(one["catalog"])
    two = env.client.get("/api/v1/nodes/cat1/catalog", headers=h).json()
    assert two["cached"] is True
    assert two["input_hash"] == one["input_hash"]
    assert two["catalog"]["hash"] == one["catalog"]["hash"]
    # New facts: a new input hash (the catalog itself may not change).
    env.upload_facts("cat1", token, role="y")
    three = env.client.get("/api/v1/nodes/cat1/catalog", headers=h).json()
    assert three["cached"] is False
    assert three["input_hash"] != one["input_hash"]
    # A repository change: recompiled, and the new content is served.
    profile = repo / "profiles" / "app.yaml"
    original = profile.read_text()
    try:
        profile.write_text(original.replace("hello {{ node }}", "hi {{ node }}"))
        four = env.client.get("/api/v1/nodes/cat1/catalog", headers=h).json()
        assert four["cached"] is False
        assert four["catalog"]["hash"] != three["catalog"]["hash"]
    finally:
        profile.write_text(original)
    # A rotated secret: new digests, new values.
    store = SecretStore(env.config.data_dir)
    try:
        store.set("app_token", "rotated-value-1234")
        five = env.client.get("/api/v1/nodes/cat1/catalog", headers=h).json()
        assert five["cached"] is False
        assert list(five["sensitive_values"].values()) == ["rotated-value-1234"]
    finally:
        store.set("app_token", SECRET_VALUE)


def test_a_compile_error_is_reported_to_the_node(env: Env, repo: Path) -> None:
    token = env.enroll("broken1")
    env.upload_facts("broken1", token)
    profile = repo / "profiles" / "app.yaml"
    original = profile.read_text()
    try:
        profile.write_text(original + "  nonsense[x]: {}\n")
        response = env.client.get("/api/v1/nodes/broken1/catalog", headers=env.headers(token))
    finally:
        profile.write_text(original)
    assert response.status_code == 422
    assert "compiling the catalog of 'broken1' failed" in response.json()["error"]
    assert "profiles/app.yaml" in response.json()["error"]


# -- run now ---------------------------------------------------------------------------------


def test_run_now_answers_the_long_poll(env: Env) -> None:
    token = env.enroll("poll1")
    h = env.headers(token)
    idle = env.client.get("/api/v1/nodes/poll1/run-wait", params={"timeout": 0.2}, headers=h)
    assert idle.json() == {"run": False}
    asked = env.client.post("/api/v1/nodes/poll1/run", headers=env.headers(), json={"noop": True})
    assert asked.status_code == 202
    start = time.monotonic()
    answer = env.client.get("/api/v1/nodes/poll1/run-wait", params={"timeout": 10}, headers=h)
    assert time.monotonic() - start < 1.5
    assert answer.json()["run"] is True
    assert answer.json()["noop"] is True
    again = env.client.get("/api/v1/nodes/poll1/run-wait", params={"timeout": 0}, headers=h)
    assert again.json() == {"run": False}  # claimed once
    assert env.client.post("/api/v1/nodes/nobody/run", headers=env.headers()).status_code == 404


# -- reports ---------------------------------------------------------------------------------


def _report(certname: str, uuid: str) -> dict[str, object]:
    return {
        "report_format": 1, "steward_version": "0.1.0", "node": certname,
        "environment": "production", "catalog_hash": "sha256:" + "0" * 64, "code_id": None,
        "transaction_uuid": uuid, "start_time": "2025-01-01T00:00:00.000Z",
        "end_time": "2025-01-01T00:00:01.000Z", "status": "unchanged", "noop": False,
        "noop_pending": False, "corrective_change": False, "resources": [],
        "metrics": {"resources": {"total": 0}, "events": {"total": 0}, "time": {"total": 1.0}},
        "logs": [], "exit_code": 0,
    }


def test_reports_are_stored_idempotently(env: Env) -> None:
    token = env.enroll("rep1")
    report = _report("rep1", "7d3f4c1e-0000-4000-8000-000000000001")
    for _ in range(2):
        response = env.client.post("/api/v1/nodes/rep1/reports", headers=env.headers(token),
                                   json=report)
        assert response.status_code == 201, response.text
    rows = env.client.get("/pdb/query/v4/reports", headers=env.headers(),
                          params={"query": '["=", "certname", "rep1"]'}).json()
    assert [r["transaction_uuid"] for r in rows] == [report["transaction_uuid"]]


# -- PuppetDB query API ----------------------------------------------------------------------


def test_pdb_query_errors_are_400_with_the_parsers_message(env: Env) -> None:
    bad = env.client.get("/pdb/query/v4", headers=env.headers(),
                         params={"query": "nodes[certname] { certname = }"})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("text/plain")
    assert bad.text
    missing = env.client.get("/pdb/query/v4", headers=env.headers())
    assert missing.status_code == 400
    pql_on_entity = env.client.get("/pdb/query/v4/nodes", headers=env.headers(),
                                   params={"query": "nodes {}"})
    assert pql_on_entity.status_code == 400
    assert "AST" in pql_on_entity.text
    bad_json = env.client.get("/pdb/query/v4/nodes", headers=env.headers(),
                              params={"query": "[\"=\", "})
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.text


def test_pdb_queries_with_paging(env: Env) -> None:
    for name in ("page1", "page2", "page3"):
        env.upload_facts(name, env.enroll(name))
    ordered = [{"field": "certname", "order": "desc"}]
    rows = env.client.get("/pdb/query/v4/nodes", headers=env.headers(), params={
        "query": '["~", "certname", "^page"]', "order_by": str(ordered).replace("'", '"'),
        "limit": 2, "offset": 0,
    })
    assert rows.status_code == 200, rows.text
    assert [r["certname"] for r in rows.json()] == ["page3", "page2"]
    pql = env.client.post("/pdb/query/v4", headers=env.headers(), json={
        "query": 'nodes[certname] { certname ~ "^page" }', "limit": 1,
        "order_by": [{"field": "certname", "order": "asc"}],
    })
    assert pql.status_code == 200, pql.text
    assert pql.json() == [{"certname": "page1"}]
    facts = env.client.get("/pdb/query/v4/facts/os", headers=env.headers(),
                           params={"query": '["=", "certname", "page1"]'}).json()
    assert [f["certname"] for f in facts] == ["page1"]
    missing = env.client.get("/pdb/query/v4/nodes/nonexistent", headers=env.headers())
    assert missing.status_code == 404


# -- the audit log ---------------------------------------------------------------------------


def test_the_audit_log_is_append_only_in_the_database(env: Env) -> None:
    env.client.get("/api/v1/whoami", headers=env.headers("stwa_bogus"))
    engine = make_engine(env.config.database_url, **SERVER_ENGINE)
    try:
        for statement in ("UPDATE steward_audit SET reason = 'x'", "DELETE FROM steward_audit"):
            with pytest.raises(SQLAlchemyError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM steward_audit")).scalar_one() > 0
    finally:
        engine.dispose()


def test_both_schemas_coexist_with_their_own_version_tables(env: Env) -> None:
    engine = make_engine(env.config.database_url, **SERVER_ENGINE)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM steward_server_version"))
            assert version.scalar_one() == "0003"
    finally:
        engine.dispose()
    from steward.server.migrate import migrate

    engine = make_engine(env.config.database_url, **SERVER_ENGINE)
    try:
        migrate(engine)  # idempotent
    finally:
        engine.dispose()


def test_malformed_requests_are_422_without_echoing_the_input(env: Env) -> None:
    token = env.enroll("bad1")
    response = env.client.put("/api/v1/nodes/bad1/facts", headers=env.headers(token),
                              json={"facts": {"password": "hunter2-do-not-echo"}})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid request: body.values: Field required"
    assert "hunter2" not in response.text
