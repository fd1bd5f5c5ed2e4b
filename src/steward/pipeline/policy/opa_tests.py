"""``steward policy test``: run the ``test_*`` rules of ``*_test.rego`` files, OPA's convention.

A test passes when its rule evaluates to ``true``; undefined or any other value fails. Every
``.rego`` file of the directory is compiled together (policies, tests, shared helpers), and
``policies.yaml`` is validated first when present, so a broken policy set fails its tests.
Tests give their inputs field by field (``with input.impact as {...}``): replacing the whole
input (``with input as``) crashes regopy 1.5.2 and is refused with that explanation. Tests
run under the evaluation limits (docs/policy.md#limits): one that recurses, runs too long or
grows too big fails with that error, and the others still run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from steward.errors import UsageError
from steward.pipeline.policy.config import CONFIG_FILE
from steward.pipeline.policy.errors import PolicyRuntimeError
from steward.pipeline.policy.evaluate import load_policy_set, read_module
from steward.pipeline.policy.rego import (
    UNDEFINED,
    RegoModule,
    RegoProgram,
    blank_strings_and_comments,
    line_of,
    package_of,
)

_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PolicyTestCase:
    """One ``test_*`` rule and its outcome."""

    package: str
    rule: str
    location: str
    passed: bool
    #: Why it failed: "undefined", the value it had, or the evaluation error.
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.package}.{self.rule}"


@dataclass(frozen=True, slots=True)
class PolicyTestReport:
    directory: Path
    cases: tuple[PolicyTestCase, ...]

    @property
    def failed(self) -> tuple[PolicyTestCase, ...]:
        return tuple(case for case in self.cases if not case.passed)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.failed


def discover_tests(module: RegoModule) -> list[tuple[str, str, str]]:
    """``(package, rule, file:line)`` of each top-level ``test_*`` rule (first definition)."""
    package, _ = package_of(module)
    blanked = blank_strings_and_comments(module.source)
    found: dict[str, str] = {}
    for match in _TEST_RULE.finditer(blanked):
        found.setdefault(match.group(1), f"{module.path}:{line_of(module.source, match.start())}")
    return [(package, rule, where) for rule, where in found.items()]


def run_policy_tests(directory: Path) -> PolicyTestReport:
    """Compile every module under ``directory`` and evaluate each test rule in file order."""
    if not directory.is_dir():
        raise UsageError(f"no policy directory {directory}")
    if (directory / CONFIG_FILE).exists():
        load_policy_set(directory)
    files = sorted(p for p in directory.rglob("*.rego") if p.is_file())
    modules = [read_module(path) for path in files]
    tests = [test for module in modules if module.path.endswith("_test.rego")
             for test in discover_tests(module)]
    if not tests:
        raise UsageError(f"no policy tests (test_* rules in *_test.rego files) under {directory}")
    rules = [f"{package}.{rule}" for package, rule, _ in tests]
    program = RegoProgram(modules, rules)
    cases = []
    for (package, rule, where), full in zip(tests, rules, strict=True):
        try:
            value = program.evaluate("{}", [full])[full]
        except PolicyRuntimeError as exc:
            cases.append(PolicyTestCase(package, rule, where, False, f"error: {exc}"))
            continue
        passed = value is True
        detail = "" if passed else (
            "undefined" if value is UNDEFINED else f"evaluated to {value!r}, not true")
        cases.append(PolicyTestCase(package, rule, where, passed, detail))
    return PolicyTestReport(directory, tuple(cases))
