"""Issue 10.6: one redaction rule, one marker, everywhere data is shown.

The attacker is a hostile agent (and a hostile node): it plants credentials where they end up
in the audit log, in MCP tool output, in REST error messages, in reports and in the server
log — a transcript step with ``Authorization``/``Cookie`` headers and ``password=...`` in its
prose, a change title spelling out a token, requests carrying a foreign bearer credential or
``?password=`` in the URL, facts named ``session_cookie`` and a report log line with
``password=...``. Before, the audit log and the MCP server each had their own rule (the audit
log hid ``cookie`` but kept ``password=...`` in text; MCP hid neither cookies nor
authorization, and hid ``token_id``) and there were five markers. Now every place redacts by
:mod:`steward.catalog.redaction`: no planted value appears in any API response, MCP output,
audit row or the server log, and ``[redacted]`` — the only marker in the source — stands in
its place.

A real server (in-process uvicorn over TLS, a versioned repository) on SQLite and PostgreSQL;
the MCP client speaks streamable HTTP to its ``/mcp``.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import text

from steward.api.app import build_app
from steward.catalog.redaction import REDACTED, install_log_redaction
from steward.pipeline.service import Pipeline
from steward.server.config import ServerConfig, load_config
from steward.server.errors import UVICORN_LOGGERS
from steward.server.init import init_data_dir
from tests.e2e.harness import database_url, free_port
from tests.mcpserver.conftest import report_for, write_repo
from tests.server.serving import serving

#: Every value the attacker plants; none may be shown anywhere.
PLANTED = {name: f"{name}-{uuid.uuid4().hex[:12]}-LEAK" for name in (
    "bearer", "cookie", "password", "set_cookie", "prose", "api_key", "title",
    "foreign_bearer", "x_auth", "query_password", "basic", "report_log", "fact_cookie",
    "fact_auth", "fact_password", "event", "error")}


class _Capture(logging.Handler):
    """The server's log, as its handlers would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Site:
    client: httpx.Client
    config: ServerConfig
    pipeline: Pipeline
    admin: str
    log: _Capture
    tokens: dict[str, str] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        response = self.client.request(method, path, headers=headers, **kwargs)
        self.shown.append(response.text)
        return response

    def ok(self, method: str, path: str, who: str, **kwargs: Any) -> Any:
        response = self.call(method, path, who, **kwargs)
        assert response.is_success, (response.status_code, response.text)
        return response.json()

    def audit_rows(self) -> str:
        """Every stored audit row, as the database holds it."""
        with self.pipeline.services.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT actor, action, target, reason, parameters, remote FROM steward_audit"
            )).all()
        return json.dumps([list(row) for row in rows], default=str)

    def mcp(self, who: str, *calls: tuple[str, dict[str, Any]]) -> list[str]:
        """Each tool call's output (structured and text), over streamable HTTP."""

        async def run() -> list[str]:
            tls = ssl.create_default_context(cafile=self.config.ca_cert)
            async with httpx2.AsyncClient(
                    verify=tls, headers={"Authorization": f"Bearer {self.tokens[who]}"},
                    timeout=httpx2.Timeout(30.0)) as http:
                transport = streamable_http_client(f"{self.config.server_url}/mcp",
                                                   http_client=http)
                async with Client(transport) as client:
                    out = []
                    for name, arguments in calls:
                        result = await client.call_tool(name, arguments)
                        assert not result.is_error, (name, result.content)
                        out.append(json.dumps(result.structured_content, default=str)
                                   + "".join(getattr(c, "text", "") for c in result.content))
                    return out

        outputs = asyncio.run(run())
        self.shown.extend(outputs)
        return outputs


def _no_planted(where: str, *texts: str) -> None:
    joined = "\n".join(texts)
    leaked = sorted(name for name, value in PLANTED.items() if value in joined)
    assert leaked == [], f"{where} shows {leaked}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp(f"redaction-{request.param}")
    capture = _Capture()
    with database_url(str(request.param), tmp, "redaction") as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                               port=free_port())
        config = load_config(result.config.data_dir)
        app = build_app(config)
        with serving(app, config) as client:
            # As `steward server` does once uvicorn has configured logging (cli/server_cmds).
            access = logging.getLogger("uvicorn.access")
            level = access.level
            for name in ("", *UVICORN_LOGGERS):
                logging.getLogger(name).addHandler(capture)
            access.setLevel(logging.INFO)
            install_log_redaction(*UVICORN_LOGGERS)
            try:
                pipeline = app.state.steward.extras["pipeline"]
                assert isinstance(pipeline, Pipeline)
                s = Site(client, config, pipeline, result.admin_token, capture)
                s.tokens["admin"] = result.admin_token
                for name, kind, role in (("planner-bot", "agent", "planner"),
                                         ("debugger-bot", "agent", "debugger"),
                                         ("auditor", "human", "admin")):
                    created = s.ok("POST", "/api/v1/identities", "admin",
                                   json={"name": name, "kind": kind, "roles": [role]})
                    s.tokens[name.split("-")[0]] = created["token"]
                yield s
            finally:
                for name in ("", *UVICORN_LOGGERS):
                    logging.getLogger(name).removeHandler(capture)
                access.setLevel(level)


def _propose(site: Site) -> str:
    change = site.ok("POST", "/api/v1/changes", "planner", json={
        "environment": "staging",
        "title": f"rotate db creds (password={PLANTED['title']})",
        "edits": {"data/roles/base.yaml": "motd::greeting: rotated\n"}})
    return str(change["id"])


def test_a_transcript_full_of_credentials_is_audited_and_shown_redacted(site: Site) -> None:
    change_id = _propose(site)
    step = {
        "tool": "http_request",
        "request": {"headers": {"Authorization": f"Bearer {PLANTED['bearer']}",
                                "Cookie": f"session={PLANTED['cookie']}"},
                    "json": {"user": "ops", "password": PLANTED["password"]}},
        "response": {"Set-Cookie": f"sid={PLANTED['set_cookie']}; Path=/",
                     "token_id": "tok-stays-visible"},
        "note": f"retried the login with password={PLANTED['prose']} and it worked",
        "config": {"upstream": {"x-api-key": PLANTED["api_key"]}},
    }
    site.call("POST", f"/api/v1/changes/{change_id}/transcript", "planner",
              json={"agent": "planner", "kind": "tool_result", "content": step})
    # Whoever reads the trail later: REST (PQL and trace), MCP (the query tool), the table.
    rows = site.ok("GET", "/pdb/query/v4", "auditor", params={
        "query": 'audit[action, target, parameters] { action = "agent.transcript" or '
                 'action = "change.propose" }'})
    trace = site.ok("GET", f"/api/v1/changes/{change_id}/trace", "auditor")
    (mcp_rows,) = site.mcp("auditor", ("query", {
        "query": 'audit[action, parameters] { action = "agent.transcript" }'}))
    stored = site.audit_rows()
    for where, shown in (("REST PQL", json.dumps(rows)), ("REST trace", json.dumps(trace)),
                         ("MCP query", mcp_rows), ("the audit table", stored)):
        _no_planted(where, shown)
        assert REDACTED in shown, where
    # An id is not a secret: both the audit log and MCP keep it (one rule).
    assert "tok-stays-visible" in stored
    assert "tok-stays-visible" in mcp_rows
    transcript = next(r for r in rows if r["action"] == "agent.transcript")["parameters"]
    content = transcript["content"]
    assert content["request"]["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED}
    assert content["response"]["Set-Cookie"] == REDACTED
    assert content["note"] == f"retried the login with password={REDACTED} and it worked"


def test_credentials_in_headers_and_urls_reach_no_response_audit_row_or_log(
        site: Site) -> None:
    attempts = [
        {"headers": {"Authorization": f"Bearer {PLANTED['foreign_bearer']}"}},
        {"headers": {"X-Authentication": PLANTED["x_auth"]}},
        {"headers": {"Authorization": f"Basic {PLANTED['basic']}"}},
    ]
    for extra in attempts:
        response = site.call("GET", "/api/v1/nodes", None, **extra)
        assert response.status_code == 401, response.text
    response = site.call("GET", f"/api/v1/nodes?password={PLANTED['query_password']}",
                         "auditor")
    assert response.status_code == 200, response.text
    _no_planted("responses", *site.shown)
    _no_planted("the audit table", site.audit_rows())
    _no_planted("the server log", *site.log.lines)
    assert any(f"password={REDACTED}" in line for line in site.log.lines), site.log.lines[-5:]


def test_a_hostile_nodes_credentials_are_not_shown_to_agents(site: Site) -> None:
    join = site.ok("POST", "/api/v1/tokens", "admin",
                   json={"kind": "join", "name": "web9", "expires_in": 600})
    enrolled = site.call("POST", "/api/v1/enroll", None, json={"certname": "web9"},
                         headers={"Authorization": f"Bearer {join['token']}"})
    assert enrolled.status_code == 200, enrolled.text
    node = {"Authorization": f"Bearer {enrolled.json()['token']}"}
    facts = site.client.put("/api/v1/nodes/web9/facts", headers=node, json={"values": {
        "hostname": "web9", "session_cookie": PLANTED["fact_cookie"],
        "http": {"authorization": PLANTED["fact_auth"]},
        "app": {"db_password": PLANTED["fact_password"]}}})
    assert facts.status_code == 200, facts.text
    report = report_for("web9", str(uuid.uuid4()))
    report["logs"] = [{"level": "err", "source": "exec[migrate]",
                       "message": f"psql failed: password={PLANTED['report_log']} rejected"}]
    report["resources"] = [{
        "resource_type": "exec", "title": "migrate", "ref": "exec[migrate]",
        "status": "failed", "message": f"Authorization: Bearer {PLANTED['event']}",
        "events": []}]
    posted = site.client.post("/api/v1/nodes/web9/reports", headers=node, json=report)
    assert posted.status_code == 201, posted.text
    rows = site.ok("GET", "/pdb/query/v4", "auditor", params={
        "query": 'reports[hash] { certname = "web9" }'})
    outputs = site.mcp(
        "debugger",
        ("get_node", {"certname": "web9"}),
        ("get_report", {"hash": rows[0]["hash"]}),
        ("query", {"query": 'facts[name, value] { certname = "web9" }'}),
        ("query", {"query": 'fact_contents[path, value] { certname = "web9" }'}))
    _no_planted("MCP output", *outputs)
    assert all(REDACTED in out for out in outputs)
    assert "web9" in outputs[0]  # the rest of the node is shown
    _no_planted("the server log", *site.log.lines)


def test_rest_errors_do_not_echo_a_credential(site: Site) -> None:
    """A change error quoting the caller's input (ChangeError, rendered by the pipeline's
    handler) loses the credential in it."""
    response = site.call("POST", "/api/v1/changes", "planner", json={
        "environment": "staging", "title": "x",
        "edits": {f"data/password={PLANTED['error']}/../../x.yaml": "a: 1\n"}})
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()
    _no_planted("the error", response.text)
    _no_planted("the audit table", site.audit_rows())
    _no_planted("the server log", *site.log.lines)


def test_a_steward_error_does_not_echo_a_credential(site: Site) -> None:
    change_id = _propose(site)
    response = site.call("POST", f"/api/v1/changes/{change_id}/transcript", "planner", json={
        "agent": "planner", "kind": f"password={PLANTED['error']}", "content": {}})
    assert response.status_code == 400, response.text
    _no_planted("the error", response.text)


# -- one marker in the source ------------------------------------------------------------

SRC = Path(__file__).resolve().parents[2] / "src" / "steward"
#: What a redaction marker looks like: a bracketed word about hiding, ``(redacted)``, ``***``.
MARKER = re.compile(
    r"[\[<][^\]>\n]{0,40}\b(?:redact\w*|sensitive|hidden|masked|censored|withheld|filtered|"
    r"obfuscated|elided|scrubbed)\b[^\]>\n]{0,40}[\]>]|\(\s*redacted\s*\)|\*{3,}", re.I)
#: The one module that defines the marker (and its own patterns).
HOME = SRC / "catalog" / "redaction.py"
#: Known literals that are not markers: (file, literal).
ALLOWED = {
    # SQLAlchemy masks a URL password as ***: replaced by the one marker there.
    ("server/db.py", ":***@"),
}


def _string_literals(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_second_redaction_marker_in_the_source() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == HOME:
            continue
        rel = str(path.relative_to(SRC))
        for line, literal in _string_literals(path):
            if (rel, literal) in ALLOWED:
                continue
            if REDACTED in literal or MARKER.search(literal):
                offenders.append(f"{rel}:{line}: {literal[:60]!r}")
    assert offenders == [], ("define no marker but steward.catalog.redaction.REDACTED "
                             f"(import it): {offenders}")


def test_the_marker_guard_catches_the_old_markers() -> None:
    for old in ("<redacted>", "[sensitive value redacted]", "Sensitive [value redacted]",
                "[sensitive]", "[sensitive line]", "…(redacted)", "***", "[REDACTED]",
                "<hidden>"):
        assert MARKER.search(old), old
