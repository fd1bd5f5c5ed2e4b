"""Issue 10.3: request bodies are bounded before they are read; authentication comes first.

Before, an unauthenticated enrollment with 50 MiB of facts was accepted and stored, and a 50 MB
report or proposal too: FastAPI reads and parses a body before a route's dependencies ask who
sent it. Now a middleware in front of every route authenticates a body-bearing API request from
its headers, then admits the body only up to its route's limit; ``Content-Length`` is checked
before a byte is read and a chunked body is counted as it arrives. The attacks are sent over a
raw TLS socket (the body is announced, not sent), so an answer proves nothing was read. A
hostile MCP client's over-long arguments are refused naming the argument. A real
``steward server`` process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from steward.mcpserver.gate import MAX_ARGUMENT_CHARS, argument_problem
from tests.e2e.harness import (
    Server,
    create_identity,
    database_url,
    pipeline_server,
    write_repo,
)

MIB = 1024 * 1024


@dataclass
class Answer:
    status: int
    body: str


def raw(server: Server, method: str, path: str, headers: dict[str, str],
        body: bytes = b"", chunks: list[bytes] | None = None) -> Answer:
    """One HTTP/1.1 request over TLS, sending only ``body`` (or ``chunks``, chunked) whatever
    Content-Length says, and the server's answer: what a hostile client does."""
    context = ssl.create_default_context(cafile=server.ca)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as plain, \
            context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
                "Content-Type: application/json", "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items())]
        if chunks is not None:
            head.append("Transfer-Encoding: chunked")
        tls.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        if chunks is not None:
            try:
                for chunk in chunks:
                    tls.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                tls.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed while we were still sending
        received = b""
        while True:
            try:
                data = tls.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not data:
                break
            received += data
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), received[:200]
    return Answer(int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode())


@dataclass
class Site:
    server: Server
    node_token: str
    planner: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"bounded-{backend}")
    with database_url(backend, tmp, "bounded") as url, \
            pipeline_server(tmp, write_repo(tmp / "repo"), url, policies=False) as srv:
        join = srv.api("POST", "/api/v1/tokens",
                       json={"kind": "join", "name": "bounded", "expires_in": 600})["token"]
        with srv.client(join) as client:
            enrolled = client.post("/api/v1/enroll", json={
                "certname": "web1", "facts": {"os": {"family": "Debian"}}})
        assert enrolled.status_code == 200, enrolled.text
        planner = create_identity(srv, "hostile-planner", "agent", "planner")
        yield Site(srv, enrolled.json()["token"], planner)


def pending_requests(site: Site) -> list[Any]:
    nodes: list[Any] = site.server.api("GET", "/api/v1/nodes")
    return [n for n in nodes if n.get("certname") == "flood"]


def test_unauthenticated_enrollment_with_50_mib_of_facts_is_refused_unread(site: Site) -> None:
    answer = raw(site.server, "POST", "/api/v1/enroll", {"Content-Length": str(50 * MIB)},
                 body=b'{"certname": "flood", "facts": {"x": "')
    assert answer.status == 413, answer
    assert json.loads(answer.body) == {"error": (
        "request body too large: POST /api/v1/enroll accepts at most 262144 bytes (server "
        "setting max_unauthenticated_bytes; docs/server.md#request-limits)")}
    assert pending_requests(site) == []


def test_a_chunked_body_is_counted_as_it_arrives(site: Site) -> None:
    chunk = b"x" * 65536
    answer = raw(site.server, "POST", "/api/v1/enroll", {},
                 chunks=[b'{"certname": "flood", "facts": {"x": "', *[chunk] * 64])
    assert answer.status == 413, answer
    assert "accepts at most 262144 bytes" in answer.body
    assert pending_requests(site) == []


def test_a_50_mb_report_is_refused_before_it_is_read(site: Site) -> None:
    answer = raw(site.server, "POST", "/api/v1/nodes/web1/reports",
                 {"Content-Length": str(50_000_000),
                  "Authorization": f"Bearer {site.node_token}"}, body=b'{"node": "web1"')
    assert answer.status == 413, answer
    assert "accepts at most 16777216 bytes (server setting max_report_bytes" in answer.body


def test_facts_over_their_limit_are_refused(site: Site) -> None:
    answer = raw(site.server, "PUT", "/api/v1/nodes/web1/facts",
                 {"Content-Length": str(5 * MIB), "Authorization": f"Bearer {site.node_token}"})
    assert answer.status == 413, answer
    assert "accepts at most 4194304 bytes (server setting max_facts_bytes" in answer.body


def test_a_50_mb_proposal_is_refused_before_it_is_read(site: Site) -> None:
    answer = raw(site.server, "POST", "/api/v1/changes",
                 {"Content-Length": str(50_000_000), "Authorization": f"Bearer {site.planner}"})
    assert answer.status == 413, answer
    assert "accepts at most 4194304 bytes (server setting max_request_bytes" in answer.body
    changes = site.server.api("GET", "/api/v1/changes")
    assert changes == [] or all(c["title"] != "flood" for c in changes)


@pytest.mark.parametrize("token", [None, "stwn_not-a-real-token"])
def test_authentication_comes_before_the_body(site: Site, token: str | None) -> None:
    """A huge body with no (or a bad) token: 401 at once, the body never read."""
    headers = {"Content-Length": str(50 * MIB)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    answer = raw(site.server, "POST", "/api/v1/nodes/web1/reports", headers)
    assert answer.status == 401, answer
    message = json.loads(answer.body)["error"]
    assert message.startswith("invalid credentials (" if token else "authentication required")


def test_a_bad_token_at_enrollment_is_refused_before_the_body(site: Site) -> None:
    answer = raw(site.server, "POST", "/api/v1/enroll",
                 {"Content-Length": str(50 * MIB), "Authorization": "Bearer stwj_forged"})
    assert answer.status == 401, answer


def test_the_refusals_are_audited(site: Site) -> None:
    raw(site.server, "POST", "/api/v1/changes",
        {"Content-Length": "10", "Authorization": "Bearer stwa_forged-admin"})
    entries = site.server.api("GET", "/api/v1/audit", params={"outcome": "denied"})
    rows = entries["entries"] if isinstance(entries, dict) else entries
    assert any(e["action"] == "POST /api/v1/changes" and "invalid credentials" in e["reason"]
               for e in rows), rows[-5:]


def test_requests_within_the_limits_still_work(site: Site) -> None:
    with site.server.client(site.node_token) as client:
        facts = client.put("/api/v1/nodes/web1/facts", json={
            "values": {"os": {"family": "Debian"}, "padding": "x" * (2 * MIB)}})
    assert facts.status_code == 200, facts.text
    with site.server.client() as client:
        enrolled = client.post("/api/v1/enroll", json={"certname": "small"},
                               headers={"Authorization": ""})
    assert enrolled.status_code == 202, enrolled.text


def test_nul_characters_from_a_node_are_no_server_error(site: Site) -> None:
    """PostgreSQL's text holds no NUL: a hostile node's facts carrying one get an answer."""
    with site.server.client(site.node_token) as client:
        facts = client.put("/api/v1/nodes/web1/facts",
                           json={"values": {"os": {"family": "Debian"}, "evil\x00": "a\x00b"}})
        catalog = client.get("/api/v1/nodes/web1%00x/catalog")
    assert facts.status_code == 400, facts.text
    assert "contains a NUL character (U+0000)" in facts.json()["error"]
    assert catalog.status_code == 400, catalog.text
    with site.server.client(site.planner) as client:
        query = client.get("/pdb/query/v4", params={"query": "nodes { certname = 'a\x00' }"})
    assert query.status_code == 400, query.text
    assert argument_problem("query", {"query": "a\x00"}) == (
        "tool query: argument query contains a NUL character (U+0000), which Steward does not "
        "accept in any value")


def _mcp_call(server: Server, token: str, name: str, arguments: dict[str, Any]) -> str:
    async def call() -> str:
        tls = ssl.create_default_context(cafile=server.ca)
        async with httpx2.AsyncClient(verify=tls, headers={"Authorization": f"Bearer {token}"},
                                      timeout=httpx2.Timeout(60.0)) as http:
            transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
            async with Client(transport) as client:
                result = await client.call_tool(name, arguments)
        assert result.is_error, result
        return "".join(getattr(c, "text", "") for c in result.content)

    return asyncio.run(call())


def test_over_long_mcp_arguments_are_refused_naming_them(site: Site) -> None:
    text = _mcp_call(site.server, site.planner, "propose_change", {
        "environment": "production", "title": "flood",
        "edits": {"data/common.yaml": "x" * (MAX_ARGUMENT_CHARS + 1)}})
    assert text == (f"tool propose_change: argument edits.data/common.yaml is "
                    f"{MAX_ARGUMENT_CHARS + 1} characters; the limit is {MAX_ARGUMENT_CHARS}")
    text = _mcp_call(site.server, site.planner, "query", {"query": "nodes { " * 5000})
    assert "the query is 40000 characters" in text or "nests brackets" in text, text


def test_an_mcp_message_over_the_body_limit_is_a_413(site: Site) -> None:
    with httpx.Client(verify=ssl.create_default_context(cafile=site.server.ca)) as client:
        response = client.post(f"{site.server.url}/mcp", content=b"x" * (5 * MIB), headers={
            "Authorization": f"Bearer {site.planner}", "Content-Type": "application/json"})
    assert response.status_code == 413, response.text


@pytest.mark.parametrize("token", [None, "stwg_not-a-real-token"])
def test_an_mcp_message_without_a_valid_token_is_refused_unread(site: Site,
                                                                token: str | None) -> None:
    """1 MiB announced (under the limit), not a byte sent: the SDK's 401 comes at once."""
    headers = {"Content-Length": str(MIB)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    answer = raw(site.server, "POST", "/mcp", headers)
    assert answer.status == 401, answer
    assert json.loads(answer.body)["error"] == "invalid_token", answer


def test_a_chunked_mcp_message_over_the_body_limit_is_a_413(site: Site) -> None:
    answer = raw(site.server, "POST", "/mcp", {"Authorization": f"Bearer {site.planner}"},
                 chunks=[b"x" * MIB] * 5)
    assert answer.status == 413, answer
    assert "POST /mcp accepts at most 4194304 bytes (server setting max_request_bytes" \
        in answer.body


@pytest.mark.parametrize(("arguments", "problem"), [
    ({"a": "x" * (MAX_ARGUMENT_CHARS + 1)}, "argument a is 1048577 characters"),
    ({"a": list(range(10_001))}, "argument a has 10001 entries"),
    ({"a": {str(i): i for i in range(10_001)}}, "argument a has 10001 entries"),
    ({"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
     "nested more than 32 levels"),
    ({f"k{i}": "x" * 1_000_000 for i in range(5)}, "more than 4194304 characters together"),
    ({"query": "nodes[certname] {}", "limit": 10}, None),
])
def test_argument_bounds(arguments: dict[str, Any], problem: str | None) -> None:
    found = argument_problem("t", arguments)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found, found
