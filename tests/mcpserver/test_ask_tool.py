"""The MCP ``ask`` tool: Steward's assistant (a scripted model here) writes the query, Steward
checks, authorises and runs it; the caller's roles bound what a question can read."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.assistant.conftest import Script
from tests.mcpserver.conftest import INJECTION, Fleet
from tests.mcpserver.test_tools import call, refused


@pytest.fixture
def scripted(fleet: Fleet) -> Iterator[Script]:
    script = Script(answers=['facts[certname, name, value] { certname = "web1" '
                             'order by name }'], summary="web1 has four facts.")
    fleet.model = script.model()
    try:
        yield script
    finally:
        fleet.model = None


def test_a_question_becomes_a_checked_query_with_rows_as_data(fleet: Fleet,
                                                              scripted: Script) -> None:
    result = call(fleet, "debugger-bot", "ask", question="what facts does web1 have?",
                  limit=10)
    assert result["query"].startswith("facts[certname, name, value]")
    assert result["row_count"] == 4
    data = result["untrusted_data_from_nodes"]
    assert data["summary"] == "web1 has four facts."
    assert {"certname": "web1", "name": "motd_note", "value": INJECTION} in data["rows"]
    assert {"certname": "web1", "name": "api_token", "value": "[redacted]"} in data["rows"]
    assert "tok-123" not in json.dumps(result)
    # The question was put to the model with the fleet's grounding, and audited.
    assert "what facts does web1 have?" in " ".join(scripted.requests[0])
    audited = [e for e in fleet.audit("ask") if e["actor"] == "agent:debugger-bot"]
    assert audited[-1]["outcome"] == "succeeded"


def test_the_callers_roles_bound_the_question(fleet: Fleet, scripted: Script) -> None:
    scripted.answers[:] = ['reports[certname, status] { latest_report? = true }']
    # A planner may query, but not read run reports: the generated query is refused.
    message = refused(fleet, "planner-bot", "ask", question="which runs failed?")
    assert "report:read" in message
    # An executor holds no query permission: the tool is not among its tools at all.
    assert "lacks permission query" in refused(fleet, "executor-bot", "ask",
                                               question="anything")


def test_without_a_model_it_says_how_to_configure_one(fleet: Fleet) -> None:
    message = refused(fleet, "debugger-bot", "ask", question="which nodes failed?")
    assert "no model is configured for the Infra Assistant" in message
    assert "steward assistant configure" in message
