"""The reference multi-agent workflow end to end: a real server, real MCP sessions over
streamable HTTP with one identity per agent, scripted models, and real pull agents.

The models are scripted (pydantic-ai FunctionModel) but every tool call they make goes to
Steward over MCP with that agent's own token; what they read (file contents, change ids,
deployment ids) comes from the real server, not from the script.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from steward.agentflow import EXIT_FAILED, EXIT_NEEDS_APPROVAL, Endpoint, Models, Tokens
from steward.agentflow.flow import ToolError, Transcript, resume, run, session
from steward.agentflow.setup import RestSink, create_identities
from tests.e2e.harness import AgentNode, Server, database_url, make_node, pipeline_server

NODES = ("web1", "web2")
TASKS = Path(__file__).resolve().parents[2] / "examples" / "repo" / "tasks"
GOAL = "ensure nginx is installed and running with 4 workers on all web nodes in staging"

#: One step of a scripted model: from the tool results so far, the next calls or an answer.
Turn = Callable[[list[Any]], "list[tuple[str, dict[str, Any]]] | str"]


def scripted(*turns: Turn) -> FunctionModel:
    """A model that plays ``turns`` in order, each seeing the real tool results so far."""
    def respond(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        done = sum(isinstance(m, ModelResponse) for m in messages)
        results = [p.content for m in messages for p in getattr(m, "parts", [])
                   if isinstance(p, ToolReturnPart)]
        step = turns[min(done, len(turns) - 1)](results)
        if isinstance(step, str):
            return ModelResponse(parts=[TextPart(step)])
        return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=f"c{done}-{i}")
                                    for i, (name, args) in enumerate(step)])
    return FunctionModel(respond)


def _write_repo(repo: Path) -> Path:
    (repo / "profiles").mkdir(parents=True)
    (repo / "roles").mkdir()
    (repo / "data" / "roles").mkdir(parents=True)
    (repo / "steward.yaml").write_text("default_environment: staging\n", encoding="utf-8")
    (repo / "profiles" / "nginx.yaml").write_text(
        "parameters:\n  workers: {type: integer, default: 1}\n"
        "resources:\n"
        "  directory[/etc/nginx]:\n    mode: \"0755\"\n"
        "  file[/etc/nginx/nginx.conf]:\n"
        "    content: \"worker_processes {{ params.workers }};\\n\"\n    mode: \"0644\"\n",
        encoding="utf-8")
    (repo / "roles" / "web.yaml").write_text("profiles:\n  nginx: {}\n", encoding="utf-8")
    (repo / "data" / "roles" / "web.yaml").write_text("nginx::workers: 2\n", encoding="utf-8")
    (repo / "classification.yaml").write_text(
        "rules:\n  - name: web\n    match: {node: \"web*\"}\n    role: web\n", encoding="utf-8")
    shutil.copytree(TASKS, repo / "tasks")
    return repo


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"agentflow-{request.param}")
    with database_url(str(request.param), tmp, "agentflow") as url, \
            pipeline_server(tmp, _write_repo(tmp / "repo"), url, policies=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def nodes(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentNode]]:
    tmp = tmp_path_factory.mktemp("agentflow-nodes")
    join = server.api("POST", "/api/v1/tokens",
                      json={"kind": "join", "name": "agentflow", "expires_in": 600})["token"]
    started = [make_node(tmp, name, server) for name in NODES]
    for node in started:
        first = node.once(join_token=join)
        assert first.returncode == 2, first.stdout + first.stderr
        assert _conf(node) == "worker_processes 2;\n"
    for node in started:
        node.start("--interval", "1h")
    try:
        yield started
    finally:
        for node in started:
            node.stop()


def _conf(node: AgentNode) -> str:
    return (node.root / "etc/nginx/nginx.conf").read_text()


def _tokens(server: Server, prefix: str) -> Tokens:
    return create_identities(Endpoint(server.url, server.ca), server.admin_token,
                             server.data_dir.parent / f"{prefix}-tokens.json", prefix=prefix)


def planner_model(workers: int) -> FunctionModel:
    def propose(results: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        current = str(results[-1]["untrusted_file_content"])
        edited = re.sub(r"nginx::workers: \d+", f"nginx::workers: {workers}", current)
        assert edited != current, current
        return [("propose_change", {"environment": "staging",
                                    "title": f"nginx: {workers} workers on web nodes",
                                    "message": GOAL,
                                    "edits": {"data/roles/web.yaml": edited}})]
    return scripted(
        lambda _r: [("list_desired_state", {"environment": "staging", "prefix": "data/"})],
        lambda _r: [("read_desired_state", {"environment": "staging",
                                            "path": "data/roles/web.yaml"})],
        propose,
        lambda r: f"Proposed: {str(r[-1])[:200]}",
    )


def validator_model() -> FunctionModel:
    def respond(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        change_id = re.search(r"chg-\d+", str(messages[0]))
        assert change_id
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done == 0:
            return ModelResponse(parts=[ToolCallPart("run_impact_analysis",
                                                     {"change_id": change_id.group(0)},
                                                     tool_call_id="v0")])
        if done == 1:
            impact = next(p.content for p in messages[-1].parts  # type: ignore[union-attr]
                      if isinstance(p, ToolReturnPart))
            affected = impact["report"]["summary"]["nodes_affected"] \
                if "report" in impact else impact["summary"]["nodes_affected"]
            return ModelResponse(parts=[ToolCallPart("record_validation", {
                "change_id": change_id.group(0), "verdict": "pass",
                "evidence": f"{affected} web nodes affected; only nginx.conf changes"},
                tool_call_id="v1")])
        return ModelResponse(parts=[TextPart("Validated: pass.")])
    return FunctionModel(respond)


def executor_model() -> FunctionModel:
    def respond(messages: list[ModelMessage], _info: AgentInfo) -> ModelResponse:
        change_id = re.search(r"chg-\d+", str(messages[0]))
        approved = re.search(r"head ([0-9a-f]{40,64}) with impact digest (sha256:[0-9a-f]+)",
                             str(messages[0]))
        assert change_id
        assert approved
        if sum(isinstance(m, ModelResponse) for m in messages) == 0:
            return ModelResponse(parts=[ToolCallPart("deploy_change", {
                "change_id": change_id.group(0), "head": approved.group(1),
                "digest": approved.group(2),
                "strategy": {"canary": 1, "batch_size": "1", "max_failures": 1,
                             "node_timeout": 60}}, tool_call_id="e0")])
        return ModelResponse(parts=[TextPart("Deployment started.")])
    return FunctionModel(respond)


def debugger_model() -> FunctionModel:
    def reports(results: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        failed = sorted(set(re.findall(r"web\d+", str(results[-1]))))
        assert failed, results[-1]
        names = ", ".join(f'"{n}"' for n in failed)
        return [("query", {"query": f"reports[certname, hash] {{ status = \"failed\" "
                                    f"and certname in [{names}] and latest_report? = true }}"})]

    def report(results: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        rows = results[-1]["untrusted_data_from_nodes"]
        return [("get_report", {"hash": row["hash"]}) for row in rows]

    def inspect(results: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        # Look at the failing file on the failed nodes with a read-only task.
        failed = sorted(set(re.findall(r"web\d+", str(results[0]))))
        files = sorted(set(re.findall(r"/etc/nginx/[\w.]+", str(results[-1]))))
        names = ", ".join(f'"{n}"' for n in failed)
        return [("run_task", {"name": "file_info", "nodes": f"certname in [{names}]",
                              "params": {"path": files[0]}, "wait": 60})]

    def diagnose(results: list[Any]) -> str:
        failed = sorted(set(re.findall(r"web\d+", str(results[0]))))
        files = sorted(set(re.findall(r"/etc/nginx/[\w.]+", str(results[-2]))))
        found = [(r["certname"], (r["result"] or {}).get("type"))
                 for r in results[-1]["untrusted_data_from_nodes"]]
        return (f"Diagnosis: {', '.join(failed)} failed on {', '.join(files)}; file_info "
                f"finds {found}: a {found[0][1]} is where the file should be. "
                f"The latest reports say: {str(results[-2])[:300]}")
    return scripted(
        lambda _r: [("query", {"query": 'nodes[certname, latest_report_status] '
                                        '{ latest_report_status = "failed" }'})],
        reports,
        report,
        inspect,
        diagnose,
    )


def _models(workers: int) -> Models:
    return Models(planner_model(workers), validator_model(), executor_model(), debugger_model())


def _approve(server: Server, change_id: str, human: str) -> None:
    with server.client(human) as client:
        change = client.get(f"/api/v1/changes/{change_id}").json()  # what the human reviews
        response = client.post(f"/api/v1/changes/{change_id}/approve", json={
            "head": change["head"], "digest": change["impact_digest"]})
    assert response.is_success, response.text


def _transcript(server: Server, change_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = server.api("GET", "/pdb/query/v4", params={
        "query": f'audit[actor, actor_kind, parameters] {{ action = "agent.transcript" and '
                 f'target = "change:{change_id}" order by id }}'})
    return rows


def test_plan_validate_stop_for_a_human_then_deploy(
        server: Server, nodes: list[AgentNode]) -> None:
    tokens = _tokens(server, "flow")
    endpoint = Endpoint(server.url, server.ca)
    sink = RestSink(endpoint, tokens)

    first = run(GOAL, endpoint=endpoint, tokens=tokens, models=_models(4), sink=sink,
                environment="staging")
    assert first.status == "needs_approval", first
    assert first.exit_code == EXIT_NEEDS_APPROVAL
    assert any("approv" in w for w in first.waiting_for), first.waiting_for
    change = server.api("GET", f"/api/v1/changes/{first.change_id}")
    assert change["proposer"] == {"kind": "agent", "name": "flow-planner"}
    assert [v["verdict"] for v in change["gates"]["validations"]] == ["pass"], change["gates"]
    assert all(_conf(n) == "worker_processes 2;\n" for n in nodes)  # nothing deployed yet

    # The whole web tier of staging (blast radius > 25%) needs two approvers.
    for name in ("alice-flow", "carol-flow"):
        human = server.api("POST", "/api/v1/identities", json={
            "name": name, "kind": "human", "roles": ["approver"]})["token"]
        _approve(server, first.change_id, str(human))

    second = resume(first.change_id, endpoint=endpoint, tokens=tokens, models=_models(4),
                    sink=sink, poll=0.2, timeout=180)
    assert second.status == "succeeded", (second.waiting_for, second.deployment)
    assert second.exit_code == 0
    assert all(_conf(n) == "worker_processes 4;\n" for n in nodes)
    assert server.api("GET", f"/api/v1/changes/{first.change_id}")["state"] == "deployed"

    entries = _transcript(server, first.change_id)
    by_agent = {(e["actor"], e["parameters"]["agent"]) for e in entries}
    assert by_agent == {("agent:flow-planner", "planner"), ("agent:flow-validator", "validator"),
                        ("agent:flow-executor", "executor")}
    tools = [(e["parameters"]["agent"], e["parameters"]["content"].get("tool"))
             for e in entries if e["parameters"]["kind"] == "tool_call"]
    assert ("planner", "propose_change") in tools
    assert ("validator", "record_validation") in tools
    assert ("executor", "deploy_change") in tools
    assert all(tokens.planner.token not in str(e) for e in entries)
    audit = server.api("GET", "/pdb/query/v4", params={
        "query": f'audit[actor, action] {{ target = "change:{first.change_id}" and '
                 f'outcome = "succeeded" }}'})
    assert {"actor": "agent:flow-executor", "action": "change.deploy"} in audit
    assert server.api("GET", "/api/v1/audit/verify")["ok"]


def test_a_failed_deployment_is_diagnosed(
        server: Server, nodes: list[AgentNode]) -> None:
    tokens = _tokens(server, "flow")
    endpoint = Endpoint(server.url, server.ca)
    sink = RestSink(endpoint, tokens)
    conf = nodes[0].root / "etc/nginx/nginx.conf"
    conf.unlink()
    conf.mkdir()  # a directory in the way: the file resource fails on web1
    try:
        first = run(GOAL, endpoint=endpoint, tokens=tokens, models=_models(8), sink=sink)
        assert first.status == "needs_approval", first
        for name in ("bob-flow", "dave-flow"):
            human = server.api("POST", "/api/v1/identities", json={
                "name": name, "kind": "human", "roles": ["approver"]})["token"]
            _approve(server, first.change_id, str(human))
        done = resume(first.change_id, endpoint=endpoint, tokens=tokens, models=_models(8),
                      sink=sink, poll=0.2, timeout=180)
    finally:
        conf.rmdir()
    assert done.status == "failed", done.deployment
    assert done.exit_code == EXIT_FAILED
    assert done.deployment is not None
    assert done.deployment["state"] != "succeeded"
    assert done.diagnosis is not None
    assert "web1" in done.diagnosis, done.diagnosis
    assert "nginx.conf" in done.diagnosis, done.diagnosis
    assert "('web1', 'directory')" in done.diagnosis, done.diagnosis
    entries = _transcript(server, first.change_id)
    diagnosis = [e for e in entries if e["parameters"]["kind"] == "diagnosis"]
    assert [e["actor"] for e in diagnosis] == ["agent:flow-debugger"]
    calls = {(e["actor"], e["parameters"]["content"].get("tool")) for e in entries
             if e["parameters"]["kind"] == "tool_call"}
    assert {("agent:flow-debugger", "query"), ("agent:flow-debugger", "run_task")} <= calls
    jobs = server.api("GET", "/pdb/query/v4", params={
        "query": 'jobs[task, requested_by, state] { task = "file_info" }'})
    assert {"task": "file_info", "requested_by": "agent:flow-debugger",
            "state": "finished"} in jobs


def test_separation_is_enforced_by_steward_not_prompts(server: Server) -> None:
    tokens = _tokens(server, "flow")
    endpoint = Endpoint(server.url, server.ca)

    transcript = Transcript()
    # A model told (or tricked) to approve: the tool is not among the planner's tools.
    rogue = scripted(lambda _r: [("approve_change", {"change_id": "chg-1"})],
                     lambda _r: "I could not approve.")

    async def attempt() -> tuple[list[str], str, str]:
        async with session(endpoint, "planner", tokens.planner, transcript) as planner:
            names = await planner.tool_names()
            answer = await planner.run_agent(rogue, "Approve chg-1 now.")
            with pytest.raises(ToolError) as refused:
                await planner.call("approve_change", {"change_id": "chg-1"})
            return names, answer, str(refused.value)

    names, answer, message = asyncio.run(attempt())
    assert "approve_change" not in names
    assert "deploy_change" not in names
    assert "propose_change" in names
    assert answer == "I could not approve."
    # Calling it over the planner's own MCP session anyway: Steward refuses and audits it.
    assert "lacks permission change:approve" in message
    assert [s.content for s in transcript.steps if s.kind == "tool_result"] == [
        {"tool": "approve_change", "error": message.split("refused: ", 1)[1]}]
    denied = server.api("GET", "/pdb/query/v4", params={
        "query": 'audit[actor, action, outcome] { action = "mcp.approve_change" }'})
    assert {"actor": "agent:flow-planner", "action": "mcp.approve_change",
            "outcome": "denied"} in denied


def test_cli_reports_an_unreachable_model_in_one_line(server: Server) -> None:
    """The CLI creates the agents' identities as an admin, then fails cleanly on the model."""
    from tests.e2e.harness import steward, steward_env

    usage = steward("agents", "run", "--data-dir", str(server.data_dir))
    assert usage.returncode != 0
    assert "give a goal, or --resume CHANGE" in usage.stdout + usage.stderr
    result = steward("agents", "run", GOAL, "--data-dir", str(server.data_dir),
                     "--model", "openai-compatible:http://127.0.0.1:9/v1:qwen2.5",
                     env=steward_env())
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "the planner agent's model failed" in output
    assert "Traceback" not in output
    tokens = server.data_dir / "agentflow" / "tokens.json"
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"
    bindings = str(server.api("GET", "/api/v1/identities"))
    for role in ("planner", "validator", "executor", "debugger"):
        assert f"'name': 'agentflow-{role}'" in bindings, bindings


def test_transcript_steps_are_filed_as_their_caller(server: Server) -> None:
    """The REST route the workflow files its steps through: the actor is always the token's
    identity, never a name in the body; kinds, size and permission are checked."""
    tokens = _tokens(server, "flow")
    change = server.api("POST", "/api/v1/changes", json={
        "environment": "staging", "title": "transcript check",
        "edits": {"data/roles/web.yaml": "nginx::workers: 3\n"}})
    path = f"/api/v1/changes/{change['id']}/transcript"
    with server.client(tokens.validator.token) as client:
        filed = client.post(path, json={"agent": "planner", "identity": "flow-planner",
                                        "kind": "message", "content": {"text": "hi"}})
        assert filed.status_code == 201, filed.text
        assert filed.json()["identity"] == "flow-validator"
        bad = client.post(path, json={"agent": "validator", "kind": "shell",
                                      "content": {}})
        assert bad.status_code == 400
        assert "transcript kind 'shell' is invalid" in bad.text
        big = client.post(path, json={"agent": "validator", "kind": "message",
                                      "content": {"text": "x" * 20_000}})
        assert big.status_code == 400
        assert "at most 16384" in big.text
        missing = client.post("/api/v1/changes/chg-999999/transcript",
                              json={"agent": "validator", "kind": "message", "content": {}})
        assert missing.status_code == 404
    nobody = server.api("POST", "/api/v1/identities", json={
        "name": "flow-nobody", "kind": "agent", "roles": []})["token"]
    with server.client(str(nobody)) as client:
        denied = client.post(path, json={"agent": "x", "kind": "message", "content": {}})
    assert denied.status_code == 403, denied.text
    entries = server.api("GET", "/pdb/query/v4", params={
        "query": f'audit[actor, outcome, parameters] {{ action = "agent.transcript" and '
                 f'target = "change:{change["id"]}" order by id }}'})
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        ("agent:flow-validator", "succeeded"), ("agent:flow-nobody", "denied")]
    assert entries[0]["parameters"]["identity"] == "flow-validator"
