"""Expressions and templates: native values, scope, errors located at file:line, the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from steward.compiler import ExpressionError, TemplateError
from steward.errors import StewardError

from .conftest import Compile, one_profile

ROLE_AND_RULE = {
    "classification.yaml": "rules:\n  - name: all\n    role: r\n",
    "roles/r.yaml": "profiles:\n  p: {}\n",
}


def params_of(build: Compile, files: dict[str, str], **kwargs: Any) -> dict[str, dict[str, Any]]:
    catalog = build(files, **kwargs).catalog
    return {r.ref: r.parameters for r in catalog.resources}


def test_native_values_and_text(build: Compile) -> None:
    files = one_profile(
        """
        exec[run]:
          command: "echo {{ node }}"
          timeout: "{{ 60 * 5 }}"
          refreshonly: "{{ facts.os.family == 'Debian' }}"
          returns: "{{ [0, 2] }}"
          environment: "{{ {'A': node, 'B': environment} }}"
          cwd: "{{ params.dir }}"
          user: "{{ role }}"
        """,
        parameters="dir: {type: string, default: /srv}",
    )
    params = params_of(build, files)["exec[run]"]
    assert params == {
        "command": "echo web1",
        "timeout": 300,
        "refreshonly": True,
        "returns": [0, 2],
        "environment": {"A": "web1", "B": "production"},
        "cwd": "/srv",
        "user": "r",
    }


def test_mapping_forms_and_functions(build: Compile) -> None:
    files = one_profile(
        """
        host[a]:
          ip: {lookup: "p::ip"}
          comment: {lookup: "p::absent", default: "none given"}
          host_aliases: "{{ lookup('p::aliases', merge='unique') }}"
        """
    )
    files["data/common.yaml"] = "p::ip: 10.0.0.1\np::aliases: [x, y]\n"
    files["data/nodes/web1.yaml"] = "p::aliases: [z, x]\n"
    params = params_of(build, files)["host[a]"]
    assert params == {
        "name": "a",
        "ip": "10.0.0.1",
        "comment": "none given",
        "host_aliases": ["z", "x", "y"],
    }


def test_item_for_lists_and_mappings(build: Compile) -> None:
    files = one_profile(
        """
        "file[/srv/{{ item }}]":
          for_each: [b, a]
          content: "{{ item | upper }}"
        "host[{{ item.key }}]":
          for_each: {zeta: 1.1.1.1, alpha: 2.2.2.2}
          ip: "{{ item.value }}"
        """
    )
    catalog = build(files).catalog
    assert [r.ref for r in catalog.resources] == [
        "file[/srv/b]",
        "file[/srv/a]",
        "host[alpha]",
        "host[zeta]",
    ]
    assert catalog.resources[0].parameters["content"] == "B"


@pytest.mark.parametrize(
    ("value", "error", "fragments"),
    [
        pytest.param(
            '"{{ nope }}"',
            ExpressionError,
            ["profiles/p.yaml:4", "exec[x]: parameter 'cwd'", "'nope' is undefined"],
            id="undefined-name",
        ),
        pytest.param(
            '"{{ facts.os.familly }}"',
            ExpressionError,
            ["profiles/p.yaml:4", "fact 'os.familly' is not defined for node 'web1'"],
            id="missing-fact",
        ),
        pytest.param(
            '"{{ params.prot }}"',
            ExpressionError,
            ["profiles/p.yaml:4", "profile p has no parameter 'prot' (did you mean 'port'?)"],
            id="missing-param",
        ),
        pytest.param(
            '"{{ 1 / 0 }}"',
            ExpressionError,
            ["profiles/p.yaml:4", "ZeroDivisionError"],
            id="runtime-error",
        ),
        pytest.param(
            '"{{ lookup }}"',
            ExpressionError,
            ["profiles/p.yaml:4", "is not data"],
            id="function-is-not-data",
        ),
        pytest.param(
            "\"{{ lookup('no::key') }}\"",
            StewardError,
            [
                "profiles/p.yaml:4",
                "data key 'no::key' not found for node 'web1'",
                "data/common.yaml (absent)",
            ],
            id="missing-data-key",
        ),
    ],
)
def test_expression_errors(
    build: Compile, value: str, error: type[StewardError], fragments: list[str]
) -> None:
    files = {
        **ROLE_AND_RULE,
        "profiles/p.yaml": "parameters:\n  port: {type: integer, default: 1}\nresources:\n"
        f"  exec[x]:\n    cwd: {value}\n".replace("exec[x]:\n    cwd", "exec[x]: {cwd")
        + "",
    }
    # One line per resource, so the error line is the declaration's line.
    files["profiles/p.yaml"] = (
        "parameters:\n  port: {type: integer, default: 1}\nresources:\n"
        f"  exec[x]: {{cwd: {value}}}\n"
    )
    with pytest.raises(error) as caught:
        build(files)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_multiline_inline_template_error_points_at_the_line(build: Compile) -> None:
    files = {
        **ROLE_AND_RULE,
        "profiles/p.yaml": (
            "resources:\n"
            "  file[/x]:\n"
            "    content: |\n"
            "      line one\n"
            "      line two {{ missing }}\n"
        ),
    }
    with pytest.raises(ExpressionError) as caught:
        build(files)
    assert str(caught.value).startswith("profiles/p.yaml:5: file[/x]: parameter 'content'")


def test_template_errors_name_the_template_line(build: Compile) -> None:
    files = one_profile("file[/x]:\n  template: outer.j2\n")
    files["templates/outer.j2"] = "a\n{% include 'inner.j2' %}\n"
    files["templates/inner.j2"] = "one\ntwo\nthree {{ facts.nothing.here }}\n"
    with pytest.raises(TemplateError) as caught:
        build(files)
    message = str(caught.value)
    assert message.startswith("templates/inner.j2:3: file[/x]: template 'outer.j2'")
    assert "fact 'nothing' is not defined for node 'web1'" in message


def test_lookup_error_inside_template_names_the_template_line(build: Compile) -> None:
    files = one_profile("file[/x]:\n  template: t.j2\n")
    files["templates/t.j2"] = "header\n\nvalue={{ lookup('app::port') }}\n"
    with pytest.raises(StewardError) as caught:
        build(files)
    assert str(caught.value).startswith("templates/t.j2:3:")
    assert "data key 'app::port' not found for node 'web1'" in str(caught.value)


def test_unknown_template_suggests(build: Compile) -> None:
    files = one_profile("file[/x]:\n  template: motd.j3\n")
    files["templates/motd.j2"] = "hi\n"
    with pytest.raises(TemplateError) as caught:
        build(files)
    assert str(caught.value) == (
        "profiles/p.yaml:5: file[/x]: template 'motd.j3' not found under templates/ "
        "(did you mean 'motd.j2'?)"
    )


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("{{ ''.__class__.__mro__ }}", "refused unsafe access"),
        ("{{ lookup.__globals__ }}", "refused unsafe access"),
        ("{{ secret.__self__ }}", "refused unsafe access"),
        ("{{ facts.__class__ }}", "refused unsafe access"),
        ("{{ params.sites.append('x') }}", "refused unsafe access"),
        ("{{ ''.format.__globals__ }}", "refused unsafe access"),
        ("{{ cycler.__init__.__globals__ }}", "refused unsafe access"),
    ],
)
def test_sandbox_refuses_escapes(build: Compile, expression: str, fragment: str) -> None:
    files = one_profile(
        f'file[/x]:\n  content: "{expression}"\n',
        parameters="sites: {type: list, default: [a]}",
    )
    with pytest.raises(ExpressionError) as caught:
        build(files)
    assert fragment in str(caught.value)
    assert "profiles/p.yaml:" in str(caught.value)


def test_sandbox_refuses_escapes_inside_template_files(build: Compile) -> None:
    files = one_profile("file[/x]:\n  template: t.j2\n")
    files["templates/t.j2"] = "ok\n{{ lookup.__globals__['__builtins__'] }}\n"
    with pytest.raises(TemplateError) as caught:
        build(files)
    assert str(caught.value).startswith("templates/t.j2:2:")
    assert "refused unsafe access" in str(caught.value)


@pytest.mark.parametrize("name", ["../steward.yaml", "/etc/passwd", "../../etc/hostname"])
def test_includes_are_confined_to_templates(build: Compile, name: str) -> None:
    files = one_profile("file[/x]:\n  template: t.j2\n")
    files["templates/t.j2"] = f"{{% include '{name}' %}}\n"
    with pytest.raises(TemplateError, match="not found under templates/"):
        build(files)


def test_nondeterministic_helpers_are_gone(build: Compile) -> None:
    files = one_profile('file[/x]:\n  content: "{{ [1, 2] | random }}"\n')
    with pytest.raises(StewardError, match="random"):
        build(files)


def test_template_renders_with_the_resource_scope(build: Compile) -> None:
    files = one_profile(
        """
        "file[/etc/{{ item }}.conf]":
          for_each: [a]
          template: conf.j2
        """,
        parameters="port: {type: integer, default: 8080}",
    )
    files["templates/conf.j2"] = (
        "{% import 'macros.j2' as m %}{{ m.header() }}\n"
        "name={{ item }} port={{ params.port }} node={{ node }} env={{ environment }}\n"
        "roles={{ roles | join(',') }} fam={{ facts.os.family }}\n"
    )
    files["templates/macros.j2"] = "{% macro header() %}# managed{% endmacro %}"
    catalog = build(files).catalog
    assert catalog.resources[0].parameters["content"] == (
        "# managed\nname=a port=8080 node=web1 env=production\nroles=r fam=Debian\n"
    )
    assert "templates/macros.j2" in catalog.inputs["files"]
