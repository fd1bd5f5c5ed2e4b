"""Issue 10.3: schemathesis over the server's own OpenAPI document: no input gets a 5xx,
and every answer is what the document says.

A real ``steward server`` (versioned repository, built-in policies, one enrolled node), its
OpenAPI document read from ``/openapi.json`` with an admin token, and every operation in it
given schemathesis-generated requests, valid ones (positive) and invalid ones (negative), as
the admin: every answer is below 500, has a status the operation documents, a content type
it documents and a body its schema admits (schemathesis' conformance checks). Bounded (a few
examples per operation, derandomized) so it stays a suite test; on PostgreSQL the same run
over the same operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.harness import Server, database_url, pipeline_server, write_repo

#: Examples per operation and mode: enough to reach every parameter's edge cases that
#: schemathesis's own strategies favour, few enough for the suite's budget.
EXAMPLES = 6
#: What every answer must pass: no 5xx, and conformance to the OpenAPI document.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: The enrolled node's credential, by server URL.
NODE_TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"schemathesis-{backend}")
    with database_url(backend, tmp, "schemathesis") as url, \
            pipeline_server(tmp, write_repo(tmp / "repo"), url) as srv:
        join = srv.api("POST", "/api/v1/tokens",
                       json={"kind": "join", "name": "st", "expires_in": 600})["token"]
        with srv.client(join) as client:
            enrolled = client.post("/api/v1/enroll", json={"certname": "web1"})
            assert enrolled.status_code == 200
        srv.api("PUT", "/api/v1/nodes/web1/facts", enrolled.json()["token"],
                json={"values": {"os": {"family": "Debian"}}})
        NODE_TOKENS[srv.url] = enrolled.json()["token"]
        yield srv


def _session(server: Server, token: str | None = None) -> requests.Session:
    """Requests as the admin, as ``token``'s holder, or (``token=""``) unauthenticated."""
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify (psf/requests#3829)
    session.verify = str(server.ca)
    if token != "":
        session.headers["Authorization"] = f"Bearer {token or server.admin_token}"
    return session


def _schema(server: Server, session: requests.Session) -> Any:
    document = session.get(f"{server.url}/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(document)


def _run(operation: Any, mode: GenerationMode, server: Server,
         session: requests.Session) -> list[str]:
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: Any) -> None:
        response = case.call(base_url=server.url, session=session, timeout=60,
                             verify=str(server.ca))
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label} ({mode.value}): {response.status_code} for "
                            f"path {case.path_parameters} query {case.query} body "
                            f"{str(case.body)[:200]}: {response.text[:300]}\n  {exc!s:.600}")

    # Unsatisfiable: schemathesis found no invalid input for this operation (nothing to negate).
    with contextlib.suppress(Unsatisfiable):
        exercise()
    return failures


def test_every_generated_request_gets_a_documented_answer(server: Server) -> None:
    session = _session(server)
    schema = _schema(server, session)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_run(operation, mode, server, session))
    assert operations >= 30, operations  # the whole document, not a corner of it
    assert failures == [], "\n".join(failures)
    assert "Traceback" not in server.log()


def test_real_answers_match_the_document(server: Server) -> None:
    """Generated requests mostly name nothing that exists; these name a real change, node
    and token, so the success answers (not only the errors) are checked against their
    schemas too."""
    session = _session(server)
    schema = _schema(server, session)
    change = server.api("POST", "/api/v1/changes", json={
        "environment": "staging", "title": "Conformance",
        "edits": {"data/common.yaml": "app::greeting: conformance\n"}})
    cid = change["id"]
    token = server.api("POST", "/api/v1/tokens", json={"kind": "join", "name": "gone"})["id"]
    requests_made: list[tuple[str, str, dict[str, Any], dict[str, Any], Any]] = [
        ("GET", "/api/v1/changes", {}, {}, None),
        ("GET", "/api/v1/changes/{change_id}", {"change_id": cid}, {}, None),
        ("GET", "/api/v1/changes/{change_id}/impact", {"change_id": cid}, {}, None),
        ("GET", "/api/v1/changes/{change_id}/impact", {"change_id": cid},
         {"format": "text"}, None),
        ("GET", "/api/v1/changes/{change_id}/trace", {"change_id": cid}, {}, None),
        ("POST", "/api/v1/changes/{change_id}/validate", {"change_id": cid}, {},
         {"verdict": "pass", "evidence": "checked"}),
        ("POST", "/api/v1/changes/{change_id}/transcript", {"change_id": cid}, {},
         {"agent": "planner", "kind": "message", "content": {"text": "hello"}}),
        ("POST", "/api/v1/changes/{change_id}/approve", {"change_id": cid}, {},
         {"head": change["head"], "digest": "0" * 64}),
        ("GET", "/api/v1/nodes", {}, {}, None),
        ("GET", "/api/v1/nodes/{certname}", {"certname": "web1"}, {}, None),
        ("POST", "/api/v1/nodes/{certname}/run", {"certname": "web1"}, {}, {"noop": True}),
        ("GET", "/api/v1/tokens", {}, {"include_revoked": True}, None),
        ("GET", "/api/v1/audit", {}, {"limit": 50}, None),
        ("GET", "/api/v1/audit/verify", {}, {}, None),
        ("GET", "/api/v1/identities", {}, {}, None),
        ("POST", "/api/v1/identities", {}, {},
         {"name": "conformance-bot", "kind": "agent", "roles": ["planner@staging"]}),
        ("GET", "/api/v1/tasks", {}, {}, None),
        ("GET", "/api/v1/status", {}, {}, None),
        ("GET", "/pdb/query/v4", {}, {"query": "nodes {}"}, None),
        ("GET", "/pdb/query/v4/{entity}/{name}", {"entity": "nodes", "name": "web1"}, {},
         None),
        ("GET", "/pdb/query/v4/{entity}", {"entity": "facts"}, {}, None),
        ("GET", "/pdb/query/v4", {}, {"query": "nodes { "}, None),
        ("DELETE", "/api/v1/tokens/{token_id}", {"token_id": token}, {}, None),
    ]
    node = _session(server, NODE_TOKENS[server.url])
    as_node: list[tuple[str, str, dict[str, Any], dict[str, Any], Any]] = [
        ("GET", "/api/v1/nodes/{certname}/catalog", {"certname": "web1"}, {}, None),
        ("GET", "/api/v1/nodes/{certname}/run-wait", {"certname": "web1"}, {"timeout": 0},
         None),
        ("GET", "/api/v1/nodes/{certname}/run-wait", {"certname": "web1"}, {"timeout": 0},
         None),
    ]
    anonymous = _session(server, "")
    pending = anonymous.post(f"{server.url}/api/v1/enroll", json={"certname": "web2"},
                             timeout=30).json()
    poll = _session(server, pending["poll_token"])
    failures: list[str] = []
    statuses: list[tuple[str, str, int]] = []
    for method, path, path_parameters, query, body, caller in [
            *((*r, session) for r in requests_made), *((*r, node) for r in as_node),
            ("POST", "/api/v1/enroll", {}, {}, {"certname": "web3"}, anonymous),
            ("GET", "/api/v1/enroll/{request_id}", {"request_id": pending["request_id"]}, {},
             None, poll)]:
        case = schema[path][method].Case(path_parameters=path_parameters, query=query,
                                         **({} if body is None else {"body": body}))
        response = case.call(base_url=server.url, session=caller, timeout=60,
                             verify=str(server.ca))
        statuses.append((method, path, response.status_code))
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{method} {path} {query}: {response.status_code} "
                            f"{response.text[:300]}\n  {exc!s:.600}")
    assert failures == [], "\n".join(failures)
    # Every request above succeeds but two, which check a refusal's and PuppetDB's errors.
    assert [(m, p, c) for m, p, c in statuses if c >= 300] == [
        ("POST", "/api/v1/changes/{change_id}/approve", 403), ("GET", "/pdb/query/v4", 400)]
