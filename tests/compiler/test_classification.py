"""Classification: matching, precedence by priority, conflicts, profile union and order."""

from __future__ import annotations

from typing import Any

import pytest

from steward.compiler import ClassificationError

from .conftest import Compile

PROFILES = {
    f"profiles/{name}.yaml": f"parameters:\n  v: {{type: any, default: 0}}\nresources:\n"
    f"  exec[{name}]: {{}}\n"
    for name in ("base", "web", "db", "mon", "extra")
}
ROLES = {
    "roles/web.yaml": "profiles:\n  base: {}\n  web: {}\n",
    "roles/db.yaml": "profiles:\n  base: {}\n  db: {}\n",
}


def classify(
    build: Compile, rules: str, node: str = "web1", facts: Any = None, **kwargs: Any
) -> tuple[str, dict[str, Any]]:
    files = {**PROFILES, **ROLES, "classification.yaml": rules}
    catalog = build(files, node=node, facts=facts, **kwargs).catalog
    return catalog.environment, catalog.classification


DEB = {"os": {"family": "Debian", "release": {"major": "12"}}, "virtual": "kvm"}
RH = {"os": {"family": "RedHat", "release": {"major": "9"}}, "virtual": "physical"}


@pytest.mark.parametrize(
    ("rules", "node", "facts", "environment", "roles", "profiles", "matched"),
    [
        pytest.param(
            "rules:\n  - {name: w, match: {node: 'web*'}, role: web}\n",
            "web1",
            DEB,
            "production",
            ["web"],
            ["base", "web"],
            ["w"],
            id="glob",
        ),
        pytest.param(
            "rules:\n  - {name: d, match: {node_regex: '^db\\d+$'}, role: db}\n",
            "db12",
            DEB,
            "production",
            ["db"],
            ["base", "db"],
            ["d"],
            id="regex",
        ),
        pytest.param(
            "rules:\n  - {name: d, match: {node_regex: '^db\\d+$'}, role: db}\n",
            "db1x",
            DEB,
            "production",
            [],
            [],
            [],
            id="regex-no-match",
        ),
        pytest.param(
            "default: {environment: lab}\nrules:\n  - {name: w, match: {node: 'x*'}, role: web}\n",
            "web1",
            DEB,
            "lab",
            [],
            [],
            [],
            id="default-environment",
        ),
        pytest.param(
            "rules:\n"
            "  - {name: low, match: {node: 'web*'}, role: web, environment: prod, priority: 1}\n"
            "  - {name: high, match: {node: web1}, environment: canary, priority: 5}\n",
            "web1",
            DEB,
            "canary",
            ["web"],
            ["base", "web"],
            ["low", "high"],
            id="higher-priority-wins-per-field",
        ),
        pytest.param(
            "rules:\n"
            "  - {name: a, match: {node: 'web*'}, role: web}\n"
            "  - {name: b, match: {node: 'web*'}, role: web}\n",
            "web1",
            DEB,
            "production",
            ["web"],
            ["base", "web"],
            ["a", "b"],
            id="agreeing-rules-are-fine",
        ),
        pytest.param(
            "rules:\n"
            "  - {name: deb, match: {facts: {os.family: Debian, os.release.major: 12}}, "
            "profiles: [mon]}\n",
            "x",
            DEB,
            "production",
            [],
            ["mon"],
            ["deb"],
            id="dotted-facts-as-text",
        ),
        pytest.param(
            "rules:\n  - {name: any, match: {facts: {virtual: [kvm, xen]}}, profiles: [mon]}\n",
            "x",
            RH,
            "production",
            [],
            [],
            [],
            id="fact-any-of-no-match",
        ),
        pytest.param(
            "rules:\n  - {name: any, match: {facts: {virtual: [kvm, physical]}}, "
            "profiles: [mon]}\n",
            "x",
            RH,
            "production",
            [],
            ["mon"],
            ["any"],
            id="fact-any-of",
        ),
        pytest.param(
            "rules:\n  - {name: f, match: {facts: {os.missing: x}}, profiles: [mon]}\n",
            "x",
            RH,
            "production",
            [],
            [],
            [],
            id="missing-fact-does-not-match",
        ),
        pytest.param(
            "default: {profiles: [base]}\n"
            "rules:\n"
            "  - {name: w, match: {node: 'web*'}, role: web, profiles: [extra]}\n"
            "  - {name: m, match: {node: 'web*'}, profiles: [mon], priority: 3}\n",
            "web1",
            DEB,
            "production",
            ["web"],
            ["base", "web", "mon", "extra"],
            ["w", "m"],
            id="profile-union-order",
        ),
        pytest.param(
            "rules:\n  - {name: both, match: {node: 'web*'}, role: [web, db]}\n",
            "web1",
            DEB,
            "production",
            ["web", "db"],
            ["base", "web", "db"],
            ["both"],
            id="several-roles",
        ),
    ],
)
def test_classification(
    build: Compile,
    rules: str,
    node: str,
    facts: dict[str, Any],
    environment: str,
    roles: list[str],
    profiles: list[str],
    matched: list[str],
) -> None:
    env, classification = classify(build, rules, node, facts)
    assert env == environment
    assert classification == {"roles": roles, "profiles": profiles, "rules": matched}


def test_explicit_environment_overrides(build: Compile) -> None:
    rules = "rules:\n  - {name: w, match: {node: 'web*'}, role: web, environment: prod}\n"
    env, _ = classify(build, rules, "web1", DEB, environment="hotfix")
    assert env == "hotfix"


def test_steward_yaml_default_environment(build: Compile) -> None:
    files = {**PROFILES, **ROLES, "steward.yaml": "default_environment: dev\n"}
    assert build(files, facts=DEB).catalog.environment == "dev"


@pytest.mark.parametrize(
    ("rules", "fragments"),
    [
        pytest.param(
            "rules:\n"
            "  - name: a\n    match: {node: 'web*'}\n    environment: prod\n"
            "  - name: b\n    match: {node: web1}\n    environment: staging\n",
            [
                "classification.yaml:7",
                "rules disagree on environment at priority 0",
                "rule 'a' (classification.yaml:4) sets 'prod'",
                "rule 'b' (classification.yaml:7) sets 'staging'",
            ],
            id="environment",
        ),
        pytest.param(
            "rules:\n"
            "  - name: a\n    match: {node: 'web*'}\n    role: web\n    priority: 2\n"
            "  - name: b\n    match: {node: web1}\n    role: db\n    priority: 2\n",
            [
                "classification.yaml:8",
                "rules disagree on role at priority 2",
                "rule 'a' (classification.yaml:4) sets 'web'",
                "rule 'b'",
            ],
            id="role",
        ),
        pytest.param(
            "rules:\n"
            "  - name: a\n    match: {node: 'web*'}\n    role: web\n"
            "  - name: b\n    match: {node: web1}\n    profiles:\n      base: {v: 2}\n",
            [
                "classification.yaml:8",
                "profile 'base' is included twice with different "
                "parameters, by role web (roles/web.yaml:2) and by rule 'b' "
                "(classification.yaml:8)",
            ],
            id="profile-parameters",
        ),
    ],
)
def test_conflicts(build: Compile, rules: str, fragments: list[str]) -> None:
    with pytest.raises(ClassificationError) as caught:
        classify(build, rules, "web1", DEB)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_same_profile_same_parameters_is_included_once(build: Compile) -> None:
    rules = "rules:\n  - {name: both, match: {node: 'web*'}, role: [web, db]}\n"
    files = {**PROFILES, **ROLES, "classification.yaml": rules}
    catalog = build(files, facts=DEB).catalog
    base = catalog.resource_map()["exec[base]"]
    assert base.tags == ("profile:base", "role:db", "role:web")


def test_classification_reads_are_recorded(build: Compile) -> None:
    rules = "rules:\n  - {name: f, match: {facts: {os.family: Debian}}, profiles: [mon]}\n"
    files = {**PROFILES, **ROLES, "classification.yaml": rules}
    catalog = build(files, facts=DEB).catalog
    assert "os.family" in catalog.inputs["facts"]
    assert "classification.yaml" in catalog.inputs["files"]
