"""Approval rules per environment: how many approvals a change needs, from which roles, and
how many from humans, read from ``<data>/approvals.yaml`` (the defaults below without it).

Kept apart from the recorded verdicts (:mod:`steward.pipeline.approvals.records`): the rules
are configuration parsed once at start-up, the records are rows written per verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

from steward.access.principal import Principal
from steward.access.roles import BUILTIN_ROLES
from steward.errors import StewardError, describe_value
from steward.language.errors import did_you_mean
from steward.language.yamlsource import load_yaml

APPROVALS_FILE: Final = "approvals.yaml"


class ApprovalError(StewardError):
    """A verdict cannot be recorded (HTTP 409 unless a subclass says otherwise); the base of
    the rules' errors and the records' alike, so it lives with the lower of the two."""


class ApprovalRulesError(ApprovalError):
    """``approvals.yaml`` is invalid; the message names the file, line and field."""


# -- what approvals need from a change ---------------------------------------------------------


class ChangeLike(Protocol):
    """The fields of a change record approvals depend on (``changes.model.Change`` has them)."""

    @property
    def id(self) -> str: ...

    @property
    def proposer(self) -> Principal: ...

    @property
    def environment(self) -> str: ...

    @property
    def head(self) -> str: ...

    @property
    def impact_digest(self) -> str | None: ...

    @property
    def kind(self) -> str: ...


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlastRadiusRule:
    """Over ``percent`` % of the environment's nodes, ``approvals`` approvals are needed."""

    percent: float
    approvals: int


@dataclass(frozen=True, slots=True)
class RollbackRule:
    """The fast path for changes that revert a deployed change.

    Its count is capped at the environment's own ``approvals``: a fast path is never stricter.
    """

    approvals: int
    roles: tuple[str, ...]
    #: None: as many as the environment's own rule asks for.
    humans: int | None = None


@dataclass(frozen=True, slots=True)
class EnvironmentRule:
    environment: str
    approvals: int
    roles: tuple[str, ...]
    humans: int
    blast_radius: BlastRadiusRule | None
    rollback: RollbackRule

    def to_json(self) -> dict[str, Any]:
        blast = self.blast_radius
        return {
            "approvals": self.approvals,
            "blast_radius": None if blast is None else {"approvals": blast.approvals,
                                                        "percent": blast.percent},
            "environment": self.environment,
            "humans": self.humans,
            "roles": list(self.roles),
            "rollback": {"approvals": self.rollback.approvals,
                         "humans": (self.humans if self.rollback.humans is None
                                    else self.rollback.humans),
                         "roles": list(self.rollback.roles)},
        }


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one change needs, with the reasons in words."""

    environment: str
    approvals: int
    humans: int
    roles: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"approvals": self.approvals, "environment": self.environment,
                "humans": self.humans, "reasons": list(self.reasons), "roles": list(self.roles)}


_DEFAULT_RULE: Final = EnvironmentRule(
    environment="*", approvals=1, roles=("approver",), humans=0,
    blast_radius=BlastRadiusRule(percent=25.0, approvals=2),
    rollback=RollbackRule(approvals=1, roles=("approver", "executor"), humans=None),
)
#: The environments of the defaults, as overlays on ``defaults`` (and on a file's
#: ``defaults`` when the file lists no environments of its own).
_DEFAULT_ENVIRONMENTS: Final[Mapping[str, Mapping[str, int]]] = {
    "development": {"approvals": 0},
    "staging": {},
    "production": {"humans": 1},
}


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    """Approval rules by environment; :meth:`defaults` when there is no ``approvals.yaml``."""

    default: EnvironmentRule
    environments: Mapping[str, EnvironmentRule]
    agent_authored_humans: int = 1
    source: str | None = None

    @classmethod
    def defaults(cls) -> ApprovalRules:
        """development: none; staging: 1 approver; production: 1 human approver."""
        return replace(parse_approval_rules("", "(defaults)"), source=None)

    def for_environment(self, environment: str) -> EnvironmentRule:
        rule = self.environments.get(environment)
        return rule if rule is not None else replace(self.default, environment=environment)

    def requirement(self, change: ChangeLike,
                    impact_summary: Mapping[str, Any] | None) -> Requirement:
        """What ``change`` needs, given its impact report's ``summary`` (None: unknown).

        An unknown blast radius counts as over the limit: the rule fails closed.
        """
        env = change.environment
        rule = self.for_environment(env)
        rollback = change.kind == "rollback"
        if rollback:
            # A fast path is never stricter than the environment's own rule.
            approvals = min(rule.rollback.approvals, rule.approvals)
            roles = rule.rollback.roles
            humans = rule.humans if rule.rollback.humans is None else rule.rollback.humans
            humans = min(humans, approvals)
            reasons = [f"rollback fast path in {env}: {_count(approvals)}"
                       + (f" with role {describe_roles(roles)}" if approvals else "")]
        else:
            approvals, roles, humans = rule.approvals, rule.roles, rule.humans
            reasons = [f"{env} needs {_count(approvals)}"
                       + (f" with role {describe_roles(roles)}" if approvals else "")]
        if humans:
            reasons.append(f"{env} needs {_count(humans)} by a human")
        blast = rule.blast_radius
        if approvals and not rollback and blast is not None and blast.approvals > approvals:
            percent = _blast_percent(impact_summary)
            if percent is None:
                approvals = blast.approvals
                reasons.append(f"blast radius unknown (no impact analysis): treated as over "
                               f"{blast.percent:g}%, so {_count(approvals)}")
            elif percent > blast.percent:
                approvals = blast.approvals
                reasons.append(f"blast radius {percent:g}% of {env} is over {blast.percent:g}%, "
                               f"so {_count(approvals)}")
        if approvals and change.proposer.kind == "agent" and self.agent_authored_humans > humans:
            humans = self.agent_authored_humans
            reasons.append(f"proposed by an agent ({change.proposer.kind}:"
                           f"{change.proposer.name}): {_count(humans)} by a human")
        only_humans = _human_only(impact_summary)
        if only_humans:  # a policy's require_human: every approval a human's, at least one
            approvals = humans = max(approvals, humans, 1)
            reasons.append(f"every approval must come from a human: {'; '.join(only_humans)}")
        approvals = max(approvals, humans)
        return Requirement(env, approvals, humans, roles, tuple(reasons))

    def to_json(self) -> dict[str, Any]:
        return {"agent_authored": {"humans": self.agent_authored_humans},
                "default": self.default.to_json(),
                "environments": {k: v.to_json() for k, v in sorted(self.environments.items())},
                "source": self.source}


def _human_only(summary: Mapping[str, Any] | None) -> list[str]:
    """The policies' reasons why only humans may approve (``Analysis.summary``)."""
    reasons = summary.get("human_approval") if summary else None
    return [str(reason) for reason in reasons] if isinstance(reasons, list) else []


def _blast_percent(summary: Mapping[str, Any] | None) -> float | None:
    if not summary:
        return None
    blast = summary.get("blast_radius")
    percent = blast.get("percent") if isinstance(blast, Mapping) else None
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        return None
    return float(percent) if math.isfinite(percent) else None


def _count(n: int) -> str:
    return f"{n} approval{'' if n == 1 else 's'}"


def describe_roles(roles: Sequence[str]) -> str:
    """The roles a requirement accepts, as a reason names them (records' reasons too)."""
    return " or ".join(roles)


# -- approvals.yaml ---------------------------------------------------------------------------


_RULE_FIELDS: Final = ("approvals", "blast_radius", "humans", "roles", "rollback")
_TOP_FIELDS: Final = ("agent_authored", "blast_radius", "defaults", "environments", "rollback")


def load_approval_rules(config_dir: Path | None, *, roles: Sequence[str] | None = None,
                        environments: Sequence[str] | None = None) -> ApprovalRules:
    """The rules of ``<config_dir>/approvals.yaml``, or the defaults when it is absent.

    ``roles`` (default: the built-in ones) are the role names the rules may name;
    ``environments``, when given, the environments they may name.
    """
    if config_dir is None:
        return ApprovalRules.defaults()
    path = Path(config_dir) / APPROVALS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ApprovalRules.defaults()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApprovalRulesError(f"cannot read {path}: {exc}") from None
    return parse_approval_rules(text, str(path), roles=roles, environments=environments)


def parse_approval_rules(text: str, file: str, *, roles: Sequence[str] | None = None,
                         environments: Sequence[str] | None = None) -> ApprovalRules:
    """Validate and build rules from YAML text; every error names ``file:line`` and field.

    Sections overlay the defaults field by field, except ``environments``: when present it
    replaces the default list, and environments not in it follow ``defaults``.
    """
    return _RulesParser(text, file, tuple(roles) if roles is not None else tuple(BUILTIN_ROLES),
                        environments).parse()


class _RulesParser:
    def __init__(self, text: str, file: str, roles: tuple[str, ...],
                 environments: Sequence[str] | None) -> None:
        try:
            self.document, self.source = load_yaml(text, file)
        except StewardError as exc:
            raise ApprovalRulesError(exc.message, location=exc.location) from None
        self.file = file
        self.roles = roles
        self.environments = environments

    def fail(self, path: tuple[Any, ...], message: str) -> ApprovalRulesError:
        name = ".".join(str(p) for p in path)
        return ApprovalRulesError(f"{name}: {message}" if name else message,
                                  location=self.source.where(path))

    def mapping(self, value: Any, path: tuple[Any, ...], known: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, not {describe_value(value)}")
        for key in value:
            if key not in known:
                raise self.fail((*path, key), f"unknown field {key!r}"
                                f"{did_you_mean(str(key), known)}; known: {', '.join(known)}")
        return value

    def integer(self, value: Any, path: tuple[Any, ...], minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"expected an integer of at least {minimum}, not "
                                  f"{describe_value(value)}")
        return value

    def role_list(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list of role names, not "
                                  f"{describe_value(value)}")
        for index, role in enumerate(value):
            if not isinstance(role, str) or role not in self.roles:
                raise self.fail((*path, index), f"unknown role {role!r}"
                                f"{did_you_mean(str(role), self.roles)}; known: "
                                f"{', '.join(sorted(self.roles))}")
        return tuple(dict.fromkeys(value))

    def blast(self, value: Any, path: tuple[Any, ...],
              base: BlastRadiusRule | None) -> BlastRadiusRule | None:
        if value is None:
            return None  # blast_radius: null turns the rule off
        body = self.mapping(value, path, ("approvals", "percent"))
        start = base or BlastRadiusRule(percent=25.0, approvals=2)
        percent: Any = body.get("percent", start.percent)
        if (isinstance(percent, bool) or not isinstance(percent, (int, float))
                or not 0 <= percent <= 100):
            raise self.fail((*path, "percent"), f"expected a percentage between 0 and 100, not "
                                                f"{describe_value(percent)}")
        approvals = self.integer(body.get("approvals", start.approvals), (*path, "approvals"), 1)
        return BlastRadiusRule(percent=float(percent), approvals=approvals)

    def rollback(self, value: Any, path: tuple[Any, ...], base: RollbackRule) -> RollbackRule:
        body = self.mapping(value, path, ("approvals", "humans", "roles"))
        approvals = self.integer(body.get("approvals", base.approvals), (*path, "approvals"), 0)
        roles = (self.role_list(body["roles"], (*path, "roles")) if "roles" in body
                 else base.roles)
        humans = base.humans
        if "humans" in body:
            humans = self.integer(body["humans"], (*path, "humans"), 0)
            if humans > approvals:
                raise self.fail((*path, "humans"), f"{humans} human approvals cannot exceed the "
                                                   f"{approvals} approvals required")
        return RollbackRule(approvals=approvals, roles=roles, humans=humans)

    def rule(self, value: Any, path: tuple[Any, ...], base: EnvironmentRule,
             environment: str) -> EnvironmentRule:
        known = _RULE_FIELDS if path[0] == "environments" else ("approvals", "humans", "roles")
        body = self.mapping(value, path, known)
        approvals = self.integer(body.get("approvals", base.approvals), (*path, "approvals"), 0)
        roles = (self.role_list(body["roles"], (*path, "roles")) if "roles" in body
                 else base.roles)
        humans = self.integer(body.get("humans", min(base.humans, approvals)),
                              (*path, "humans"), 0)
        if humans > approvals:
            raise self.fail((*path, "humans"), f"{humans} human approvals cannot exceed the "
                                               f"{approvals} approvals required")
        blast = base.blast_radius
        if "blast_radius" in body:
            blast = self.blast(body["blast_radius"], (*path, "blast_radius"), blast)
        rollback = base.rollback
        if "rollback" in body:
            rollback = self.rollback(body["rollback"], (*path, "rollback"), rollback)
        return EnvironmentRule(environment, approvals, roles, humans, blast, rollback)

    def parse(self) -> ApprovalRules:
        top = self.mapping(self.document, (), _TOP_FIELDS)
        default = _DEFAULT_RULE
        if "blast_radius" in top:
            default = replace(default, blast_radius=self.blast(
                top["blast_radius"], ("blast_radius",), default.blast_radius))
        if "rollback" in top:
            default = replace(default, rollback=self.rollback(
                top["rollback"], ("rollback",), default.rollback))
        if "defaults" in top:
            default = self.rule(top["defaults"], ("defaults",), default, "*")
        agent = self.mapping(top.get("agent_authored"), ("agent_authored",), ("humans",))
        agent_humans = self.integer(agent.get("humans", 1), ("agent_authored", "humans"), 0)
        rules: dict[str, EnvironmentRule] = {}
        if "environments" in top:
            listed = top["environments"]
            if not isinstance(listed, dict):
                raise self.fail(("environments",), f"expected a mapping of environment name to "
                                                   f"rule, not {describe_value(listed)}")
            for name, body in listed.items():
                path = ("environments", name)
                if not isinstance(name, str) or not name:
                    raise self.fail(path, f"invalid environment name {name!r}")
                if self.environments is not None and name not in self.environments:
                    raise self.fail(path, f"unknown environment {name!r}"
                                    f"{did_you_mean(name, self.environments)}; known: "
                                    f"{', '.join(sorted(self.environments))}")
                rules[name] = self.rule(body, path, default, name)
        else:
            rules = {name: self.rule(values, ("defaults",), default, name)
                     for name, values in _DEFAULT_ENVIRONMENTS.items()}
        return ApprovalRules(default=default, environments=dict(sorted(rules.items())),
                             agent_authored_humans=agent_humans, source=self.file)
