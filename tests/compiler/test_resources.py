"""Resource expansion and validation: for_each, when, namevars, duplicates, content sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward.compiler import DuplicateResourceError, ResourceError, compile_catalog
from steward.errors import StewardError
from steward.language import load_repository

from .conftest import Compile, one_profile, write_files

HEADER = 4  # profiles/p.yaml from one_profile(): resources start on line 4


def refs(build: Compile, resources: str, **kwargs: object) -> list[str]:
    return [r.ref for r in build(one_profile(resources), **kwargs).catalog.resources]


def test_declaration_order_tags_and_locations(build: Compile) -> None:
    files = one_profile(
        """
        package[b]: {}
        package[a]:
          tags: [zz, web]
        """
    )
    catalog = build(files).catalog
    first, second = catalog.resources
    assert [first.ref, second.ref] == ["package[b]", "package[a]"]
    assert first.tags == ("profile:p", "role:r")
    assert second.tags == ("profile:p", "role:r", "web", "zz")
    assert (first.file, first.line, second.line) == ("profiles/p.yaml", HEADER, HEADER + 1)
    assert second.parameters == {"name": "a"}  # namevar from the title, no type defaults


def test_when_and_for_each(build: Compile) -> None:
    found = refs(
        build,
        """
        "user[{{ item }}]":
          for_each: [alice, bob, carol]
          when: "{{ item != 'bob' }}"
        package[debian-only]:
          when: "{{ facts.os.family == 'Debian' }}"
        package[redhat-only]:
          when: "{{ facts.os.family == 'RedHat' }}"
        "group[{{ item }}]":
          for_each: "{{ none }}"
        """,
    )
    assert found == ["user[alice]", "user[carol]", "package[debian-only]"]


def test_paths_are_normalised_and_namevars_filled(build: Compile) -> None:
    catalog = build(
        one_profile(
            """
        directory[/srv/app/]: {}
        file[motd]:
          path: /etc//motd
        """
        )
    ).catalog
    params = {r.ref: r.parameters for r in catalog.resources}
    assert params["directory[/srv/app/]"] == {"path": "/srv/app"}
    assert params["file[motd]"] == {"path": "/etc/motd"}


@pytest.mark.parametrize(
    ("resources", "error", "fragments"),
    [
        pytest.param(
            "package[a]: {}\npackage[a]: {}\n",
            StewardError,
            ["duplicate key 'package[a]'"],
            id="same-key-twice-in-yaml",
        ),
        pytest.param(
            "package[a]: {}\n'package[{{ \"a\" }}]': {}\n",
            DuplicateResourceError,
            [
                f"profiles/p.yaml:{HEADER + 1}",
                "package[a] is declared twice: at "
                f"profiles/p.yaml:{HEADER} and at profiles/p.yaml:{HEADER + 1}",
            ],
            id="same-title",
        ),
        pytest.param(
            "file[/etc/x]: {}\nfile[x]:\n  path: /etc/x/\n",
            DuplicateResourceError,
            [
                "file[x] and file[/etc/x] manage the same file (path '/etc/x'): declared at "
                f"profiles/p.yaml:{HEADER} and at profiles/p.yaml:{HEADER + 1}"
            ],
            id="same-namevar",
        ),
        pytest.param(
            "'file[/srv/{{ item | length }}]':\n  for_each: [ab, cd]\n",
            DuplicateResourceError,
            [
                f"profiles/p.yaml:{HEADER}",
                "for_each items 0 and 1 both give file[/srv/2]; the title must differ per item",
            ],
            id="for-each-same-title",
        ),
        pytest.param(
            "'file[/srv/{{ item }}]':\n  for_each: '{{ 5 }}'\n",
            ResourceError,
            [
                f"profiles/p.yaml:{HEADER + 1}",
                "for_each must give a list or a mapping, got the integer 5",
            ],
            id="for-each-not-a-list",
        ),
        pytest.param(
            "exec[x]:\n  timeout: '{{ \"soon\" }}'\n",
            ResourceError,
            [
                f"profiles/p.yaml:{HEADER + 1}",
                "exec[x]: parameter 'timeout': expected an integer, got the string 'soon'",
            ],
            id="dynamic-wrong-type",
        ),
        pytest.param(
            "service[x]:\n  ensure: '{{ \"started\" }}'\n",
            ResourceError,
            [f"profiles/p.yaml:{HEADER + 1}", "'started' is not one of: running, stopped"],
            id="dynamic-not-allowed",
        ),
        pytest.param(
            "'file[{{ \"relative\" }}]': {}\n",
            ResourceError,
            [
                f"profiles/p.yaml:{HEADER}",
                "parameter 'path' must be an absolute path, got 'relative'",
            ],
            id="relative-path-from-title",
        ),
        pytest.param(
            "'package[{{ [1] }}]': {}\n",
            ResourceError,
            [f"profiles/p.yaml:{HEADER}", "the title must be a string, got a list"],
            id="title-not-a-string",
        ),
        pytest.param(
            "file[/x]:\n  source: nothing.txt\n",
            ResourceError,
            [f"profiles/p.yaml:{HEADER + 1}", "source 'nothing.txt' not found under files/"],
            id="source-missing",
        ),
        pytest.param(
            "package[a]:\n  tags: '{{ [1] }}'\n",
            ResourceError,
            [f"profiles/p.yaml:{HEADER + 1}", "tags must be a string or a list"],
            id="bad-tags",
        ),
    ],
)
def test_resource_errors(
    build: Compile, resources: str, error: type[StewardError], fragments: list[str]
) -> None:
    with pytest.raises(error) as caught:
        build(one_profile(resources))
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_null_parameters_are_left_out(build: Compile) -> None:
    catalog = build(
        one_profile("user[u]:\n  shell: ~\n  home: \"{{ lookup('u::home', default=None) }}\"\n")
    ).catalog
    assert catalog.resources[0].parameters == {"name": "u"}


def test_source_and_template_become_content(build: Compile) -> None:
    files = one_profile(
        """
        file[/etc/issue]:
          source: issue.txt
        file[/etc/motd]:
          template: motd.j2
        """
    )
    files["files/issue.txt"] = "Authorised access only.\n"
    files["templates/motd.j2"] = "Welcome to {{ node }}\n"
    catalog = build(files).catalog
    issue, motd = catalog.resources
    assert issue.parameters == {"path": "/etc/issue", "content": "Authorised access only.\n"}
    assert motd.parameters == {"path": "/etc/motd", "content": "Welcome to web1\n"}
    assert {"files/issue.txt", "templates/motd.j2"} <= set(catalog.inputs["files"])


def test_binary_source_is_refused(tmp_path: Path) -> None:
    files = one_profile("file[/bin/x]:\n  source: x.bin\n")
    root = write_files(tmp_path, files)
    (root / "files").mkdir()
    (root / "files" / "x.bin").write_bytes(b"\xff\xfe\x00")
    repo = load_repository(root)
    with pytest.raises(ResourceError, match="is not UTF-8 text"):
        compile_catalog(repo, "web1", {"os": {"family": "Debian"}})
