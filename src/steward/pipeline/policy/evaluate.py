"""Policy as code: Rego policies over a change's impact, with enforcement levels.

Rego is the language of OPA, Conftest and Spacelift, so policies (and the people who write
them) port across; regopy runs it in-process through Microsoft's rego-cpp, with the v1
syntax (``deny contains msg if``). A policy set is a directory (``<data>/policies`` on the
server, outside the desired-state repository so no change can edit its own rules):
``policies.yaml`` lists the policies (see :mod:`steward.pipeline.policy.config`), each a module
``package steward.policies.<name>`` whose ``deny`` set must be empty for the policy to pass.

Levels: ``advisory`` failures are warnings; ``soft-mandatory`` failures block unless a holder
of one of the policy's ``override_roles`` overrides them (the caller records the override);
``hard-mandatory`` failures block, full stop.

A module may also define ``require_human contains msg``: reasons why every approval of the
change must come from a human. For a soft- or hard-mandatory policy they bind the approval
rules (``human_approval`` in the evaluation; no override waives them and no agent's approval
counts); an advisory policy's are only reported.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.pipeline.impact.report import ImpactReport
from steward.pipeline.policy.config import (
    CONFIG_FILE,
    Level,
    PolicySpec,
    load_policy_config,
)
from steward.pipeline.policy.errors import PolicyConfigError, PolicyError, PolicyRuntimeError
from steward.pipeline.policy.inputs import (
    InputPath,
    PolicyInput,
    needs,
    project,
    referenced_paths,
    resource_changes,
)
from steward.pipeline.policy.rego import UNDEFINED, RegoModule, RegoProgram, package_of

#: The built-in policies, installed into ``<data>/policies`` by ``steward init``.
DEFAULT_POLICIES_DIR = Path(__file__).resolve().parents[4] / "examples" / "policies"


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's verdict on one input."""

    name: str
    level: Level
    passed: bool
    #: The ``deny`` messages, sorted.
    messages: tuple[str, ...]
    #: Roles that may override a failure of this policy (soft-mandatory policies only).
    overridable_by: tuple[str, ...]
    description: str = ""
    #: The ``require_human`` messages, sorted: why only humans may approve the change.
    human_approval: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "passed": self.passed,
                "messages": list(self.messages), "overridable_by": list(self.overridable_by),
                "description": self.description, "human_approval": list(self.human_approval)}


@dataclass(frozen=True, slots=True)
class PolicyEvaluation:
    """The verdicts of every policy that applies to one environment, in name order."""

    environment: str
    results: tuple[PolicyResult, ...]

    @property
    def blocking(self) -> tuple[PolicyResult, ...]:
        """Failed hard-mandatory policies: the change cannot proceed."""
        return self._failed("hard-mandatory")

    @property
    def needs_override(self) -> tuple[PolicyResult, ...]:
        """Failed soft-mandatory policies: the change proceeds only if an authorised role
        overrides each of them."""
        return self._failed("soft-mandatory")

    @property
    def warnings(self) -> tuple[PolicyResult, ...]:
        """Failed advisory policies: reported, never blocking."""
        return self._failed("advisory")

    @property
    def passed(self) -> bool:
        """Nothing blocks and nothing needs an override."""
        return not self.blocking and not self.needs_override

    def _failed(self, level: Level) -> tuple[PolicyResult, ...]:
        return tuple(r for r in self.results if r.level == level and not r.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "passed": self.passed,
            "results": [result.to_dict() for result in self.results],
            "blocking": [result.name for result in self.blocking],
            "needs_override": [result.name for result in self.needs_override],
            "warnings": [result.name for result in self.warnings],
            "human_approval": [f"policy {result.name}: {message}"
                               for result in self.results if result.level != "advisory"
                               for message in result.human_approval],
        }


@dataclass(frozen=True)
class PolicySet:
    """A loaded policy directory: its policies, compiled once for many evaluations."""

    directory: Path
    policies: tuple[PolicySpec, ...]
    program: RegoProgram | None = field(repr=False)
    #: The input paths the modules can read (see :mod:`steward.pipeline.policy.inputs`).
    input_paths: frozenset[InputPath]

    def applicable(self, environment: str) -> tuple[PolicySpec, ...]:
        return tuple(sorted((p for p in self.policies if p.applies_to(environment)),
                            key=lambda p: p.name))


def read_module(path: Path, shown: str | None = None) -> RegoModule:
    try:
        return RegoModule(shown or str(path), path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read Rego module {path}: {exc}") from None


def load_policy_set(directory: Path) -> PolicySet:
    """Validate ``policies.yaml``, check each module's package and compile them together."""
    policies = load_policy_config(directory)
    modules = []
    for spec in policies:
        module = read_module(spec.file)
        package, line = package_of(module)
        if package != spec.package:
            raise PolicyConfigError(
                f"policy {spec.name!r} (declared at {spec.declared_at}) must be in package "
                f"{spec.package}, not {package}", location=f"{module.path}:{line}")
        modules.append(module)
    rules = [rule for spec in policies for rule in (spec.rule, human_rule(spec))]
    program = RegoProgram(modules, rules) if modules else None
    return PolicySet(directory=directory, policies=policies, program=program,
                     input_paths=referenced_paths(modules))


def evaluate(policy_set: PolicySet, input: PolicyInput | Mapping[str, Any],
             environment: str) -> PolicyEvaluation:
    """Run every policy that applies to ``environment`` over ``input`` (docs/policy.md).

    ``input`` is the documented policy input, typed (``resource_changes`` is then derived
    from its report when a policy reads it) or an input document as it is.
    """
    applicable = policy_set.applicable(environment)
    if not applicable or policy_set.program is None:
        return PolicyEvaluation(environment, ())
    paths = policy_set.input_paths
    if isinstance(input, PolicyInput):
        document = input.to_json(with_impact=needs(paths, "impact"))
        if needs(paths, "resource_changes"):
            document["resource_changes"] = resource_changes(input.impact)
    else:
        document = dict(input)
        if needs(paths, "resource_changes") and "resource_changes" not in document:
            impact = document.get("impact")
            document["resource_changes"] = resource_changes(
                ImpactReport.from_json(impact)) if impact else []
    document = project(document, paths)
    try:
        text = json.dumps(document, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PolicyRuntimeError(f"the policy input is not plain JSON data: {exc}") from None
    values = policy_set.program.evaluate_each(
        text, [rule for spec in applicable for rule in (spec.rule, human_rule(spec))])
    return PolicyEvaluation(environment, tuple(
        _outcome(spec, values[spec.rule], values[human_rule(spec)]) for spec in applicable))


def _outcome(spec: PolicySpec, value: Any, human: Any) -> PolicyResult:
    """The verdict; a policy that cannot be evaluated (an error, over the evaluation limits)
    fails at its level: fail closed, so a hard-mandatory one blocks."""
    try:
        for outcome in (value, human):
            if isinstance(outcome, PolicyError):
                raise outcome
        return _result(spec, value, human)
    except PolicyError as exc:
        return PolicyResult(
            name=spec.name, level=spec.level, passed=False,
            messages=(f"the policy could not be evaluated: {exc}",),
            overridable_by=spec.override_roles, description=spec.description)


def check_policy_set(policy_set: PolicySet) -> None:
    """Evaluate every policy once on an empty input (what ``steward policy check`` adds to
    loading): rego-cpp reports recursion, and the evaluation limits are met, only when a rule
    is evaluated. Raises the first failure, naming the policy file."""
    if policy_set.program is None:
        return
    values = policy_set.program.evaluate_each(
        "{}", [rule for spec in policy_set.policies for rule in (spec.rule, human_rule(spec))])
    for spec in policy_set.policies:
        for rule in (spec.rule, human_rule(spec)):
            if isinstance(values[rule], PolicyError):
                error = values[rule]
                raise type(error)(f"policy {spec.name!r}: {error.message}",
                                  location=error.location or str(spec.file))


def human_rule(spec: PolicySpec) -> str:
    """The optional ``require_human`` rule of a policy's package."""
    return f"{spec.package}.require_human"


def _messages(spec: PolicySpec, rule: str, value: Any) -> tuple[str, ...]:
    if value is UNDEFINED:
        value = []
    if not isinstance(value, list):
        raise PolicyRuntimeError(
            f"policy {spec.name!r}: {rule!r} must be a set of messages ({rule} contains msg "
            f"if ...), got {json.dumps(value)[:80]}", location=str(spec.file))
    return tuple(sorted({m if isinstance(m, str) else json.dumps(m, sort_keys=True)
                         for m in value}))


def _result(spec: PolicySpec, value: Any, human: Any = UNDEFINED) -> PolicyResult:
    messages = _messages(spec, "deny", value)
    return PolicyResult(
        name=spec.name, level=spec.level, passed=not messages, messages=messages,
        overridable_by=spec.override_roles, description=spec.description,
        human_approval=_messages(spec, "require_human", human))


def install_default_policies(data_dir: Path, *, overwrite: bool = False) -> Path:
    """Copy the built-in policies (and their tests) into ``<data_dir>/policies``.

    An existing policy directory is left alone unless ``overwrite``: its owners may have
    edited it, and policies are exactly what must not change behind their back.
    """
    target = data_dir / "policies"
    if (target / CONFIG_FILE).exists() and not overwrite:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(DEFAULT_POLICIES_DIR.iterdir()):
        if source.is_file() and (source.suffix == ".rego" or source.name == CONFIG_FILE):
            shutil.copyfile(source, target / source.name)
    return target
