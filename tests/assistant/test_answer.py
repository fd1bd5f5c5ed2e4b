"""``answer()``: parse, authorise, run read-only with a limit, retry with Steward's errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from steward.access.authorize import Forbidden, kind_authorizer
from steward.assistant import MAX_ATTEMPTS, AskError, answer
from steward.assistant.core import deterministic_summary
from steward.assistant.fleet import FAILED
from steward.assistant.prompt import instructions, read_context
from tests.assistant.conftest import OPERATOR, Script, Site

Make = Callable[..., Script]


def _ask(site: Site, script: Script, question: str = "q", **kw: Any) -> Any:
    return answer(question, identity=OPERATOR, services=site.services, model=script.model(),
                  authorizer=kind_authorizer, **kw)


def _last_ask(site: Site) -> dict[str, Any]:
    return site.services.audit.entries(action="ask", limit=1)[0]  # newest first


def test_answers_with_query_rows_and_summary(site: Site, script: Make) -> None:
    s = script('nodes[certname] { latest_report_status = "failed" }')
    result = _ask(site, s, "Which nodes failed their last run?")
    assert result.query == 'nodes[certname] { latest_report_status = "failed" }'
    assert sorted(r["certname"] for r in result.rows) == sorted(FAILED)
    assert result.truncated is False
    assert len(result.attempts) == 1
    assert result.attempts[0].error is None
    # The model gave no summary: the deterministic one names the nodes.
    assert result.summary.startswith("4 row(s) over 4 node(s): ")
    entry = _last_ask(site)
    assert entry["outcome"] == "succeeded"
    assert entry["parameters"]["question"] == "Which nodes failed their last run?"
    assert entry["parameters"]["query"] == result.query
    assert entry["parameters"]["rows"] == 4


def test_the_models_summary_is_used_when_given(site: Site, script: Make) -> None:
    s = script('nodes[count()] { latest_report_status = "failed" }',
               summary="Four nodes failed their last run.")
    assert _ask(site, s).summary == "Four nodes failed their last run."


def test_syntax_error_goes_back_to_the_model_with_line_and_column(site: Site,
                                                                  script: Make) -> None:
    s = script('nodes[certname] {\n  latest_report_status = failed\n}',
               'nodes[certname] { latest_report_status = "failed" }')
    result = _ask(site, s)
    assert len(result.rows) == 4
    first, second = result.attempts
    assert first.stage == "syntax"
    assert second.error is None
    assert "line 2, column 26" in (first.error or "")
    # The model's second request carries the parser's message, with line and column.
    retry = s.requests[1][-1]
    assert "PQL syntax error at line 2, column 26" in retry
    assert "expected one of" in retry
    assert "found 'failed'" in retry


def test_query_error_goes_back_to_the_model(site: Site, script: Make) -> None:
    s = script('inventory[certname] { datacenter = "dc2" }',
               'inventory[certname] { facts.datacenter = "dc2" }')
    result = _ask(site, s)
    assert result.attempts[0].stage == "query"
    assert "unknown field 'datacenter' for entity 'inventory'" in s.requests[1][-1]
    assert {r["certname"] for r in result.rows} == {
        n.certname for n in site.fleet.active if n.facts["datacenter"] == "dc2"}


def test_database_error_goes_back_to_the_model(site: Site, script: Make) -> None:
    if site.backend != "postgresql":
        pytest.skip("Python-only regex syntax is a database error on PostgreSQL only")
    s = script('nodes[certname] { certname ~ "(?P<n>web)04" }',
               'nodes[certname] { certname ~ "^web04" }')
    result = _ask(site, s)
    assert result.attempts[0].stage == "query"
    assert "PostgreSQL rejected a regular expression" in s.requests[1][-1]
    assert result.rows == [{"certname": "web04.example.com"}]


def test_gives_up_after_max_attempts_and_audits(site: Site, script: Make) -> None:
    s = script("nodes {", "nodes[certname] { nosuch = 1 }", "nodes[certname] { ")
    with pytest.raises(AskError) as caught:
        _ask(site, s, "hopeless question")
    assert len(caught.value.attempts) == MAX_ATTEMPTS == len(s.requests)
    assert f"after {MAX_ATTEMPTS} attempt(s)" in str(caught.value)
    entry = _last_ask(site)
    assert entry["outcome"] == "failed"
    assert entry["parameters"]["question"] == "hopeless question"
    assert entry["parameters"]["attempts"] == MAX_ATTEMPTS


def test_row_limit_is_enforced(site: Site, script: Make) -> None:
    everyone = _ask(site, script("nodes[certname] { }"), limit=5)
    assert len(everyone.rows) == 5
    assert everyone.truncated
    assert "more matched" in everyone.summary
    # A limit the query writes itself cannot lift the caller's.
    own = _ask(site, script("nodes[certname] { limit 50 }"), limit=10)
    assert len(own.rows) == 10
    assert own.truncated
    small = _ask(site, script("nodes[certname] { order by certname desc limit 3 }"), limit=10)
    assert [r["certname"] for r in small.rows] == [
        "web12.example.com", "web11.example.com", "web10.example.com"]
    assert not small.truncated
    default = _ask(site, script("resources[certname, title] { }"))
    assert len(default.rows) == 100
    assert default.truncated


def test_nothing_but_reading_happens(site: Site, script: Make) -> None:
    before = site.counts()
    attempts = [
        "nodes[certname] { }; DROP TABLE nodes",
        "reports[count()] { }",
    ]
    result = _ask(site, script(*attempts))
    assert result.rows == [{"count": 74}]
    after_ok = _ask(site, script('nodes[certname] { certname = "x\'; DELETE FROM nodes; --" }'))
    assert after_ok.rows == []
    assert site.counts() == before


def test_permissions_of_the_caller_apply(site: Site, script: Make) -> None:
    def no_reports(identity: Any, permission: str, environment: str | None) -> None:
        if permission == "report:read":
            raise Forbidden(f"{identity.label} lacks permission report:read",
                            permission=permission)

    s = script('nodes[certname] { certname in reports[certname] { status = "failed" } }')
    with pytest.raises(Forbidden) as caught:
        answer("which nodes had a failed report?", identity=OPERATOR, services=site.services,
               model=s.model(), authorizer=no_reports)
    assert caught.value.permission == "report:read"
    assert "reports" in str(caught.value)
    assert _last_ask(site)["outcome"] == "denied"
    # The same authoriser lets node queries through.
    ok = answer("failed nodes", identity=OPERATOR, services=site.services,
                model=script('nodes[certname] { latest_report_status = "failed" }').model(),
                authorizer=no_reports)
    assert len(ok.rows) == 4


def test_without_an_authoriser_user_tokens_are_refused(site: Site, script: Make) -> None:
    from steward.access.principal import Principal

    user = Principal.authenticated("user", "u", "someone")
    with pytest.raises(Forbidden):
        answer("q", identity=user, services=site.services,
               model=script("nodes[certname] { }").model())


def test_prompt_is_grounded_in_the_live_fleet(site: Site) -> None:
    context = read_context(site.services.store)
    assert context.node_count == 36
    assert "os" in context.fact_names
    assert ("os.family", "string") in context.fact_paths
    assert {"Package", "Service", "Class"} <= set(context.resource_types)
    assert "Profile::Remote_mgmt" in context.classes
    assert "Role::Web" in context.classes
    assert context.environments == ["production"]
    text = instructions(context)
    for needle in ("os.family (string)", "Profile::Remote_mgmt", "latest_report?",
                   "app01.example.com", "<fleet>", "Q: ", "- inventory: certname"):
        assert needle in text


def test_deterministic_summary() -> None:
    assert deterministic_summary([], False) == "No rows matched."
    assert deterministic_summary([{"count": 4}], False) == "1 row: count = 4."
    assert deterministic_summary([{"certname": "a"}, {"certname": "b"}], False) == \
        "2 row(s) over 2 node(s): a, b."
    assert deterministic_summary([{"type": "A"}, {"type": "B"}], True) == \
        "2 row(s) (more matched; raise the limit to see them)."


def test_prompted_output_for_models_that_cannot_call_tools(site: Site) -> None:
    import json

    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    seen: list[int] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(len(info.output_tools))
        query = "nodes {" if len(seen) == 1 else 'nodes[count()] { certname ~ "^db" }'
        return ModelResponse(parts=[TextPart(json.dumps({"query": query}))])

    result = answer("how many db nodes?", identity=OPERATOR, services=site.services,
                    model=FunctionModel(respond), authorizer=kind_authorizer,
                    output="prompted", summarize=False)
    assert result.rows == [{"count": 8}]
    assert [a.stage for a in result.attempts] == ["syntax", "ok"]
    assert seen == [0, 0]  # no tools offered: the JSON comes back as text
