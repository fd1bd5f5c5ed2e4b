"""Policy as code: policies.yaml, Rego evaluation with regopy, levels, the built-ins, tests."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from steward.cli.policy_cmds import register
from steward.pipeline.impact.report import ImpactReport
from steward.pipeline.policy.errors import (
    PolicyConfigError,
    RegoSyntaxError,
)
from steward.pipeline.policy.evaluate import (
    DEFAULT_POLICIES_DIR,
    evaluate,
    install_default_policies,
    load_policy_set,
)
from steward.pipeline.policy.inputs import PolicyInput, project, referenced_paths
from steward.pipeline.policy.inputs import policy_input as typed_input
from steward.pipeline.policy.inputs import resource_changes as typed_changes
from steward.pipeline.policy.opa_tests import run_policy_tests
from steward.pipeline.policy.rego import RegoModule

ROOT = Path(__file__).resolve().parents[3]


# -- realistic impact reports (docs/pipeline.md, format 1) -----------------------------------


def resource(title: str, action: str = "modify", type_: str = "file",
             properties: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": f"{type_}[{title}]", "type": type_, "title": title, "action": action,
        "before": None if action == "add" else {"file": "profiles/base.yaml", "line": 12},
        "after": None if action == "remove" else {"file": "profiles/base.yaml", "line": 12},
        "properties": properties if properties is not None else [
            {"name": "content", "before": "a\n", "after": "b\n", "sensitive": False}],
        "content_diff": None,
    }
    if type_ == "file" and action == "modify":
        entry["content_diff"] = f"--- {title}\n+++ {title}\n@@ -1 +1 @@\n-a\n+b\n"
    return entry


def mode(before: str | None, after: str) -> list[dict[str, Any]]:
    return [{"name": "mode", "before": before, "after": after, "sensitive": False}]


def impact(nodes: dict[str, list[dict[str, Any]]], *, environment: str = "production",
           in_environment: int = 100, proposer: str = "alice", kind: str = "human",
           changed_files: list[str] | None = None) -> dict[str, Any]:
    entries = [{
        "certname": name, "status": "changed",
        "current": {"catalog": "sha256:" + "a" * 64, "code_id": "1" * 40, "stored": None,
                    "error": None},
        "proposed": {"catalog": "sha256:" + "b" * 64, "code_id": "2" * 40,
                     "environment": environment},
        "classification": None, "resources": resources, "edges": [], "error": None,
        "live": None,
    } for name, resources in sorted(nodes.items())]
    affected = len(entries)
    changed = sum(len(resources) for resources in nodes.values())
    return {
        "format": 1,
        "change": {"id": "chg-3", "environment": environment, "base": "1" * 40,
                   "head": "2" * 40, "proposer": {"name": proposer, "kind": kind},
                   "changed_files": changed_files or ["data/common.yaml"],
                   "changed_data_keys": ["base::setting"]},
        "selection": {"mode": "inputs", "reason": "data keys base::setting changed",
                      "nodes_in_environment": in_environment, "nodes_recompiled": affected,
                      "nodes_without_inputs": 0, "nodes_classified_from_other_environments": 0},
        "summary": {"nodes_affected": affected, "nodes_changed": affected, "nodes_failed": 0,
                    "nodes_unchanged": 0, "nodes_new": 0, "nodes_removed": 0,
                    "resources_added": 0, "resources_removed": 0,
                    "resources_modified": changed,
                    "blast_radius": {"nodes": affected, "resources": changed,
                                     "percent": round(100 * affected / in_environment, 2)},
                    "risk": "low", "risk_reasons": []},
        "nodes": entries,
        "digest": "sha256:" + "c" * 64,
    }


def policy_input(report: dict[str, Any], **kwargs: Any) -> PolicyInput:
    """The typed input of a report document (as the pipeline reads a stored one)."""
    return typed_input(ImpactReport.from_json(report), **kwargs)


def resource_changes(report: dict[str, Any]) -> list[dict[str, Any]]:
    return typed_changes(ImpactReport.from_json(report))


@pytest.fixture(scope="module")
def builtins() -> Any:
    return load_policy_set(DEFAULT_POLICIES_DIR)


def verdicts(policy_set: Any, report: dict[str, Any], environment: str = "production",
             **kwargs: Any) -> dict[str, Any]:
    result = evaluate(policy_set, policy_input(report, title="t", **kwargs), environment)
    return {r.name: r for r in result.results}


def write_set(directory: Path, config: str, modules: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policies.yaml").write_text(config, encoding="utf-8")
    for name, text in modules.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def always(name: str, message: str = "no") -> str:
    return (f"package steward.policies.{name}\n\nimport rego.v1\n\n"
            f'deny contains "{message}" if input.environment\n')


# -- built-in policies ------------------------------------------------------------------------


def test_builtins_all_pass_on_a_harmless_change(builtins: Any) -> None:
    report = impact({"web1": [resource("/etc/motd")], "web2": [resource("/etc/motd")]})
    result = evaluate(builtins, policy_input(report), "production")
    assert [r.name for r in result.results] == [
        "agent_protected_files", "blast_radius", "sensitive_changes", "sshd_config",
        "world_writable"]
    assert result.passed
    assert all(r.passed and r.messages == () for r in result.results)
    assert (result.blocking, result.needs_override, result.warnings) == ((), (), ())


def test_world_writable_denies_o_plus_w_under_etc(builtins: Any) -> None:
    report = impact({
        "web1": [resource("/etc/app.conf", properties=mode("0644", "0666"))],
        "web2": [resource("/etc/app.conf", properties=mode("0644", "0666"))],
        "db1": [resource("/etc/app.d", action="add", type_="directory",
                         properties=mode(None, "1777"))],
    })
    result = verdicts(builtins, report)["world_writable"]
    assert not result.passed
    assert result.level == "hard-mandatory"
    assert result.overridable_by == ()
    assert result.messages == (
        "directory[/etc/app.d] would get mode 1777 (world-writable under /etc) on db1",
        "file[/etc/app.conf] would get mode 0666 (world-writable under /etc) on web1, web2",
    )


def test_world_writable_allows_safe_modes_and_paths_outside_etc(builtins: Any) -> None:
    report = impact({
        "web1": [resource("/etc/app.conf", properties=mode("0600", "0644")),
                 resource("/etc/sudoers.d", type_="directory", properties=mode("0755", "0750")),
                 resource("/tmp/scratch", properties=mode("0644", "0777")),
                 resource("/etcetera/x", properties=mode("0644", "0777")),
                 resource("/etc/gone", action="remove", properties=mode("0777", "0644"))],
    })
    assert verdicts(builtins, report)["world_writable"].passed


def test_world_writable_finds_the_path_parameter(builtins: Any) -> None:
    props = [{"name": "path", "before": None, "after": "/etc/cron.d/job", "sensitive": False},
             *mode(None, "0646")]
    report = impact({"web1": [resource("cron-job", action="add", properties=props)]})
    assert verdicts(builtins, report)["world_writable"].messages == (
        "file[cron-job] would get mode 0646 (world-writable under /etc) on web1",)


def test_sshd_config_needs_security_override(builtins: Any) -> None:
    report = impact({
        "bastion1": [resource("/etc/ssh/sshd_config")],
        "bastion2": [resource("/etc/ssh/sshd_config.d/10-steward.conf", action="add")],
    })
    result = evaluate(builtins, policy_input(report), "production")
    sshd = {r.name: r for r in result.results}["sshd_config"]
    assert not sshd.passed
    assert sshd.level == "soft-mandatory"
    assert sshd.overridable_by == ("security",)
    assert sshd.messages == (
        "file[/etc/ssh/sshd_config.d/10-steward.conf] (add) changes the SSH daemon "
        "configuration on bastion2; it needs security approval",
        "file[/etc/ssh/sshd_config] (modify) changes the SSH daemon configuration on "
        "bastion1; it needs security approval",
    )
    assert [r.name for r in result.needs_override] == ["sshd_config"]
    assert result.blocking == ()
    assert not result.passed


def test_sshd_config_allows_other_ssh_files(builtins: Any) -> None:
    report = impact({"web1": [resource("/etc/ssh/ssh_config"),
                              resource("/etc/ssh/sshd_config.bak")]})
    assert verdicts(builtins, report)["sshd_config"].passed


@pytest.mark.parametrize(("environment", "affected", "total", "passed"), [
    ("production", 26, 100, False),
    ("production", 25, 100, True),
    ("staging", 61, 100, False),
    ("staging", 60, 100, True),
    ("development", 10, 10, True),
])
def test_blast_radius_limits_per_environment(builtins: Any, environment: str, affected: int,
                                             total: int, passed: bool) -> None:
    report = impact({f"n{i:03d}": [resource("/etc/motd")] for i in range(affected)},
                    environment=environment, in_environment=total)
    result = verdicts(builtins, report, environment)["blast_radius"]
    assert result.passed is passed
    assert result.overridable_by == ("approver",)
    if not passed:
        limit = {"production": 25, "staging": 60}[environment]
        assert result.messages == (
            f"the change affects {affected}% of {environment} ({affected} nodes); "
            f"the limit there is {limit}%",)


def test_agent_may_not_touch_policies_or_access_rules(builtins: Any) -> None:
    files = ["data/common.yaml", "policies/sshd.rego", "rbac.yaml", "config/approvals.yaml",
             ".steward/config.json"]
    report = impact({"web1": [resource("/etc/motd")]}, proposer="planner-bot", kind="agent",
                    changed_files=files)
    result = evaluate(builtins, policy_input(report), "production")
    agent = {r.name: r for r in result.results}["agent_protected_files"]
    assert agent.level == "hard-mandatory"
    assert agent.messages == tuple(sorted(
        f"agent planner-bot may not change {f}: policies and access rules are changed by people"
        for f in files[1:]))
    assert [r.name for r in result.blocking] == ["agent_protected_files"]


def test_agent_may_edit_desired_state_and_humans_may_edit_policies(builtins: Any) -> None:
    agent = impact({"web1": [resource("/etc/motd")]}, kind="agent",
                   changed_files=["data/roles/web.yaml", "templates/rbac.yaml.j2"])
    human = impact({"web1": [resource("/etc/motd")]}, kind="human",
                   changed_files=["policies/x.rego", "rbac.yaml"])
    assert verdicts(builtins, agent)["agent_protected_files"].passed
    assert verdicts(builtins, human)["agent_protected_files"].passed


def test_messages_with_quotes_and_unicode_survive(builtins: Any) -> None:
    title = '/etc/ssh/sshd_config.d/a"b\\c-é✓.conf'
    report = impact({'web"1': [resource(title, action="add")]})
    messages = verdicts(builtins, report)["sshd_config"].messages
    assert messages == (f"file[{title}] (add) changes the SSH daemon configuration on "
                        'web"1; it needs security approval',)


def test_more_than_five_nodes_are_summarised(builtins: Any) -> None:
    report = impact({f"web{i}": [resource("/etc/ssh/sshd_config")] for i in range(1, 9)},
                    in_environment=10_000)
    (message,) = verdicts(builtins, report)["sshd_config"].messages
    assert "on web1, web2, web3, web4, web5 and 3 more;" in message


# -- levels and environments ------------------------------------------------------------------


def test_levels_sort_failures_into_blocking_override_and_warnings(tmp_path: Path) -> None:
    config = """policies:
  - {name: hard, file: hard.rego, level: hard-mandatory, environments: "*"}
  - {name: soft, file: soft.rego, level: soft-mandatory, environments: "*"}
  - {name: soft_custom, file: soft_custom.rego, level: soft-mandatory, environments: "*",
     override_roles: [security, approver]}
  - {name: warn, file: warn.rego, level: advisory, environments: "*"}
"""
    directory = write_set(tmp_path / "p", config, {
        f"{n}.rego": always(n, f"{n} says no") for n in ("hard", "soft", "soft_custom", "warn")})
    result = evaluate(load_policy_set(directory), {"environment": "production"}, "production")
    assert [r.name for r in result.blocking] == ["hard"]
    assert [r.name for r in result.needs_override] == ["soft", "soft_custom"]
    assert [r.name for r in result.warnings] == ["warn"]
    by_name = {r.name: r for r in result.results}
    assert by_name["soft"].overridable_by == ("admin", "approver")
    assert by_name["soft_custom"].overridable_by == ("approver", "security")
    assert by_name["warn"].messages == ("warn says no",)
    assert not result.passed
    assert result.to_dict()["blocking"] == ["hard"]


def test_advisory_failures_alone_do_not_block(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: warn, file: warn.rego, level: advisory, environments: "*"}
""", {"warn.rego": always("warn")})
    result = evaluate(load_policy_set(directory), {"environment": "staging"}, "staging")
    assert result.passed
    assert [r.name for r in result.warnings] == ["warn"]


def test_policies_apply_only_to_their_environments(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: prod_only, file: a.rego, level: hard-mandatory, environments: [production]}
  - {name: everywhere, file: b.rego, level: advisory, environments: "*"}
  - {name: not_dev, file: c.rego, level: soft-mandatory, environments: [staging, production]}
""", {"a.rego": always("prod_only"), "b.rego": always("everywhere"),
      "c.rego": always("not_dev")})
    policy_set = load_policy_set(directory)

    def names(env: str) -> list[str]:
        return [r.name for r in evaluate(policy_set, {"environment": env}, env).results]

    assert names("production") == ["everywhere", "not_dev", "prod_only"]
    assert names("staging") == ["everywhere", "not_dev"]
    assert names("development") == ["everywhere"]


def test_empty_and_undefined_deny_pass(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: quiet, file: quiet.rego, level: hard-mandatory, environments: "*"}
""", {"quiet.rego": "package steward.policies.quiet\n\nimport rego.v1\n\n"
                    'deny contains "x" if input.never_there == 1\n'})
    result = evaluate(load_policy_set(directory), {"environment": "production"}, "production")
    assert result.passed
    assert result.results[0].messages == ()


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "expected"), [
    ("policies:\n  - name: a\n    file: a.rego\n    level: hard\n",
     "policies.yaml:4: policy 'a': 'level' must be one of advisory, soft-mandatory, "
     "hard-mandatory"),
    ("policies:\n  - name: a\n    file: a.rego\n    level: advisory\n    enviroments: '*'\n",
     "policies.yaml:5: unknown field 'enviroments' (did you mean 'environments'?)"),
    ("policies:\n  - name: a\n    file: missing.rego\n    level: advisory\n",
     "policies.yaml:3: policy 'a': no such file"),
    ("policies:\n  - name: Bad-Name\n    file: a.rego\n    level: advisory\n",
     "policies.yaml:2: 'name' must be a lower-case identifier"),
    ("policies:\n  - name: a\n    file: a.rego\n    level: hard-mandatory\n"
     "    override_roles: [security]\n",
     "policies.yaml:5: policy 'a': 'override_roles' only applies to soft-mandatory policies "
     "(hard-mandatory ones cannot be overridden)"),
    ("policies:\n  - name: a\n    file: a.rego\n    level: advisory\n    environments: []\n",
     "policies.yaml:5: policy 'a': 'environments' must be \"*\" or a non-empty list"),
    ("policies:\n  - {name: a, file: a.rego, level: advisory}\n"
     "  - {name: a, file: a.rego, level: advisory}\n",
     "policies.yaml:3: policy 'a' is declared twice (first at"),
    ("policies:\n  - name: a\n    name: b\n", "policies.yaml:3: duplicate key 'name'"),
    ("policies: [\n", "policies.yaml:2: invalid YAML"),
])
def test_policies_yaml_errors_name_line_and_field(tmp_path: Path, config: str,
                                                  expected: str) -> None:
    directory = write_set(tmp_path / "p", config, {"a.rego": always("a")})
    with pytest.raises(PolicyConfigError) as info:
        load_policy_set(directory)
    assert str(info.value).startswith(f"{directory}/{expected}"), str(info.value)


def test_module_package_must_match_its_name(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", "policies:\n  - {name: a, file: a.rego, "
                          "level: advisory}\n", {"a.rego": "# header\n\npackage other.a\n"})
    with pytest.raises(PolicyConfigError) as info:
        load_policy_set(directory)
    assert str(info.value) == (
        f"{directory}/a.rego:3: policy 'a' (declared at {directory}/policies.yaml:2) must be "
        "in package steward.policies.a, not other.a")


@pytest.mark.parametrize(("source", "line_col", "message"), [
    ("package steward.policies.a\n\nimport rego.v1\n\ndeny contains msg if {\n    x := \n"
     '    msg := "a"\n}\n', "6:5", "Rego compile error: Invalid assignment"),
    ("package steward.policies.a\n\ndeny[ := 1\n", "3:5", "Rego syntax error:"),
])
def test_rego_syntax_errors_name_file_and_line(tmp_path: Path, source: str, line_col: str,
                                               message: str) -> None:
    directory = write_set(tmp_path / "p", "policies:\n  - {name: a, file: a.rego, "
                          "level: advisory}\n", {"a.rego": source})
    with pytest.raises(RegoSyntaxError) as info:
        load_policy_set(directory)
    assert str(info.value).startswith(f"{directory}/a.rego:{line_col}: {message}"), \
        str(info.value)


def test_whole_input_with_is_refused_before_it_can_crash(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", "policies: []\n", {
        "a_test.rego": "package steward.policies.a\n\nimport rego.v1\n\n"
                       '# "with input as" in a comment is fine\n'
                       'test_x if {\n\tupper("a") == "A" with input as {}\n}\n'})
    with pytest.raises(RegoSyntaxError) as info:
        run_policy_tests(directory)
    assert str(info.value).startswith(f"{directory}/a_test.rego:7: 'with input as ...'")


def test_runtime_errors_name_the_module(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: a, file: a.rego, level: advisory, environments: "*"}
""", {"a.rego": "package steward.policies.a\n\nimport rego.v1\n\n"
                'deny contains msg if {\n\tmsg := no_such_function(input.environment)\n}\n'})
    # Fail closed: the policy that cannot be evaluated fails (at its level), naming its file.
    result = evaluate(load_policy_set(directory), {"environment": "production"},
                      "production").results[0]
    assert not result.passed
    assert result.messages == (f"the policy could not be evaluated: {directory}/a.rego: "
                               "evaluating steward.policies.a.deny failed: Function not found: "
                               "no_such_function",)


def test_sprintf_quoting_bug_is_reported_not_misparsed(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: a, file: a.rego, level: advisory, environments: "*"}
""", {"a.rego": "package steward.policies.a\n\nimport rego.v1\n\n"
                'deny contains sprintf("%s!", [upper(input.environment)]) if true\n'})
    result = evaluate(load_policy_set(directory), {"environment": "production"},
                      "production").results[0]
    assert not result.passed
    assert "build messages with concat" in result.messages[0]


def test_deny_must_be_a_set(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: a, file: a.rego, level: advisory, environments: "*"}
""", {"a.rego": "package steward.policies.a\n\ndeny := 3\n"})
    result = evaluate(load_policy_set(directory), {"environment": "production"},
                      "production").results[0]
    assert not result.passed
    assert "'deny' must be a set of messages" in result.messages[0]


# -- input: grouping, projection, determinism -----------------------------------------------


def test_resource_changes_group_identical_diffs() -> None:
    same = resource("/etc/motd")
    report = impact({"b": [same], "a": [same], "c": [resource("/etc/motd", action="add")]})
    groups = resource_changes(report)
    assert [(g["resource"], g["action"], g["nodes"]) for g in groups] == [
        ("file[/etc/motd]", "add", ["c"]), ("file[/etc/motd]", "modify", ["a", "b"])]


def test_projection_keeps_exactly_what_modules_reference() -> None:
    modules = [RegoModule("a.rego", 'package a\n# input.secret in a comment\nx := "input.y"\n'
                                    'y := input.impact.summary.blast_radius\n'
                                    'z := input["change"].proposer\n')]
    paths = referenced_paths(modules)
    assert paths == {("impact", "summary", "blast_radius"), ("change", "proposer")}
    document = {"impact": {"summary": {"blast_radius": 1, "risk": "x"}, "nodes": [1]},
                "change": {"proposer": {"kind": "agent"}, "id": "chg-1"}, "secret": 1}
    assert project(document, paths) == {"impact": {"summary": {"blast_radius": 1}},
                                        "change": {"proposer": {"kind": "agent"}}}
    dynamic = referenced_paths([RegoModule("b.rego", "package b\nk := input[x]\n")])
    assert project(document, dynamic) == document


def test_builtins_never_read_node_details(builtins: Any) -> None:
    assert not any(path[:2] == ("impact", "nodes") for path in builtins.input_paths)


def test_a_policy_reading_impact_nodes_sees_them(tmp_path: Path) -> None:
    directory = write_set(tmp_path / "p", """policies:
  - {name: failed, file: f.rego, level: hard-mandatory, environments: "*"}
""", {"f.rego": "package steward.policies.failed\n\nimport rego.v1\n\n"
                "deny contains msg if {\n\tsome node in input.impact.nodes\n"
                '\tnode.status == "failed"\n'
                '\tmsg := concat("", [node.certname, ": ", node.error.message])\n}\n'})
    report = impact({"web1": [resource("/etc/motd")], "web2": []})
    report["nodes"][1].update(status="failed",
                              error={"message": "roles/web.yaml:3: boom", "location": None})
    result = evaluate(load_policy_set(directory), policy_input(report), "production")
    assert result.results[0].messages == ("web2: roles/web.yaml:3: boom",)


def test_evaluation_is_deterministic(builtins: Any) -> None:
    nodes = {f"web{i}": [resource("/etc/ssh/sshd_config"),
                         resource("/etc/x.conf", properties=mode("0644", "0777"))]
             for i in range(12)}
    nodes["db1"] = [resource("/etc/ssh/sshd_config.d/x.conf", action="add")]
    first = evaluate(builtins, policy_input(impact(nodes, in_environment=20)), "production")
    again = [evaluate(builtins, policy_input(impact(dict(reversed(nodes.items())),
                                                    in_environment=20)), "production")
             for _ in range(3)]
    dump = json.dumps(first.to_dict(), sort_keys=True)
    assert all(json.dumps(e.to_dict(), sort_keys=True) == dump for e in again)
    assert [r.name for r in first.blocking] == ["world_writable"]
    assert [r.name for r in first.needs_override] == ["blast_radius", "sshd_config"]


_titles = st.sampled_from(["/etc/motd", "/etc/ssh/sshd_config", "/etc/app.conf", "/srv/x"])
_modes = st.sampled_from(["0644", "0666", "0755", "0777", "0600"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from([f"n{i}" for i in range(8)]),
                       st.lists(st.tuples(_titles, _modes), max_size=3, unique_by=lambda t: t[0]),
                       min_size=1),
       st.randoms(use_true_random=False))
def test_verdicts_do_not_depend_on_node_order(builtins: Any,
                                              layout: dict[str, list[tuple[str, str]]],
                                              rng: Any) -> None:
    nodes = {name: [resource(title, properties=mode("0644", m)) for title, m in items]
             for name, items in layout.items()}
    shuffled = list(nodes.items())
    rng.shuffle(shuffled)
    one = evaluate(builtins, policy_input(impact(nodes)), "production").to_dict()
    other_report = impact(dict(shuffled))
    other_report["nodes"] = [other_report["nodes"][i] for i in
                             rng.sample(range(len(shuffled)), len(shuffled))]
    two = evaluate(builtins, policy_input(other_report), "production").to_dict()
    assert one == two
    # Every (node, resource) pair is in exactly one group.
    pairs = {(g["resource"], n) for g in resource_changes(impact(nodes)) for n in g["nodes"]}
    assert pairs == {(f"file[{t}]", name) for name, items in layout.items() for t, _ in items}


def test_three_thousand_identical_node_diffs_evaluate_well_under_a_second(
        builtins: Any) -> None:
    report = impact({f"web{i:05d}": [resource("/etc/nginx/nginx.conf")]
                     for i in range(3000)}, in_environment=10_000)
    document = policy_input(report, title="bump workers")
    evaluate(builtins, document, "production")
    start = time.process_time()
    result = evaluate(builtins, document, "production")
    elapsed = time.process_time() - start
    assert [r.name for r in result.needs_override] == ["blast_radius"]
    assert elapsed < 0.5, f"{elapsed:.3f}s of CPU"


# -- install and `steward policy test` -------------------------------------------------------


def test_install_default_policies_copies_a_working_set(tmp_path: Path) -> None:
    target = install_default_policies(tmp_path / "data")
    assert target == tmp_path / "data" / "policies"
    assert sorted(p.name for p in target.iterdir()) == sorted(
        p.name for p in DEFAULT_POLICIES_DIR.iterdir())
    assert [p.name for p in load_policy_set(target).policies] == [
        "world_writable", "sshd_config", "blast_radius", "agent_protected_files",
        "sensitive_changes"]
    (target / "policies.yaml").write_text("policies: []\n", encoding="utf-8")
    install_default_policies(tmp_path / "data")
    assert (target / "policies.yaml").read_text(encoding="utf-8") == "policies: []\n"


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_policy_test_command_passes_on_the_builtins(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["policy", "test", "--dir", str(DEFAULT_POLICIES_DIR)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "PASS steward.policies.world_writable.test_denies_0777" in lines
    assert "PASS steward.policies.sshd_config.test_denies_drop_in_file" in lines
    total = len(run_policy_tests(DEFAULT_POLICIES_DIR).cases)
    assert total >= 21
    assert lines[-1] == f"{total} passed, 0 failed"
    assert not any(line.startswith("FAIL") for line in lines)


def test_policy_test_command_reports_failures(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, directory)
    total = len(run_policy_tests(directory).cases)
    line = (directory / "blast_radius_test.rego").read_text(encoding="utf-8").count("\n") + 2
    with (directory / "blast_radius_test.rego").open("a", encoding="utf-8") as handle:
        handle.write("\ntest_wrong_limit if {\n\tcount(deny) == 1 with input.impact as "
                     'radius(30, 3) with input.environment as "staging"\n}\n')
    result = CliRunner().invoke(cli(), ["policy", "test", "--dir", str(directory)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (f"FAIL steward.policies.blast_radius.test_wrong_limit  "
            f"({directory}/blast_radius_test.rego:{line}): undefined") in lines
    assert lines[-1] == f"{total} passed, 1 failed"


def test_policy_test_command_reports_syntax_errors(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICIES_DIR, directory)
    (directory / "sshd_config_test.rego").write_text(
        "package steward.policies.sshd_config\n\ntest_broken if {\n\tx := \n}\n",
        encoding="utf-8")
    result = CliRunner().invoke(cli(), ["policy", "test", "--dir", str(directory)])
    assert result.exit_code == 1
    expected = f"steward: error: {directory}/sshd_config_test.rego:4:4: Rego syntax error"
    assert expected in result.output
    assert "Traceback" not in result.output


def test_policy_test_defaults_to_the_data_directory(tmp_path: Path) -> None:
    install_default_policies(tmp_path / "data")
    result = CliRunner().invoke(cli(), ["policy", "test", "--data-dir",
                                        str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(cli(), ["policy", "test", "--dir", str(tmp_path / "empty")])
    assert empty.exit_code != 0
    assert "no policy tests" in empty.output


def test_policy_check_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["policy", "check", "--dir", str(DEFAULT_POLICIES_DIR)])
    assert result.exit_code == 0, result.output
    assert "sshd_config  soft-mandatory  environments: * override: security" in result.output
    assert result.output.splitlines()[-1].startswith("5 policies OK in ")


def test_policy_input_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "policy-input.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    properties = schema["properties"]
    assert properties["impact"] == {"$ref": "impact-report.schema.json"}
    typed = policy_input(impact({"web1": [resource("/etc/motd")]}))
    document = typed.to_json()
    document["resource_changes"] = typed_changes(typed.impact)
    without_impact = {**schema, "properties": {**properties, "impact": {"type": "object"}}}
    jsonschema.Draft202012Validator(without_impact).validate(document)


def test_rollbacks_are_exempt_from_blast_radius(builtins: Any) -> None:
    report = impact({f"n{i}": [resource("/etc/motd")] for i in range(40)}, in_environment=40)
    assert not verdicts(builtins, report)["blast_radius"].passed
    assert verdicts(builtins, report, kind="rollback")["blast_radius"].passed
