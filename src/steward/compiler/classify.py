"""Classification: which environment, roles and profiles a node gets.

For ``environment`` and ``role`` the matching rule of highest priority that sets the field
wins; two such rules at the same priority that disagree are a conflict, never a silent pick
by file order. Profiles are the union: the roles' profiles first, then the rules' extras by
priority (highest first) and file order. A profile included twice must be included the same
way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steward.catalog.canonical import canonical_json
from steward.compiler.context import FactView
from steward.compiler.data import MISSING, fact_at
from steward.language.checks import same_value
from steward.language.declarations import Inclusion, Rule
from steward.language.errors import ClassificationError, at
from steward.language.repository import Repository


@dataclass(slots=True)
class ProfileUse:
    """A profile the node gets, how it was included, and the roles that brought it."""

    inclusion: Inclusion
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Classified:
    environment: str
    roles: tuple[str, ...]
    rules: tuple[str, ...]
    profiles: tuple[ProfileUse, ...]


def classify(repo: Repository, node: str, facts: FactView, environment: str | None) -> Classified:
    classification = repo.classification
    matched = [rule for rule in classification.rules if _matches(rule, node, facts)]
    default = classification.default

    env_value = _winner(node, "environment", matched, default)
    roles_value = _winner(node, "role", matched, default)
    if environment is None:
        environment = env_value if isinstance(env_value, str) else repo.settings.default_environment
    roles: tuple[str, ...] = roles_value if isinstance(roles_value, tuple) else ()

    uses: dict[str, ProfileUse] = {}

    def include(inclusion: Inclusion, role: str | None) -> None:
        current = uses.get(inclusion.profile)
        if current is None:
            current = uses[inclusion.profile] = ProfileUse(inclusion)
        elif canonical_json(dict(current.inclusion.raw)) != canonical_json(dict(inclusion.raw)):
            first = current.inclusion
            raise ClassificationError(
                f"node {node!r}: profile {inclusion.profile!r} is included twice with different "
                f"parameters, by {first.origin} ({at(first.file, first.line)}) and by "
                f"{inclusion.origin} ({at(inclusion.file, inclusion.line)})",
                location=at(inclusion.file, inclusion.line),
            )
        if role is not None and role not in current.roles:
            current.roles.append(role)

    for role_name in roles:
        for inclusion in repo.roles[role_name].profiles:
            include(inclusion, role_name)
    for rule in sorted(matched, key=lambda r: (-r.priority, r.index)):
        for inclusion in rule.profiles:
            include(inclusion, None)
    for inclusion in default.profiles:
        include(inclusion, None)

    return Classified(
        environment=environment,
        roles=roles,
        rules=tuple(rule.name for rule in matched),
        profiles=tuple(uses.values()),
    )


def _matches(rule: Rule, node: str, facts: FactView) -> bool:
    if rule.node_glob is not None and not rule.node_glob.match(node):
        return False
    if rule.node_regex is not None and not rule.node_regex.search(node):
        return False
    for match in rule.facts:
        actual = fact_at(facts, match.path)
        if actual is MISSING or not any(_fact_equals(actual, e) for e in match.expected):
            return False
    return True


def _fact_equals(actual: str, expected: Any) -> bool:
    """Facts are compared as text: ``release.major: 12`` matches the fact ``"12"``."""
    if isinstance(expected, bool):
        return actual == ("true" if expected else "false")
    return same_value(actual, expected) or actual == str(expected)


def _winner(node: str, field_name: str, matched: list[Rule], default: Rule) -> Any:
    """The value of ``field_name`` from the top-priority matching rules that set it."""
    attribute = "roles" if field_name == "role" else field_name
    setting = [rule for rule in matched if getattr(rule, attribute) is not None]
    if not setting:
        return getattr(default, attribute)
    top = max(rule.priority for rule in setting)
    leaders = [rule for rule in setting if rule.priority == top]
    first = leaders[0]
    for other in leaders[1:]:
        if getattr(other, attribute) != getattr(first, attribute):
            line_of = "roles_line" if field_name == "role" else "environment_line"
            raise ClassificationError(
                f"node {node!r}: rules disagree on {field_name} at priority {top}: "
                f"rule {first.name!r} ({at(first.file, getattr(first, line_of))}) sets "
                f"{_show(getattr(first, attribute))} but rule {other.name!r} "
                f"({at(other.file, getattr(other, line_of))}) sets "
                f"{_show(getattr(other, attribute))}; give one rule a higher priority or "
                "narrow its match",
                location=at(other.file, getattr(other, line_of)),
            )
    return getattr(first, attribute)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if len(value) != 1 else repr(value[0])
    return repr(value)
