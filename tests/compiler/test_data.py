"""Hierarchical data: hierarchy resolution, merge strategies, automatic parameter lookup."""

from __future__ import annotations

import json
from typing import Any

import pytest

from steward.compiler import DataError, ParameterError
from steward.errors import StewardError

from .conftest import Compile, one_profile

DATA = {
    "data/nodes/web1.yaml": """
        app::list: [n1, shared]
        app::hash: {a: node, n: node}
        app::deep:
          server: {port: 8443, tls: true}
          tags: [node]
        app::only_common_has_this_not: 1
        app::nested: {level: {value: from-node}}
    """,
    "data/roles/r.yaml": """
        app::list: [r1]
        app::hash: {a: role, r: role}
        app::deep:
          server: {port: 8080, workers: 4}
          tags: [role, node]
    """,
    "data/common.yaml": """
        app::list: [c1, shared]
        app::hash: {a: common, c: common}
        app::deep:
          server: {port: 80, name: common}
          tags: [common]
          mode: plain
        app::scalar: common
        app::nested: {level: {other: 1}}
        app::items: [zero, one]
    """,
}


def lookup_value(build: Compile, expression: str, files: dict[str, str] | None = None) -> Any:
    all_files = {
        **one_profile(
            f'exec[probe]:\n  environment: {{"V": "{{{{ ({expression}) | tojson }}}}"}}\n'
        ),
        **DATA,
        **(files or {}),
    }
    catalog = build(all_files).catalog
    return json.loads(catalog.resources[0].parameters["environment"]["V"])


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("lookup('app::list')", ["n1", "shared"]),
        ("lookup('app::list', merge='first')", ["n1", "shared"]),
        ("lookup('app::list', merge='unique')", ["n1", "shared", "r1", "c1"]),
        (
            "lookup('app::hash', merge='hash')",
            {"a": "node", "n": "node", "r": "role", "c": "common"},
        ),
        (
            "lookup('app::deep', merge='deep')",
            {
                "server": {"port": 8443, "tls": True, "workers": 4, "name": "common"},
                "tags": ["node", "role", "common"],
                "mode": "plain",
            },
        ),
        (
            "lookup('app::deep', merge='hash')",
            {
                "server": {"port": 8443, "tls": True},
                "tags": ["node"],
                "mode": "plain",
            },
        ),
        ("lookup('app::scalar', merge='unique')", ["common"]),
        ("lookup('app::nested.level.value')", "from-node"),
        ("lookup('app::nested.level.other')", 1),
        ("lookup('app::deep.server.port')", 8443),
        ("lookup('app::items.1')", "one"),
        ("lookup('app::absent', default=None)", None),
        ("lookup('app::absent', default=[1])", [1]),
    ],
)
def test_lookups(build: Compile, expression: str, expected: Any) -> None:
    assert lookup_value(build, expression) == expected


def test_default_merge_comes_from_steward_yaml(build: Compile) -> None:
    files = {"steward.yaml": "merge: unique\n"}
    assert lookup_value(build, "lookup('app::list')", files) == ["n1", "shared", "r1", "c1"]


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        (
            "lookup('app::hash', merge='unique')",
            [
                "with merge 'unique' needs lists or scalars",
                "data/nodes/web1.yaml:2 holds a mapping",
            ],
        ),
        (
            "lookup('app::list', merge='hash')",
            ["with merge 'hash' needs mappings", "data/nodes/web1.yaml:1 holds a list"],
        ),
        (
            "lookup('app::list', merge='deepest')",
            ["merge must be one of first, unique, hash, deep, got 'deepest'"],
        ),
        ("lookup(42)", ["the key must be a non-empty string, got the integer 42"]),
    ],
)
def test_lookup_errors(build: Compile, expression: str, fragments: list[str]) -> None:
    with pytest.raises(DataError) as caught:
        lookup_value(build, expression)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_missing_key_names_key_node_hierarchy_and_call_site(build: Compile) -> None:
    files = {
        **one_profile("exec[x]:\n  cwd: {lookup: 'app::dir'}\n"),
        "data/common.yaml": "other: 1\n",
    }
    with pytest.raises(DataError) as caught:
        build(files)
    assert str(caught.value) == (
        "profiles/p.yaml:5: exec[x]: parameter 'cwd': data key 'app::dir' not found for node "
        "'web1' and no default given; hierarchy consulted: data/nodes/web1.yaml (absent), "
        "data/roles/r.yaml (absent), data/os/Debian.yaml (absent), data/common.yaml"
    )


def test_hierarchy_interpolation_and_skipping(build: Compile) -> None:
    files = {
        **one_profile("exec[x]: {}\n"),
        "steward.yaml": """
            hierarchy:
              - nodes/{node}.yaml
              - env/{environment}/{role}.yaml
              - dc/{facts.location.dc}.yaml
              - os/{facts.os.family}/{facts.os.release.major}.yaml
              - common.yaml
        """,
        "classification.yaml": "rules:\n  - {name: all, role: [r, q]}\n",
        "roles/q.yaml": "profiles: {}\n",
    }
    catalog = build(files).catalog
    assert catalog.inputs["data_paths"] == [
        "data/nodes/web1.yaml",
        "data/env/production/r.yaml",
        "data/env/production/q.yaml",
        "data/os/Debian/12.yaml",
        "data/common.yaml",
    ]
    assert "location" in catalog.inputs["facts"]  # the first missing segment was read
    assert "os.release.major" in catalog.inputs["facts"]


def test_data_dir_setting(build: Compile) -> None:
    files = {
        **one_profile("exec[x]: {cwd: \"{{ lookup('k') }}\"}\n"),
        "steward.yaml": "data_dir: hieradata\nhierarchy: [common.yaml]\n",
        "hieradata/common.yaml": "k: /from/hieradata\n",
    }
    catalog = build(files).catalog
    assert catalog.resources[0].parameters["cwd"] == "/from/hieradata"
    assert catalog.inputs["data_paths"] == ["hieradata/common.yaml"]
    assert "hieradata/common.yaml" in catalog.inputs["files"]


PARAMS = """
port: {type: integer, default: 80}
name: {type: string, required: true}
mode: {type: string, default: "{{ node }}-mode", allowed: [web1-mode, other]}
"""


@pytest.mark.parametrize(
    ("role_params", "data", "expected"),
    [
        pytest.param(
            "{name: a}", "", {"port": 80, "name": "a", "mode": "web1-mode"}, id="defaults"
        ),
        pytest.param(
            "{name: a}",
            "p::port: 8080\np::mode: other\n",
            {"port": 8080, "name": "a", "mode": "other"},
            id="data-beats-default",
        ),
        pytest.param(
            "{name: a, port: 9090}",
            "p::port: 8080\n",
            {"port": 9090, "name": "a", "mode": "web1-mode"},
            id="role-beats-data",
        ),
        pytest.param(
            "{}",
            "p::name: from-data\n",
            {"port": 80, "name": "from-data", "mode": "web1-mode"},
            id="required-from-data",
        ),
    ],
)
def test_parameter_resolution_order(
    build: Compile, role_params: str, data: str, expected: dict[str, Any]
) -> None:
    files = one_profile(
        'exec[x]: {environment: {P: "{{ params.port | string }}", N: "{{ params.name }}", '
        'M: "{{ params.mode }}"}}\n',
        parameters=PARAMS,
        role_params=role_params,
    )
    files["data/common.yaml"] = data or "{}\n"
    catalog = build(files).catalog
    env = catalog.resources[0].parameters["environment"]
    assert {"port": int(env["P"]), "name": env["N"], "mode": env["M"]} == expected
    assert "p::mode" in catalog.inputs["data_keys"]  # automatic parameter lookup


@pytest.mark.parametrize(
    ("role_params", "data", "fragments"),
    [
        pytest.param(
            "{}",
            "",
            [
                "roles/r.yaml:2",
                "profile p: parameter 'name' is required, "
                "but role r does not give it and data key 'p::name' is not "
                "set",
            ],
            id="required-missing",
        ),
        pytest.param(
            "{name: a}",
            "p::port: eighty\n",
            [
                "data/common.yaml:1",
                "parameter 'port': expected an integer, got the string 'eighty'",
            ],
            id="bad-type-from-data",
        ),
        pytest.param(
            "{name: a, mode: '{{ node }}'}",
            "",
            [
                "roles/r.yaml:2",
                "parameter 'mode': 'web1' is not one of the allowed values: 'web1-mode', 'other'",
            ],
            id="not-allowed-from-role",
        ),
        pytest.param(
            "{name: '{{ 1 + 1 }}'}",
            "",
            ["roles/r.yaml:2", "parameter 'name': expected a string, got the integer 2"],
            id="bad-type-from-expression",
        ),
    ],
)
def test_parameter_errors(
    build: Compile, role_params: str, data: str, fragments: list[str]
) -> None:
    files = one_profile("exec[x]: {}\n", parameters=PARAMS, role_params=role_params)
    files["data/common.yaml"] = data or "{}\n"
    with pytest.raises(ParameterError) as caught:
        build(files)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_default_may_use_earlier_parameters_only(build: Compile) -> None:
    files = one_profile(
        'exec[x]: {cwd: "{{ params.b }}"}\n',
        parameters="a: {type: string, default: /srv}\nb: {type: string, default: "
        '"{{ params.a }}/b"}\n',
    )
    assert build(files).catalog.resources[0].parameters["cwd"] == "/srv/b"
    files = one_profile(
        "exec[x]: {}\n",
        parameters='a: {type: string, default: "{{ params.b }}"}\nb: {type: string, default: x}\n',
    )
    with pytest.raises(StewardError, match="not resolved yet"):
        build(files)


def test_inputs_record_only_consulted_data_files(build: Compile) -> None:
    files = {**one_profile("exec[x]: {cwd: \"{{ lookup('app::scalar') }}\"}\n"), **DATA}
    inputs = build(files).catalog.inputs
    # first-found lookup: every level down to the one that answered was read
    assert set(inputs["files"]) >= {"data/nodes/web1.yaml", "data/roles/r.yaml", "data/common.yaml"}
    files = {**one_profile("exec[x]: {cwd: \"{{ lookup('app::list') | join }}\"}\n"), **DATA}
    inputs = build(files).catalog.inputs
    assert "data/common.yaml" not in inputs["files"]
    assert "data/common.yaml" in inputs["data_paths"]
    assert inputs["data_keys"] == ["app::list"]
