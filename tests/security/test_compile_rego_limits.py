"""Issue 10.3: compile limits and Rego evaluation limits, played by a hostile agent.

A planner agent proposes changes whose expressions and templates are memory and CPU bombs
(``{{ 'A' * 1000000000 }}``, ``2 ** 10**9``, nested loops, ``|join`` over a huge list); the
server (``steward server`` as its own process, on SQLite and PostgreSQL) answers each with an
impact report whose node entry is a compile error naming the file and line, quickly, and the
server's peak resident memory stays far below what any bomb would take. A policy whose
evaluation is unbounded fails closed (the change is blocked, the message names the policy
file), and ``steward policy check`` / ``steward policy test`` fail fast on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    Server,
    call,
    create_identity,
    database_url,
    ok,
    pipeline_server,
    steward,
    write_repo,
)

#: The server's peak RSS (VmHWM) must stay below this; each bomb alone would need gigabytes.
MAX_SERVER_RSS = 768 << 20
#: Grows without end in rego-cpp (no memory limit of its own).
UNBOUNDED_POLICY = ("package steward.policies.unbounded\n\nimport rego.v1\n\n"
                    'deny contains "big" if {\n\tcount(numbers.range(1, 100000000)) > 0\n}\n')

BOMBS = {
    "repetition": ("\"{{ 'A' * 1000000000 }}\"", "the result of '*' would be 1000000000"),
    "power": ('"{{ (2 ** 1000000000) > 1 }}"', "the result of '**' would be 1000000000 bits"),
    "join": ("\"{{ range(100000)|join('x' * 1000000) }}\"", "the result of |join would be"),
    "padding": ("\"{{ 'a'.ljust(1000000000) }}\"", "the result of ljust() would be"),
}
TEMPLATE_BOMB = ("{% set ns = namespace(x='ab') %}\n{% for i in range(64) %}"
                 "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}\n")
LOOP_BOMB = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"


def peak_rss(server: Server) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A versioned server with the built-in policies plus a hostile unbounded one, and one
    enrolled node with facts (so impact analysis compiles it)."""
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"limits-{backend}")
    with database_url(backend, tmp, "limits") as url, \
            pipeline_server(tmp, write_repo(tmp / "repo"), url) as srv:
        policies = srv.data_dir / "policies"
        (policies / "unbounded.rego").write_text(UNBOUNDED_POLICY, encoding="utf-8")
        with (policies / "policies.yaml").open("a", encoding="utf-8") as config:
            config.write("\n  - name: unbounded\n    file: unbounded.rego\n"
                         "    level: hard-mandatory\n    environments: \"*\"\n")
        join = srv.api("POST", "/api/v1/tokens",
                       json={"kind": "join", "name": "limits", "expires_in": 600})["token"]
        with srv.client(join) as client:
            enrolled = client.post("/api/v1/enroll", json={"certname": "web1"})
        assert enrolled.status_code == 200, enrolled.text
        with srv.client(enrolled.json()["token"]) as client:
            facts = client.put("/api/v1/nodes/web1/facts",
                               json={"values": {"os": {"family": "Debian"}}})
        assert facts.status_code == 200, facts.text
        yield srv


def _profile(extra: str) -> str:
    return ("parameters:\n  token: {type: string, default: {secret: app_token}}\n"
            "resources:\n  directory[/etc/app]:\n    mode: \"0755\"\n"
            "  file[/etc/app/token]:\n    content: \"{{ params.token }}\"\n    mode: \"0600\"\n"
            f"{extra}")


def _propose(server: Server, planner: str, title: str, edits: dict[str, str]
             ) -> tuple[dict[str, Any], dict[str, Any], float]:
    started = time.monotonic()
    change = ok(call(server, "POST", "/api/v1/changes", planner, json={
        "environment": "production", "title": title, "edits": edits}))
    elapsed = time.monotonic() - started
    report = ok(call(server, "GET", f"/api/v1/changes/{change['id']}/impact", planner))
    return change, report, elapsed


def _node_error(report: dict[str, Any]) -> dict[str, Any]:
    [node] = [n for n in report["nodes"] if n["certname"] == "web1"]
    error: dict[str, Any] = node["error"]
    assert error is not None, node
    return error


@pytest.fixture(scope="module")
def planner(server: Server) -> str:
    return create_identity(server, "hostile-planner", "agent", "planner")


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_inline_expression_bomb_is_a_located_compile_error(
    server: Server, planner: str, bomb: str
) -> None:
    expression, message = BOMBS[bomb]
    change, report, elapsed = _propose(server, planner, f"bomb: {bomb}", {
        "profiles/app.yaml": _profile(f"  file[/etc/app/bomb]:\n    content: {expression}\n")})
    error = _node_error(report)
    assert error["location"] == "profiles/app.yaml:10", error  # the content: line
    assert message in error["message"], error
    assert "file[/etc/app/bomb]: parameter 'content'" in error["message"]
    assert elapsed < 30
    assert peak_rss(server) < MAX_SERVER_RSS, peak_rss(server)
    # The unbounded policy cannot be evaluated: it fails closed and blocks the change.
    assert "unbounded" in change["policy"]["blocking"], change["policy"]


@pytest.mark.parametrize(("template", "message"), [
    (TEMPLATE_BOMB, "the result of '~' would be"),
    (LOOP_BOMB, "exceeded 10000000 steps"),
])
def test_template_bomb_is_a_located_compile_error(
    server: Server, planner: str, template: str, message: str
) -> None:
    _, report, elapsed = _propose(server, planner, "template bomb", {
        "templates/bomb.j2": template,
        "profiles/app.yaml": _profile("  file[/etc/app/bomb]:\n    template: bomb.j2\n")})
    error = _node_error(report)
    assert error["location"] in ("templates/bomb.j2:1", "templates/bomb.j2:2"), error
    assert message in error["message"], error
    assert elapsed < 30
    assert peak_rss(server) < MAX_SERVER_RSS, peak_rss(server)


def test_unbounded_policy_fails_closed_naming_its_file(server: Server, planner: str) -> None:
    change, _, elapsed = _propose(server, planner, "harmless", {
        "profiles/app.yaml": _profile("  file[/etc/app/motd]:\n    content: \"hi\\n\"\n")})
    [result] = [r for r in change["policy"]["results"] if r["name"] == "unbounded"]
    assert not result["passed"]
    assert result["messages"][0].startswith("the policy could not be evaluated: ")
    assert "unbounded.rego: evaluating steward.policies.unbounded.deny exceeded the memory " \
           "limit" in result["messages"][0], result
    assert change["policy"]["blocking"] == ["unbounded"]
    assert elapsed < 60
    # The server is still answering (the engine ran in a child it could kill).
    with server.client() as client:
        assert client.get("/api/v1/whoami").status_code == 200


def test_policy_check_and_test_fail_fast_on_hostile_policies(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "policies.yaml").write_text(
        "policies:\n  - {name: unbounded, file: unbounded.rego, level: hard-mandatory, "
        "environments: \"*\"}\n  - {name: recursive, file: recursive.rego, "
        "level: advisory, environments: \"*\"}\n", encoding="utf-8")
    (directory / "unbounded.rego").write_text(UNBOUNDED_POLICY, encoding="utf-8")
    (directory / "recursive.rego").write_text(
        "package steward.policies.recursive\n\nimport rego.v1\n\n"
        "f(x) := y if {\n\ty := f(x + 1)\n}\n\ndeny contains \"never\" if {\n\tf(1) > 0\n}\n",
        encoding="utf-8")
    (directory / "recursive_test.rego").write_text(
        "package steward.policies.recursive_test\n\nimport rego.v1\n\n"
        "import data.steward.policies.recursive\n\n"
        "test_quiet if {\n\tcount(recursive.deny) == 0\n}\n", encoding="utf-8")
    started = time.monotonic()
    checked = steward("policy", "check", "--dir", str(directory), timeout=60)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{directory}/unbounded.rego: policy 'unbounded': evaluating " \
           "steward.policies.unbounded.deny exceeded the memory limit" in checked.stderr, \
        checked.stderr
    (directory / "policies.yaml").write_text(
        "policies:\n  - {name: recursive, file: recursive.rego, level: advisory, "
        "environments: \"*\"}\n", encoding="utf-8")
    checked = steward("policy", "check", "--dir", str(directory), timeout=60)
    assert checked.returncode == 1
    assert f"{directory}/recursive.rego: policy 'recursive': evaluating " \
           "steward.policies.recursive.deny failed: Recursion detected" in checked.stderr, \
        checked.stderr
    tested = steward("policy", "test", "--dir", str(directory), timeout=60)
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert "FAIL steward.policies.recursive_test.test_quiet" in tested.stdout
    assert "Recursion detected" in tested.stdout
    assert time.monotonic() - started < 60


def test_yaml_alias_bomb_is_refused_naming_the_file(server: Server, planner: str) -> None:
    """The "billion laughs" in a data file: a 1 KiB proposal that would expand to 10^9 values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    started = time.monotonic()
    response = call(server, "POST", "/api/v1/changes", planner, json={
        "environment": "production", "title": "yaml bomb",
        "edits": {"data/common.yaml": "\n".join(lines) + "\n"}})
    assert time.monotonic() - started < 30
    assert response.status_code == 422, response.text
    assert "nothing was recorded: data/common.yaml:1:" in response.text, response.text
    assert "expands to more than 1000000 values" in response.text, response.text
    assert peak_rss(server) < MAX_SERVER_RSS, peak_rss(server)
