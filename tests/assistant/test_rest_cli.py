"""``POST /api/v1/ask`` over the real served application, and ``steward ask`` against it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from steward.assistant.config import CONFIG_FILE
from steward.assistant.fleet import FAILED
from steward.cli.main import run
from tests.assistant.conftest import Script, Site

Make = Callable[..., Script]


@contextlib.contextmanager
def model(site: Site, m: Any) -> Iterator[None]:
    site.use_model(m)
    try:
        yield
    finally:
        site.extras.pop("assistant_model", None)


def _identity(site: Site, name: str, *roles: str) -> str:
    response = site.client.post("/api/v1/identities", headers=site.headers(),
                                json={"name": name, "kind": "agent", "roles": list(roles)})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["token"])


def _cli(site: Site, capsys: pytest.CaptureFixture[str], *args: str,
         token: str | None = None) -> tuple[int, str, str]:
    code = run([*args, "--server", site.config.server_url, "--token",
                token or site.admin_token, "--ca-cert", str(site.config.ca_cert)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ask_over_rest(site: Site, script: Make) -> None:
    s = script('nodes[certname] { latest_report_status = failed }',
               'nodes[certname] { latest_report_status = "failed" }', summary="Four failed.")
    with model(site, s.model()):
        response = site.client.post("/api/v1/ask", headers=site.headers(),
                                    json={"question": "which nodes failed?", "limit": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == 'nodes[certname] { latest_report_status = "failed" }'
    assert body["row_count"] == 3
    assert body["truncated"] is True
    assert body["limit"] == 3
    assert {r["certname"] for r in body["rows"]} < FAILED
    assert body["summary"] == "Four failed."
    assert [a["stage"] for a in body["attempts"]] == ["syntax", "ok"]
    assert "line 1, column 42" in body["attempts"][0]["error"]
    entry = site.services.audit.entries(action="ask", limit=1)[0]
    assert "admin" in entry["actor"]
    assert entry["parameters"]["rows"] == 3


def test_rest_failures(site: Site, script: Make) -> None:
    with model(site, script("nodes {").model()):
        response = site.client.post("/api/v1/ask", headers=site.headers(),
                                    json={"question": "anything"})
    assert response.status_code == 422
    assert len(response.json()["attempts"]) == 3
    assert site.client.post("/api/v1/ask", json={"question": "x"}).status_code == 401
    response = site.client.post("/api/v1/ask", headers=site.headers(), json={"question": ""})
    assert response.status_code == 422


def test_a_token_without_report_read_cannot_read_reports_through_ask(site: Site,
                                                                     script: Make) -> None:
    planner = _identity(site, f"planner-{site.backend}", "planner")  # query, no report:read
    reports = script('reports[certname] { latest_report? = true and status = "failed" }')
    with model(site, reports.model()):
        response = site.client.post("/api/v1/ask", headers=site.headers(planner),
                                    json={"question": "which runs failed?"})
    assert response.status_code == 403, response.text
    assert response.json()["permission"] == "report:read"
    entry = site.services.audit.entries(action="ask", limit=1)[0]
    assert entry["outcome"] == "denied"
    nodes = script('nodes[certname] { latest_report_status = "failed" }')
    with model(site, nodes.model()):
        response = site.client.post("/api/v1/ask", headers=site.headers(planner),
                                    json={"question": "which nodes failed?"})
    assert response.status_code == 200, response.text
    assert response.json()["row_count"] == 4
    nobody = _identity(site, f"nobody-{site.backend}")  # no role: not even query
    with model(site, nodes.model()):
        response = site.client.post("/api/v1/ask", headers=site.headers(nobody),
                                    json={"question": "which nodes failed?"})
    assert response.status_code == 403
    assert response.json()["permission"] == "query"


def test_cli_ask(site: Site, script: Make, capsys: pytest.CaptureFixture[str]) -> None:
    s = script('inventory[certname, facts.os.family] { certname = "db05.example.com" }')
    with model(site, s.model()):
        code, out, _ = _cli(site, capsys, "ask", "What OS family is db05?")
        assert code == 0
        assert 'query: inventory[certname, facts.os.family] { certname = "db05.example.com" }' \
            in out
        assert "Debian" in out
        assert "1 row: certname = db05.example.com" in out
        code, out, _ = _cli(site, capsys, "ask", "What OS family is db05?", "--json")
    assert code == 0
    assert json.loads(out)["rows"] == [{"certname": "db05.example.com",
                                        "facts.os.family": "Debian"}]


def test_no_model_configured(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert not (site.config.data_dir / CONFIG_FILE).exists()
    response = site.client.post("/api/v1/ask", headers=site.headers(),
                                json={"question": "which nodes failed?"})
    assert response.status_code == 409
    message = response.json()["error"]
    assert "no model is configured" in message
    assert "steward assistant configure --model" in message
    code, _, err = _cli(site, capsys, "ask", "which nodes failed?")
    assert code != 0
    assert "steward assistant configure --model" in err
    assert "openai-compatible:http://localhost:11434/v1:qwen2.5-coder" in err
    # Querying needs no model.
    code, out, _ = _cli(site, capsys, "query", 'nodes[count()] { }', "--json")
    assert code == 0
    assert json.loads(out) == [{"count": 36}]


def test_configured_model_that_cannot_be_reached(site: Site,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = str(site.config.data_dir)
    assert run(["assistant", "configure", "--data-dir", data, "--model",
                "openai-compatible:http://127.0.0.1:9/v1:qwen2.5-coder"]) == 0
    try:
        assert "qwen2.5-coder at http://127.0.0.1:9/v1" in capsys.readouterr().out
        assert run(["assistant", "show", "--data-dir", data]) == 0
        assert 'base_url = "http://127.0.0.1:9/v1"' in capsys.readouterr().out
        response = site.client.post("/api/v1/ask", headers=site.headers(),
                                    json={"question": "which nodes failed?"}, timeout=120)
        assert response.status_code == 502, response.text
        assert "the model failed to answer" in response.json()["error"]
        # A hosted provider without its key in the environment says which variable.
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert run(["assistant", "configure", "--data-dir", data, "--model",
                    "openai:gpt-4o-mini", "--api-key-env", "STEWARD_TEST_NO_SUCH_KEY"]) == 0
        response = site.client.post("/api/v1/ask", headers=site.headers(),
                                    json={"question": "which nodes failed?"})
        assert response.status_code == 409
        assert "STEWARD_TEST_NO_SUCH_KEY" in response.json()["error"]
    finally:
        (site.config.data_dir / CONFIG_FILE).unlink()
