"""Loading: YAML with lines, schema validation, cross-file checks, load-time errors."""

from __future__ import annotations

import pytest

from steward.errors import StewardError
from steward.language import (
    DuplicateKeyError,
    ParameterError,
    Repository,
    RepositoryError,
    ResourceError,
    TemplateError,
    load_repository,
)
from steward.language.values import Const, Expr, LookupCall, SecretRef, Text
from steward.language.yamlsource import load_yaml

from .conftest import WriteRepo


def test_yaml_values_and_lines() -> None:
    data, source = load_yaml("a: 1\nb:\n  - x\n  - {c: true}\nd: |\n  text\n", "f.yaml")
    assert data == {"a": 1, "b": ["x", {"c": True}], "d": "text\n"}
    assert source.line(("b", 1, "c")) == 4
    assert source.line(("b", 0)) == 3
    assert source.line(("nope",)) == 1
    assert source.text_line(("d",)) == 6  # block scalar text starts on the next line


def test_yaml_timestamps_stay_text_and_merge_keys_work() -> None:
    data, _ = load_yaml("base: &b {x: 1, y: 2}\nd: 2024-01-02\nm:\n  <<: *b\n  y: 3\n", "f")
    assert data["d"] == "2024-01-02"
    assert data["m"] == {"y": 3, "x": 1}


@pytest.mark.parametrize(
    ("text", "error", "expected"),
    [
        (
            "a: 1\nb: 2\na: 3\n",
            DuplicateKeyError,
            "f.yaml:3: duplicate key 'a' in the same mapping (first at line 1, again at line 3)",
        ),
        ("x:\n  k: 1\n  k: 2\n", DuplicateKeyError, "first at line 2, again at line 3"),
        ("a: [1, 2\n", RepositoryError, "f.yaml:2: invalid YAML"),
        ("a: !custom 1\n", RepositoryError, "f.yaml:1: unsupported YAML tag '!custom'"),
        ("? [a]\n: 1\n", RepositoryError, "mapping keys must be plain scalars"),
    ],
)
def test_yaml_errors(text: str, error: type[StewardError], expected: str) -> None:
    with pytest.raises(error) as caught:
        load_yaml(text, "f.yaml")
    assert expected in str(caught.value)


# A profile file whose line numbers the cases below refer to.
PROFILE = """\
description: test
parameters:
  port: {type: integer, default: 80}
resources:
  package[nginx]:
    ensure: installed
"""


@pytest.mark.parametrize(
    ("files", "error", "fragments"),
    [
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("description", "descripton")},
            RepositoryError,
            ["profiles/p.yaml:1", "unknown field 'descripton' (did you mean 'description'?)"],
            id="unknown-top-level-field",
        ),
        pytest.param(
            {
                "profiles/p.yaml": PROFILE.replace(
                    "{type: integer, default: 80}", "{type: int, default: 80}"
                )
            },
            RepositoryError,
            ["profiles/p.yaml:3", "parameters.port.type", "'string'"],
            id="bad-parameter-type-name",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("default: 80", "default: '80'")},
            ParameterError,
            [
                "profiles/p.yaml:3",
                "parameters.port.default",
                "expected an integer, got the string '80'",
            ],
            id="default-of-wrong-type",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("default: 80", "default: 80, required: true")},
            ParameterError,
            ["profiles/p.yaml:3", "a required parameter cannot have a default"],
            id="required-with-default",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("port:", "items:")},
            ParameterError,
            ["profiles/p.yaml:3", "'items' is reserved"],
            id="reserved-parameter-name",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("package[nginx]", "pakage[nginx]")},
            ResourceError,
            [
                "profiles/p.yaml:5",
                "unknown resource type 'pakage' (did you mean 'package'?)",
                "known types: cron, directory, exec, file, group, host, line, package, service, "
                "symlink, user",
            ],
            id="unknown-type",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE.replace("ensure:", "ensur:")},
            ResourceError,
            [
                "profiles/p.yaml:6",
                "package[nginx]: unknown parameter 'ensur' for type package "
                "(did you mean 'ensure'?)",
            ],
            id="unknown-resource-parameter",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  file[/etc/x]:\n    mode: 0644\n"},
            ResourceError,
            [
                "profiles/p.yaml:8",
                "file[/etc/x]: parameter 'mode'",
                "got the integer 420",
                'quote it: "0644"',
            ],
            id="octal-mode-trap",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  service[x]:\n    ensure: started\n"},
            ResourceError,
            [
                "profiles/p.yaml:8",
                "parameter 'ensure'",
                "'started' is not one of: running, stopped",
            ],
            id="value-not-allowed",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  line[x]:\n    line: a\n"},
            ResourceError,
            ["profiles/p.yaml:7", "line[x]: parameter 'path' is required"],
            id="required-resource-parameter",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  file[/x]:\n    content: a\n    source: b\n"},
            ResourceError,
            ["profiles/p.yaml:7", "give only one of content, template, source"],
            id="content-and-source",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  file[/x]:\n    require: nothing\n"},
            ResourceError,
            ["profiles/p.yaml:8", "require", "'nothing' is not a resource reference"],
            id="malformed-relationship",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  file[relative/x]:\n    path: etc/x\n"},
            ResourceError,
            ["profiles/p.yaml:8", "parameter 'path': must be an absolute path"],
            id="relative-path",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE + "  file[/x]:\n    content: '{{ item }'\n"},
            RepositoryError,
            ["profiles/p.yaml:8", "resources.file[/x].content: Jinja syntax error"],
            id="inline-jinja-syntax-error",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE, "templates/t.j2": "a\nb {% if x %}\n"},
            TemplateError,
            ["templates/t.j2:2", "Jinja syntax error"],
            id="template-syntax-error",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE, "roles/r.yaml": "profiles:\n  base: {}\n  q: {}\n"},
            RepositoryError,
            ["roles/r.yaml:2", "profiles.base: no profile named 'base'"],
            id="role-names-unknown-profile",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE, "roles/r.yaml": "profiles:\n  p:\n    prot: 8080\n"},
            ParameterError,
            ["roles/r.yaml:3", "profile p: unknown parameter 'prot' (did you mean 'port'?)"],
            id="unknown-profile-parameter",
        ),
        pytest.param(
            {"profiles/p.yaml": PROFILE, "roles/r.yaml": "profiles:\n  p:\n    port: http\n"},
            ParameterError,
            ["roles/r.yaml:3", "parameter 'port': expected an integer, got the string 'http'"],
            id="profile-parameter-of-wrong-type",
        ),
        pytest.param(
            {
                "profiles/p.yaml": PROFILE,
                "classification.yaml": "rules:\n  - name: a\n    role: webb\n",
            },
            RepositoryError,
            ["classification.yaml:3", "rules[0].role: no role named 'webb'"],
            id="rule-names-unknown-role",
        ),
        pytest.param(
            {"classification.yaml": "rules:\n  - name: a\n    match: {node_regex: '('}\n"},
            RepositoryError,
            ["classification.yaml:3", "invalid regular expression"],
            id="bad-regex",
        ),
        pytest.param(
            {"classification.yaml": "rules:\n  - name: a\n  - name: a\n"},
            RepositoryError,
            ["classification.yaml:3", "rule name 'a' is used twice (also at line 2)"],
            id="duplicate-rule-name",
        ),
        pytest.param(
            {"classification.yaml": "rules:\n  - match: {node: x}\n"},
            RepositoryError,
            ["classification.yaml:2", "rules[0].name: this field is required"],
            id="rule-without-name",
        ),
        pytest.param(
            {"steward.yaml": "hierarchy:\n  - common.yaml\n  - hosts/{hostname}.yaml\n"},
            RepositoryError,
            ["steward.yaml:3", "unknown variable {hostname}"],
            id="bad-hierarchy-variable",
        ),
        pytest.param(
            {"steward.yaml": "merge: deepest\n"},
            RepositoryError,
            ["steward.yaml:1", "merge: Input should be 'first', 'unique', 'hash' or 'deep'"],
            id="bad-merge-strategy",
        ),
        pytest.param(
            {"data/common.yaml": "- a\n- b\n"},
            RepositoryError,
            ["data/common.yaml", "a data file must hold a mapping"],
            id="data-not-a-mapping",
        ),
        pytest.param(
            {"roles/web.yaml": "profiles: {}\n", "roles/web.yml": "profiles: {}\n"},
            RepositoryError,
            ["role 'web' is defined twice"],
            id="role-defined-twice",
        ),
    ],
)
def test_load_errors(
    write_repo: WriteRepo, files: dict[str, str], error: type[StewardError], fragments: list[str]
) -> None:
    with pytest.raises(error) as caught:
        load_repository(write_repo(files))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message


def test_strings_are_classified_once_at_load(write_repo: WriteRepo) -> None:
    repo = load_repository(
        write_repo(
            {
                "profiles/p.yaml": """
            resources:
              "file[/srv/{{ item }}]":
                for_each: [a]
                content: "x={{ params }}\\n"
                owner: "{{ item }}"
                group: {lookup: "p::group", default: root}
                mode: "0644"
              user[u]:
                password: {secret: pw}
        """,
            }
        )
    )
    file_decl, user_decl = repo.profiles["p"].resources
    dynamic = {p.name: p.value for p in file_decl.dynamic_params}
    assert isinstance(dynamic["content"], Text)
    assert isinstance(dynamic["owner"], Expr)
    assert dynamic["owner"].path == ("item",)
    assert isinstance(dynamic["group"], LookupCall)
    assert dict(file_decl.static_params) == {"mode": "0644"}
    assert isinstance(file_decl.title, Text)
    assert file_decl.static_title is None
    assert isinstance(user_decl.dynamic_params[0].value, SecretRef)
    assert isinstance(repo.profiles["p"].resources[1].title, Const)


def test_symlink_out_of_the_repository_is_refused(
    write_repo: WriteRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("nope")
    root = write_repo({"profiles/p.yaml": "resources: {}\n"})
    (root / "files").mkdir()
    (root / "files" / "leak.txt").symlink_to(outside)
    with pytest.raises(RepositoryError, match="points outside the repository"):
        load_repository(root)


def test_missing_directory_is_an_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(RepositoryError, match="does not exist"):
        load_repository(tmp_path_factory.getbasetemp() / "no-such-repo")


def test_example_repository_loads(example_repo: Repository) -> None:
    assert isinstance(example_repo, Repository)
    assert set(example_repo.roles) == {"web", "db"}
    assert set(example_repo.profiles) == {"base", "nginx", "postgresql", "monitoring"}
    assert "nginx/header.j2" in example_repo.templates
    assert example_repo.templates["nginx/site.conf.j2"].closure == (
        "templates/nginx/header.j2",
        "templates/nginx/site.conf.j2",
    )
