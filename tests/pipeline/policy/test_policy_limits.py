"""Rego evaluation limits (docs/policy.md#limits): a policy that runs too long, grows without
end or recurses fails with a message naming its file, fails closed in the pipeline, and never
takes the process evaluating it down (rego-cpp runs in a sandbox child process)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steward.cli.main import app
from steward.pipeline.policy.errors import PolicyError, PolicyRuntimeError
from steward.pipeline.policy.evaluate import check_policy_set, evaluate, load_policy_set
from steward.pipeline.policy.rego import RegoLimits, RegoModule, RegoProgram

HEADER = "package steward.policies.{name}\n\nimport rego.v1\n\n"
#: Grows until the sandbox's memory limit stops it (rego-cpp has no memory limit of its own).
MEMORY_BOMB = 'deny contains "big" if {\n\tcount(numbers.range(1, 100000000)) > 0\n}\n'
#: Nine million iterations: seconds of CPU with little memory.
SLOW = ('deny contains "slow" if {\n\tcount([x | some x in numbers.range(1, 3000); '
        "some y in numbers.range(1, 3000); x == y]) > 0\n}\n")
RECURSIVE = ('f(x) := y if {\n\ty := f(x + 1)\n}\n\n'
             'deny contains "never" if {\n\tf(1) > 0\n}\n')
FINE = 'deny contains "production is frozen" if {\n\tinput.environment == "production"\n}\n'
SMALL = RegoLimits(seconds=0.5, memory=256 << 20)


def policy_dir(root: Path, policies: dict[str, tuple[str, str]]) -> Path:
    """``{name: (level, body)}`` → a policy directory with policies.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["policies:"]
    for name, (level, body) in policies.items():
        lines.append(f'  - {{name: {name}, file: {name}.rego, level: {level}, '
                     'environments: "*"}')
        (root / f"{name}.rego").write_text(HEADER.format(name=name) + body, encoding="utf-8")
    (root / "policies.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def program(name: str, body: str, limits: RegoLimits = SMALL) -> RegoProgram:
    return RegoProgram([RegoModule(f"{name}.rego", HEADER.format(name=name) + body)],
                       [f"data.steward.policies.{name}.deny"], limits)


def test_memory_bomb_is_stopped_naming_the_file() -> None:
    # A generous clock, so that on a loaded machine the memory limit is still what stops it.
    rego = program("bomb", MEMORY_BOMB, RegoLimits(seconds=12, memory=256 << 20))
    started = time.monotonic()
    with pytest.raises(PolicyRuntimeError) as caught:
        rego.evaluate("{}", ["data.steward.policies.bomb.deny"])
    assert time.monotonic() - started < 30
    assert str(caught.value).startswith(
        "bomb.rego: evaluating data.steward.policies.bomb.deny exceeded the memory limit of "
        "256 MiB"), str(caught.value)


def test_slow_rule_is_stopped_by_the_clock() -> None:
    rego = program("slow", SLOW)
    started = time.monotonic()
    with pytest.raises(PolicyRuntimeError, match=r"took longer than 0\.5 s") as caught:
        rego.evaluate("{}", ["data.steward.policies.slow.deny"])
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith("slow.rego: ")


def test_sandbox_restarts_after_a_stopped_rule() -> None:
    """The child that was killed is replaced: the same program evaluates the next input."""
    rego = RegoProgram(
        [RegoModule("m.rego", HEADER.format(name="m") + SLOW.replace("deny", "slow")
                    + FINE)],
        ["data.steward.policies.m.slow", "data.steward.policies.m.deny"], SMALL)
    values = rego.evaluate_each('{"environment": "production"}',
                                ["data.steward.policies.m.slow", "data.steward.policies.m.deny"])
    assert isinstance(values["data.steward.policies.m.slow"], PolicyRuntimeError)
    assert values["data.steward.policies.m.deny"] == ["production is frozen"]
    assert rego.evaluate('{"environment": "production"}', ["data.steward.policies.m.deny"]) \
        == {"data.steward.policies.m.deny": ["production is frozen"]}


def test_pipeline_fails_closed(tmp_path: Path) -> None:
    """A hard-mandatory policy that cannot be evaluated blocks; the others are judged."""
    policies = load_policy_set(policy_dir(tmp_path / "p", {
        "bomb": ("hard-mandatory", MEMORY_BOMB), "recursive": ("advisory", RECURSIVE),
        "frozen": ("soft-mandatory", FINE)}))
    verdict = evaluate(policies, {"environment": "production"}, "production")
    by_name = {result.name: result for result in verdict.results}
    assert [r.name for r in verdict.blocking] == ["bomb"]
    assert by_name["bomb"].messages[0].startswith(
        f"the policy could not be evaluated: {tmp_path}/p/bomb.rego: evaluating "
        "steward.policies.bomb.deny exceeded the memory limit")
    assert [r.name for r in verdict.warnings] == ["recursive"]
    assert "Recursion detected" in by_name["recursive"].messages[0]
    assert by_name["frozen"].messages == ("production is frozen",)
    assert not verdict.passed


def test_check_rejects_a_recursive_policy(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path / "p", {"recursive": ("hard-mandatory", RECURSIVE)})
    with pytest.raises(PolicyError) as caught:
        check_policy_set(load_policy_set(directory))
    assert str(caught.value).startswith(
        f"{directory}/recursive.rego: policy 'recursive': evaluating "
        "steward.policies.recursive.deny failed: Recursion detected"), str(caught.value)


def test_cli_check_and_test_fail_fast(tmp_path: Path) -> None:
    directory = policy_dir(tmp_path / "p", {"bomb": ("hard-mandatory", MEMORY_BOMB)})
    (directory / "bomb_test.rego").write_text(
        "package steward.policies.bomb_test\n\nimport rego.v1\n\n"
        "import data.steward.policies.bomb\n\ntest_empty if {\n\tcount(bomb.deny) == 0\n}\n",
        encoding="utf-8")
    runner = CliRunner()
    started = time.monotonic()
    checked = runner.invoke(app, ["policy", "check", "--dir", str(directory)])
    assert checked.exit_code == 1, checked.output
    assert f"{directory}/bomb.rego: policy 'bomb': evaluating steward.policies.bomb.deny " \
           "exceeded the memory limit" in checked.output
    tested = runner.invoke(app, ["policy", "test", "--dir", str(directory)])
    assert tested.exit_code == 1, tested.output
    assert "FAIL steward.policies.bomb_test.test_empty" in tested.output
    assert "exceeded the memory limit" in tested.output
    assert time.monotonic() - started < 60


def test_no_sandbox_outlives_its_program() -> None:
    rego = program("fine", FINE)
    rego.evaluate("{}", ["data.steward.policies.fine.deny"])
    pid = rego._child[0].process.pid
    del rego
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            if stat.read().split()[2] == "Z":
                return
        time.sleep(0.05)
    raise AssertionError(f"the sandbox process {pid} is still running")
