"""Relationships: normalised edges, automatic dependencies, undeclared targets, cycles."""

from __future__ import annotations

import pytest

from steward.compiler import CycleError, RelationshipError

from .conftest import Compile, one_profile

HEADER = 4


def edges(build: Compile, resources: str) -> list[tuple[str, str, str]]:
    catalog = build(one_profile(resources)).catalog
    return [(e.source, e.target, e.relationship) for e in catalog.edges]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param(
            "exec[a]:\n  before: exec[b]\nexec[b]: {}\n",
            [("exec[a]", "exec[b]", "before")],
            id="before",
        ),
        pytest.param(
            "exec[a]: {}\nexec[b]:\n  require: exec[a]\n",
            [("exec[a]", "exec[b]", "required-by")],
            id="require",
        ),
        pytest.param(
            "exec[a]:\n  notify: exec[b]\nexec[b]: {}\n",
            [("exec[a]", "exec[b]", "notifies")],
            id="notify",
        ),
        pytest.param(
            "exec[a]: {}\nexec[b]:\n  subscribe: ['exec[a]']\n",
            [("exec[a]", "exec[b]", "subscription-of")],
            id="subscribe",
        ),
        pytest.param(
            "exec[b]:\n  require: 'Exec[ a ]'\nexec[a]: {}\n",
            [("exec[a]", "exec[b]", "required-by")],
            id="normalised-reference",
        ),
        pytest.param(
            "file[conf]:\n  path: /etc/app.conf\nexec[b]:\n  subscribe: file[/etc/app.conf]\n",
            [("file[conf]", "exec[b]", "subscription-of")],
            id="alias-by-namevar",
        ),
        pytest.param(
            "'exec[{{ item }}]':\n  for_each: [x, y]\n  before: \"{{ 'exec[z]' }}\"\nexec[z]: {}\n",
            [("exec[x]", "exec[z]", "before"), ("exec[y]", "exec[z]", "before")],
            id="expression-reference",
        ),
        pytest.param(
            "exec[a]:\n  notify: exec[b]\n  before: exec[b]\nexec[b]: {}\n",
            [("exec[a]", "exec[b]", "before"), ("exec[a]", "exec[b]", "notifies")],
            id="several-kinds-sorted",
        ),
    ],
)
def test_explicit_relationships(
    build: Compile, resources: str, expected: list[tuple[str, str, str]]
) -> None:
    assert edges(build, resources) == expected


AUTO = """
directory[/srv]: {}
directory[/srv/app]:
  owner: deploy
  group: deploy
file[/srv/app/conf/x.ini]: {}
symlink[/srv/current]:
  target: /srv/app
line[opt]:
  path: /srv/app/conf/x.ini
  line: a=1
host[db]:
  ip: 10.0.0.1
  target: /srv/hosts
group[deploy]: {}
group[extra]: {}
user[deploy]:
  gid: deploy
  groups: [extra, missing]
exec[migrate]:
  user: deploy
cron[backup]:
  command: /bin/true
package[nginx]: {}
service[nginx]: {}
service[other]: {}
cron[as-root]:
  command: /bin/true
"""


def test_autorequires(build: Compile) -> None:
    auto = {(s, t) for s, t, kind in edges(build, AUTO) if kind == "autorequire"}
    assert auto == {
        ("directory[/srv]", "directory[/srv/app]"),
        ("directory[/srv/app]", "file[/srv/app/conf/x.ini]"),
        ("directory[/srv]", "symlink[/srv/current]"),
        ("directory[/srv/app]", "line[opt]"),
        ("file[/srv/app/conf/x.ini]", "line[opt]"),
        ("directory[/srv]", "host[db]"),
        ("user[deploy]", "directory[/srv/app]"),
        ("group[deploy]", "directory[/srv/app]"),
        ("group[deploy]", "user[deploy]"),
        ("group[extra]", "user[deploy]"),
        ("user[deploy]", "exec[migrate]"),
        ("package[nginx]", "service[nginx]"),
    }


def test_explicit_edge_replaces_the_autorequire_in_either_direction(build: Compile) -> None:
    found = edges(build, "directory[/a]: {}\nfile[/a/b]:\n  before: directory[/a]\n")
    assert found == [("file[/a/b]", "directory[/a]", "before")]
    found = edges(build, "directory[/a]:\n  notify: file[/a/b]\nfile[/a/b]: {}\n")
    assert found == [("directory[/a]", "file[/a/b]", "notifies")]


def test_root_directory_is_an_ancestor(build: Compile) -> None:
    assert edges(build, "directory[/]: {}\nfile[/x]: {}\n") == [
        ("directory[/]", "file[/x]", "autorequire")
    ]


def test_undeclared_target(build: Compile) -> None:
    with pytest.raises(RelationshipError) as caught:
        build(one_profile("package[nginx]: {}\nservice[nginx]:\n  require: package[ngnix]\n"))
    assert str(caught.value) == (
        f"profiles/p.yaml:{HEADER + 2}: service[nginx]: require names package[ngnix], which "
        "this catalog does not declare (did you mean 'package[nginx]'?)"
    )


def test_undeclared_target_left_out_by_when(build: Compile) -> None:
    with pytest.raises(RelationshipError) as caught:
        build(
            one_profile(
                "user[deploy]:\n  when: false\nexec[x]:\n  user: deploy\n  require: user[deploy]\n"
            )
        )
    assert "it is declared at profiles/p.yaml:4 but its 'when' left it out for this node" in str(
        caught.value
    )


def test_cycle_lists_every_member_with_its_location(build: Compile) -> None:
    resources = (
        "exec[a]:\n  before: exec[b]\n"
        "exec[b]:\n  notify: exec[c]\n"
        "exec[c]:\n  before: exec[a]\n"
        "exec[unrelated]: {}\n"
    )
    with pytest.raises(CycleError) as caught:
        build(one_profile(resources))
    assert str(caught.value) == (
        f"profiles/p.yaml:{HEADER}: dependency cycle among 3 resource(s); none of them can be "
        "applied first:\n"
        f"  exec[a] (profiles/p.yaml:{HEADER})\n"
        f"  -> [before] exec[b] (profiles/p.yaml:{HEADER + 2})\n"
        f"  -> [notifies] exec[c] (profiles/p.yaml:{HEADER + 4})\n"
        f"  -> [before] exec[a] (profiles/p.yaml:{HEADER})"
    )


def test_cycle_through_an_autorequire(build: Compile) -> None:
    with pytest.raises(CycleError) as caught:
        build(
            one_profile(
                "directory[/a]:\n  require: exec[x]\nfile[/a/b]: {}\n"
                "exec[x]:\n  require: file[/a/b]\n"
            )
        )
    message = str(caught.value)
    assert "[autorequire] file[/a/b]" in message
    assert "exec[x]" in message
    assert "directory[/a]" in message


def test_self_reference_is_a_cycle(build: Compile) -> None:
    with pytest.raises(CycleError, match=r"among 1 resource\(s\)"):
        build(one_profile("exec[a]:\n  require: exec[a]\n"))
