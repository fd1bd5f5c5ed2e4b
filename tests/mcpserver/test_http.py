"""The MCP server over real streamable HTTP, on a real server process, with real tokens.

The in-memory client skips HTTP authentication; here every request carries a bearer token
that the server verifies against Steward's identities, so what a token may see and do is
decided by the server, exactly as an MCP client at /mcp meets it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from tests.e2e.harness import Server, database_url, free_port
from tests.mcpserver.conftest import write_repo


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    from steward.server.init import init_data_dir

    tmp = tmp_path_factory.mktemp(f"mcp-http-{request.param}")
    with database_url(str(request.param), tmp, "mcphttp") as url:
        port = free_port()
        result = init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                               port=port)
        srv = Server(result.config.data_dir, result.admin_token, port=port)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


def _identity(server: Server, name: str, kind: str, *roles: str) -> str:
    created = server.api("POST", "/api/v1/identities",
                         json={"name": name, "kind": kind, "roles": list(roles)})
    return str(created["token"])


async def _session(server: Server, token: str, calls: list[tuple[str, dict[str, Any]]]
                   ) -> tuple[set[str], list[CallToolResult]]:
    tls = ssl.create_default_context(cafile=server.ca)
    async with httpx2.AsyncClient(verify=tls, headers={"Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(30.0)) as http:
        transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
        async with Client(transport) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            results = []
            for name, arguments in calls:
                result = await client.call_tool(name, arguments)
                assert isinstance(result, CallToolResult)
                results.append(result)
    return tools, results


def session(server: Server, token: str, *calls: tuple[str, dict[str, Any]]
            ) -> tuple[set[str], list[CallToolResult]]:
    return asyncio.run(_session(server, token, list(calls)))


def _text(result: CallToolResult) -> str:
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


def test_unknown_token_is_rejected_with_resource_metadata(server: Server) -> None:
    with httpx.Client(base_url=server.url, verify=server.tls(), timeout=30) as client:
        for headers in ({"Authorization": "Bearer stwg_not-a-real-token"}, {}):
            response = client.post("/mcp", headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/list"})
            assert response.status_code == 401, response.text
            challenge = response.headers["www-authenticate"]
            assert "/.well-known/oauth-protected-resource/mcp" in challenge
        metadata = client.get("/.well-known/oauth-protected-resource/mcp")
        assert metadata.status_code == 200
        assert metadata.json()["resource"] == f"{server.url}/mcp"
    entries = server.api("GET", "/pdb/query/v4", params={
        "query": 'audit[outcome, reason] { action = "mcp.authenticate" }'})
    assert entries
    assert all(e["outcome"] == "denied" for e in entries)
    assert "stwg_not-a-real-token" not in str(entries)


def test_node_credentials_cannot_use_mcp(server: Server) -> None:
    join = server.api("POST", "/api/v1/tokens", json={"kind": "join", "name": "mcp"})["token"]
    with httpx.Client(base_url=server.url, verify=server.tls(), timeout=30) as client:
        response = client.post("/mcp", headers={"Authorization": f"Bearer {join}"},
                               json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401


def test_roles_over_http(server: Server) -> None:
    planner = _identity(server, "planner-http", "agent", "planner")
    executor = _identity(server, "executor-http", "agent", "executor")
    edits = {"data/roles/base.yaml": "motd::greeting: hi\n"}

    tools, results = session(
        server, planner,
        ("propose_change", {"environment": "staging", "title": "hi", "edits": edits}),
        ("approve_change", {"change_id": "chg-1"}),
        ("deploy_change", {"change_id": "chg-1"}),
        ("query", {"query": "nodes[certname] {}"}),
    )
    assert "approve_change" not in tools
    assert "deploy_change" not in tools
    assert {"propose_change", "query", "run_impact_analysis"} <= tools
    proposed, approve, deploy, query = results
    assert not proposed.is_error, proposed.content
    change_id = proposed.structured_content["id"]  # type: ignore[index]
    assert approve.is_error
    assert "lacks permission change:approve" in _text(approve)
    assert deploy.is_error
    assert "lacks permission change:deploy" in _text(deploy)
    assert not query.is_error

    reviewed = {"head": proposed.structured_content["head"],  # type: ignore[index]
                "digest": proposed.structured_content["impact_digest"]}  # type: ignore[index]
    tools, results = session(server, executor,
                             ("deploy_change", {"change_id": change_id, **reviewed}))
    assert "deploy_change" in tools
    assert "approve_change" not in tools
    assert results[0].is_error
    assert "not approved" in _text(results[0])

    audit = server.api("GET", "/pdb/query/v4", params={
        "query": 'audit[actor, action, outcome] { actor_kind = "agent" order by id }'})
    seen = {(e["actor"], e["action"], e["outcome"]) for e in audit}
    assert ("agent:planner-http", "change.propose", "succeeded") in seen
    assert ("agent:planner-http", "mcp.approve_change", "denied") in seen
    assert ("agent:planner-http", "query", "succeeded") in seen
    assert ("agent:executor-http", "change.deploy", "denied") in seen


def test_a_revoked_role_hides_the_tool_at_once(server: Server) -> None:
    token = _identity(server, "validator-http", "agent", "validator")
    tools, _ = session(server, token)
    assert "record_validation" in tools
    with server.client() as client:
        response = client.delete("/api/v1/identities/agent:validator-http/roles/validator")
        assert response.status_code == 200, response.text
    tools, results = session(server, token, ("record_validation", {
        "change_id": "chg-1", "verdict": "pass"}))
    assert tools == set()
    assert results[0].is_error


def test_an_executor_deploys_an_approved_change_over_http(server: Server) -> None:
    planner = _identity(server, "planner-deploy", "agent", "planner")
    executor = _identity(server, "executor-deploy", "agent", "executor")
    human = _identity(server, "alice-deploy", "human", "approver")
    _, results = session(server, planner, ("propose_change", {
        "environment": "development", "title": "motd for dev",
        "edits": {"data/roles/base.yaml": "motd::greeting: dev\n"}}))
    change = results[0].structured_content
    assert isinstance(change, dict)
    if change["state"] != "approved":  # development needs no approval, unless configured
        with server.client(human) as client:
            response = client.post(f"/api/v1/changes/{change['id']}/approve", json={
                "head": change["head"], "digest": change["impact_digest"]})
            assert response.status_code == 200, response.text

    async def deploy() -> dict[str, Any]:
        tls = ssl.create_default_context(cafile=server.ca)
        async with httpx2.AsyncClient(verify=tls, timeout=httpx2.Timeout(30.0),
                                      headers={"Authorization": f"Bearer {executor}"}) as http:
            transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
            async with Client(transport) as client:
                started = await client.call_tool("deploy_change", {
                    "change_id": change["id"], "head": change["head"],
                    "digest": change["impact_digest"]})
                assert not started.is_error, started.content
                deployment_id = started.structured_content["id"]  # type: ignore[index]
                for _ in range(100):
                    progress = await client.call_tool("get_deployment",
                                                      {"deployment_id": deployment_id})
                    document = progress.structured_content
                    assert isinstance(document, dict)
                    if document["change_state"] != "deploying":
                        return document
                    await asyncio.sleep(0.1)
        raise AssertionError("the deployment did not finish")

    document = asyncio.run(deploy())
    assert document["state"] == "succeeded", document
    assert document["change_state"] == "deployed"
    audit = server.api("GET", "/pdb/query/v4", params={
        "query": f'audit[actor, outcome] {{ action = "change.deploy" and '
                 f'target = "change:{change["id"]}" }}'})
    assert {"actor": "agent:executor-deploy", "outcome": "succeeded"} in audit
