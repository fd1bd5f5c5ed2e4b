"""Every MCP tool through the in-process client, for the main roles, on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from steward.mcpserver import TOOL_PERMISSIONS
from steward.mcpserver.data import UNTRUSTED_NOTE
from tests.mcpserver.conftest import INJECTION, Fleet

READ_ONLY = {"query", "ask", "describe_data", "get_node", "get_report", "list_desired_state",
             "read_desired_state", "get_change", "get_deployment", "run_impact_analysis",
             "list_tasks", "get_job"}
DESTRUCTIVE = {"deploy_change", "rollback_change", "run_task"}
#: What each role is shown (permissions from the built-in roles, docs/rbac.md).
EXPECTED_TOOLS = {
    "planner-bot": {"query", "ask", "describe_data", "get_node", "list_desired_state",
                    "read_desired_state", "get_change", "get_deployment", "propose_change",
                    "run_impact_analysis", "list_tasks"},
    "validator-bot": {"query", "ask", "describe_data", "get_node", "list_desired_state",
                      "read_desired_state", "get_change", "get_deployment",
                      "run_impact_analysis", "record_validation", "list_tasks"},
    "executor-bot": {"get_report", "list_desired_state", "read_desired_state", "get_change",
                     "get_deployment", "run_impact_analysis", "deploy_change",
                     "rollback_change", "list_tasks", "run_task", "get_job"},
    # Every reviewer reads the full impact report of what it approves.
    "approver-bot": {"query", "ask", "describe_data", "get_node", "get_report",
                     "list_desired_state", "read_desired_state", "get_change", "get_deployment",
                     "run_impact_analysis", "approve_change", "reject_change", "list_tasks",
                     "get_job"},
    "debugger-bot": {"query", "ask", "describe_data", "get_node", "get_report",
                     "list_desired_state", "read_desired_state", "get_change", "get_deployment",
                     "run_impact_analysis", "list_tasks", "run_task", "get_job"},
}


async def _call(fleet: Fleet, who: str, tool: str, **arguments: Any) -> CallToolResult:
    async with Client(fleet.server(who)) as client:
        result = await client.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    return result


def call(fleet: Fleet, who: str, tool: str, **arguments: Any) -> dict[str, Any]:
    result = asyncio.run(_call(fleet, who, tool, **arguments))
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def refused(fleet: Fleet, who: str, tool: str, **arguments: Any) -> str:
    result = asyncio.run(_call(fleet, who, tool, **arguments))
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


def tools_of(fleet: Fleet, who: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with Client(fleet.server(who)) as client:
            return {t.name: t for t in (await client.list_tools()).tools}

    return asyncio.run(run())


@pytest.mark.parametrize("who", sorted(EXPECTED_TOOLS))
def test_each_role_sees_exactly_its_tools(fleet: Fleet, who: str) -> None:
    assert set(tools_of(fleet, who)) == EXPECTED_TOOLS[who]


def test_annotations_and_the_full_list(fleet: Fleet) -> None:
    tools = tools_of(fleet, "alice")  # a human approver: approve but not deploy
    assert "approve_change" in tools
    assert "deploy_change" not in tools
    from steward.access.roles import BUILTIN_ROLES

    assert set(TOOL_PERMISSIONS.values()) <= set(BUILTIN_ROLES["admin"]) | {
        p for perms in BUILTIN_ROLES.values() for p in perms}
    for who in EXPECTED_TOOLS:
        for name, tool in tools_of(fleet, who).items():
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (name in READ_ONLY), name
            assert tool.annotations.destructive_hint is (name in DESTRUCTIVE), name


def test_planner_cannot_call_hidden_tools_and_the_refusal_is_audited(fleet: Fleet) -> None:
    for tool in ("approve_change", "deploy_change", "record_validation"):
        message = refused(fleet, "planner-bot", tool, change_id="chg-1")
        assert f"lacks permission {TOOL_PERMISSIONS[tool]}" in message
        denied = [e for e in fleet.audit(f"mcp.{tool}") if e["actor"] == "agent:planner-bot"]
        assert denied
        assert denied[-1]["outcome"] == "denied"


def test_query_rows_are_data_with_a_limit_and_audited(fleet: Fleet) -> None:
    result = call(fleet, "debugger-bot", "query", query="facts[name, value] { certname = "
                  '"web1" order by name }', limit=2)
    assert result["entity"] == "facts"
    assert result["rows"] == 2
    assert result["truncated"]
    assert result["note"] == UNTRUSTED_NOTE
    rows = result["untrusted_data_from_nodes"]
    assert rows[0] == {"name": "api_token", "value": "[redacted]"}
    everything = call(fleet, "debugger-bot", "query",
                      query='facts[name, value] { certname = "web1" }')
    assert {"name": "motd_note", "value": INJECTION} in everything["untrusted_data_from_nodes"]
    assert "tok-123" not in json.dumps(everything)
    audited = [e for e in fleet.audit("query") if e["actor"] == "agent:debugger-bot"]
    assert audited[-1]["outcome"] == "succeeded"
    assert audited[-1]["parameters"]["rows"] == 4
    ast = call(fleet, "debugger-bot", "query", query='["from", "nodes", ["=", "certname", '
                                                     '"web1"]]')
    assert [r["certname"] for r in ast["untrusted_data_from_nodes"]] == ["web1"]


def test_query_errors_and_limits(fleet: Fleet) -> None:
    message = refused(fleet, "debugger-bot", "query", query="nodes[certname] { certname = }")
    assert "certname" in message or "line" in message
    failed = [e for e in fleet.audit("query") if e["outcome"] == "failed"]
    assert failed
    assert failed[-1]["actor"] == "agent:debugger-bot"
    assert refused(fleet, "debugger-bot", "query", query="nodes {}", limit=1001)
    assert refused(fleet, "debugger-bot", "query", query="[not json")


def test_entity_permissions_hold_in_queries(fleet: Fleet) -> None:
    # The planner may query, but not the audit log (audit:read) nor reports (report:read).
    message = refused(fleet, "planner-bot", "query", query="audit[action] {}")
    assert "audit:read" in message
    message = refused(fleet, "planner-bot", "query",
                      query='nodes[certname] { certname in reports[certname] { } }')
    assert "report:read" in message


def test_describe_data(fleet: Fleet) -> None:
    result = call(fleet, "planner-bot", "describe_data")
    assert "certname" in result["entities"]["nodes"]["fields"]
    assert result["entities"]["audit"]["needs_permission"] == "audit:read"
    assert "file" in result["resource_types"]
    assert result["examples"]
    paths = [p["path"] for p in result["untrusted_data_from_nodes"]["fact_paths"]]
    assert ["os", "family"] in paths
    assert result["note"] == UNTRUSTED_NOTE


def test_get_node_and_get_report(fleet: Fleet) -> None:
    node = call(fleet, "debugger-bot", "get_node", certname="web1")
    facts = node["untrusted_data_from_nodes"]["facts"]
    assert facts["kernel"] == "Linux"
    assert facts["api_token"] == "[redacted]"
    assert "nobody" in refused(fleet, "debugger-bot", "get_node", certname="nobody")
    report = call(fleet, "executor-bot", "get_report", hash=fleet.report_hash)
    assert report["untrusted_data_from_nodes"]["certname"] == "web1"
    assert "no report" in refused(fleet, "debugger-bot", "get_report", hash="0" * 40)


def test_desired_state_is_readable_but_never_secrets(fleet: Fleet) -> None:
    listing = call(fleet, "planner-bot", "list_desired_state", environment="staging")
    assert "roles/base.yaml" in listing["files"]
    assert not any(f.startswith("secret") for f in listing["files"])
    data = call(fleet, "planner-bot", "read_desired_state", environment="staging",
                path="data/roles/base.yaml")
    assert data["untrusted_file_content"] == "motd::greeting: hello\n"
    assert data["commit"] == listing["commit"]
    assert "secrets are never served" in refused(
        fleet, "planner-bot", "read_desired_state", environment="staging",
        path="secrets/app.yaml")
    assert "no such file" in refused(fleet, "planner-bot", "read_desired_state",
                                     environment="staging", path="nope.yaml")
    assert "unknown environment" in refused(fleet, "planner-bot", "list_desired_state",
                                            environment="nowhere")


def test_the_pipeline_through_mcp(fleet: Fleet) -> None:
    """planner proposes, validator validates, executor is refused, approver approves,
    executor deploys, then rolls back; every step audited with the agent's identity."""
    proposed = call(fleet, "planner-bot", "propose_change", environment="staging",
                    title="Friendlier motd",
                    edits={"data/roles/base.yaml": "motd::greeting: welcome\n"})
    change_id = proposed["id"]
    assert proposed["state"] == "analysed"
    assert proposed["proposer"]["name"] == "planner-bot"

    impact = call(fleet, "validator-bot", "run_impact_analysis", change_id=change_id)
    assert impact["change"]["id"] == change_id
    assert "summary" in impact
    assert impact["nodes_total"] == len(impact["nodes"])
    again = call(fleet, "validator-bot", "run_impact_analysis", change_id=change_id,
                 again=True)
    assert again["digest"] == impact["digest"]

    verdict = call(fleet, "validator-bot", "record_validation", change_id=change_id,
                   verdict="pass", evidence="one greeting, nothing else")
    assert verdict

    # An executor cannot deploy what is not approved; the planner cannot approve its own.
    message = refused(fleet, "executor-bot", "deploy_change", change_id=change_id,
                      head=proposed["head"], digest=proposed["impact_digest"])
    assert "not approved" in message
    denied = [e for e in fleet.audit("change.deploy") if e["outcome"] == "denied"]
    assert denied[-1]["actor"] == "agent:executor-bot"

    # An agent's approval is recorded but, for an agent's change, a human must approve.
    # The approver reads the full report first (no change:impact needed), and approves
    # what it read: head and digest.
    read = call(fleet, "approver-bot", "run_impact_analysis", change_id=change_id)
    assert read["digest"] == impact["digest"]
    assert "change:impact" in refused(fleet, "approver-bot", "run_impact_analysis",
                                      change_id=change_id, again=True)
    reviewed = {"head": proposed["head"], "digest": read["digest"]}
    stale = refused(fleet, "approver-bot", "approve_change", change_id=change_id,
                    head=proposed["head"], digest="sha256:" + "0" * 64)
    assert f"impact report is now {read['digest']}" in stale
    assert "head" in refused(fleet, "approver-bot", "approve_change", change_id=change_id)
    by_agent = call(fleet, "approver-bot", "approve_change", change_id=change_id,
                    comment="looks right", **reviewed)
    assert by_agent["state"] == "analysed"
    assert any("human" in w for w in by_agent["gates"]["waiting_for"])
    approved = call(fleet, "alice", "approve_change", change_id=change_id, comment="ok",
                    **reviewed)
    assert approved["state"] == "approved", approved["gates"]

    shown = call(fleet, "planner-bot", "get_change", change_id=change_id)
    assert shown["state"] == "approved"
    assert shown["history"]
    assert shown["gates"]["validations"]

    async def deploy() -> dict[str, Any]:
        async with Client(fleet.server("executor-bot")) as client:
            result = await client.call_tool("deploy_change", {
                "change_id": change_id, **reviewed, "strategy": {"node_timeout": 1}})
            assert not result.is_error, result.content
            for task in list(fleet.tasks):
                await task
            done = await client.call_tool("get_deployment",
                                          {"deployment_id": result.structured_content["id"]})
            assert isinstance(done.structured_content, dict)
            return done.structured_content

    # web1 (facts only, no agent) is affected and never reports: the canary halts the rollout.
    deployment = asyncio.run(deploy())
    assert deployment["state"] == "halted", deployment
    assert deployment["change_state"] == "failed"
    assert [n["certname"] for n in deployment["nodes"]] == ["web1"]
    deploys = [e for e in fleet.audit("change.deploy") if e["outcome"] == "succeeded"]
    assert deploys[-1]["actor"] == "agent:executor-bot"

    rollback = call(fleet, "executor-bot", "rollback_change", change_id=change_id)
    assert rollback["kind"] == "rollback"
    assert rollback["parent"] == change_id


def test_resources(fleet: Fleet) -> None:
    async def run() -> tuple[list[str], str, str]:
        async with Client(fleet.server("planner-bot")) as client:
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            pql = await client.read_resource("steward://docs/query")
            schema = await client.read_resource("steward://schemas/repo/role.schema.json")
            return uris, pql.contents[0].text, schema.contents[0].text  # type: ignore[union-attr]

    uris, pql, schema = asyncio.run(run())
    assert "steward://docs/query" in uris
    assert "PQL" in pql
    assert json.loads(schema)["type"] == "object"
