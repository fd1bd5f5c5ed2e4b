"""The host provider: one entry of a hosts file; every other line kept as it was."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from steward.engine.provider import ProviderError, Unresolved

from .harness import OTHER, Case, D, F, L, Sandbox, names, needs_other_user

HOSTS = "# static table\n127.0.0.1\tlocalhost\n\n::1 ip6-localhost ip6-loopback\n"


def host(**params: Any) -> dict[str, Any]:
    return {"name": "db", **params}


CASES = [
    Case(
        "add an entry, keeping comments and blank lines",
        host(ip="10.0.0.5", host_aliases=["db.local"], comment="database"),
        before={"etc/hosts": F(HOSTS)},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F(HOSTS + "10.0.0.5\tdb\tdb.local\t# database\n")},
    ),
    Case(
        "in sync though spaced differently",
        host(ip="10.0.0.5", host_aliases=["db.local", "db2"], comment="database"),
        before={"etc/hosts": F("10.0.0.5   db  db.local db2   #   database  \n")},
    ),
    Case(
        "ip change rewrites only that line",
        host(ip="10.0.0.6"),
        before={"etc/hosts": F(HOSTS + "10.0.0.5 db\n# after\n")},
        changes=[("ip", "10.0.0.5", "10.0.0.6")],
        after={"etc/hosts": F(HOSTS + "10.0.0.6\tdb\n# after\n")},
    ),
    Case(
        "an unmanaged comment is kept on rewrite",
        host(ip="10.0.0.6"),
        before={"etc/hosts": F("10.0.0.5 db # keep me\n")},
        changes=[("ip", "10.0.0.5", "10.0.0.6")],
        after={"etc/hosts": F("10.0.0.6\tdb\t# keep me\n")},
    ),
    Case(
        "aliases change (exactly these, in order)",
        host(ip="10.0.0.5", host_aliases=["b", "c"]),
        before={"etc/hosts": F("10.0.0.5 db a\n")},
        changes=[("host_aliases", ["a"], ["b", "c"])],
        after={"etc/hosts": F("10.0.0.5\tdb\tb c\n")},
    ),
    Case(
        "default aliases are none",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("10.0.0.5 db old-alias\n")},
        changes=[("host_aliases", ["old-alias"], [])],
        after={"etc/hosts": F("10.0.0.5\tdb\n")},
    ),
    Case(
        "comment change",
        host(ip="10.0.0.5", comment="new note"),
        before={"etc/hosts": F("10.0.0.5 db # old note\n")},
        changes=[("comment", "old note", "new note")],
        after={"etc/hosts": F("10.0.0.5\tdb\t# new note\n")},
    ),
    Case(
        "comment added",
        host(ip="10.0.0.5", comment="note"),
        before={"etc/hosts": F("10.0.0.5 db\n")},
        changes=[("comment", None, "note")],
        after={"etc/hosts": F("10.0.0.5\tdb\t# note\n")},
    ),
    Case(
        "several properties at once, in property order",
        host(ip="10.0.0.9", host_aliases=["x"], comment="c"),
        before={"etc/hosts": F("10.0.0.5 db\n")},
        changes=[("ip", "10.0.0.5", "10.0.0.9"), ("host_aliases", [], ["x"]),
                 ("comment", None, "c")],
        after={"etc/hosts": F("10.0.0.9\tdb\tx\t# c\n")},
    ),
    Case(
        "the same IPv6 address written differently is in sync",
        host(ip="0:0::1"),
        before={"etc/hosts": F("::1 db\n")},
    ),
    Case(
        "a name that is only an alias elsewhere is not the entry",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("10.0.0.1 gateway db\n")},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F("10.0.0.1 gateway db\n10.0.0.5\tdb\n")},
    ),
    Case(
        "commented-out entries are not entries",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("#10.0.0.5 db\n")},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F("#10.0.0.5 db\n10.0.0.5\tdb\n")},
    ),
    Case(
        "append to a file without a trailing newline",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("127.0.0.1 localhost")},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F("127.0.0.1 localhost\n10.0.0.5\tdb\n")},
    ),
    Case(
        "absent removes every entry with the name",
        host(ensure="absent"),
        before={"etc/hosts": F(HOSTS + "10.0.0.5 db\n10.0.0.7\tdb other\n")},
        changes=[("ensure", "present", "absent")],
        after={"etc/hosts": F(HOSTS)},
    ),
    Case(
        "absent and not there",
        host(ensure="absent"),
        before={"etc/hosts": F(HOSTS)},
    ),
    Case(
        "absent with no hosts file",
        host(ensure="absent"),
        before={"etc": D()},
    ),
    Case(
        "create the target when missing",
        host(ip="10.0.0.5", target="/etc/hosts.d/extra"),
        before={"etc/hosts.d": D()},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts.d/extra": F("10.0.0.5\tdb\n", 0o644)},
    ),
    Case(
        "the target's parent must exist",
        host(ip="10.0.0.5"),
        error=r"^parent directory /etc does not exist$",
        error_type=Unresolved,
    ),
    Case(
        "mode is preserved",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("", 0o600)},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F("10.0.0.5\tdb\n", 0o600)},
    ),
    Case(
        "unicode comments elsewhere survive",
        host(ip="10.0.0.5"),
        before={"etc/hosts": F("# grüße ✓\n10.0.0.4 db\n")},
        changes=[("ip", "10.0.0.4", "10.0.0.5")],
        after={"etc/hosts": F("# grüße ✓\n10.0.0.5\tdb\n")},
    ),
    Case(
        "invalid address is refused before writing",
        host(ip="10.0.0.256"),
        before={"etc/hosts": F(HOSTS)},
        error="'ip' '10.0.0.256' is not an IPv4 or IPv6 address",
    ),
    Case(
        "ip is required",
        host(),
        before={"etc/hosts": F(HOSTS)},
        error="'ip' is required",
    ),
    Case(
        "an alias with a space is refused",
        host(ip="10.0.0.5", host_aliases=["a b"]),
        before={"etc/hosts": F(HOSTS)},
        error="host name 'a b' may not",
    ),
    Case(
        "a symlinked target is refused",
        host(ip="10.0.0.5"),
        before={"etc/hosts": L("hosts.real"), "etc/hosts.real": F(HOSTS)},
        error="is a symlink",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_host_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("host", case)


@needs_other_user
def test_owner_is_preserved(sandbox: Sandbox) -> None:
    assert OTHER is not None
    uid, _, gid, _ = OTHER
    sandbox.run("host", Case(
        "owner", host(ip="10.0.0.5"), before={"etc/hosts": F(HOSTS, 0o644, uid, gid)},
        changes=[("ensure", "absent", "present")],
        after={"etc/hosts": F(HOSTS + "10.0.0.5\tdb\n", 0o644, uid, gid)},
    ))


def test_write_is_atomic(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/hosts"
    target.write_text(HOSTS)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((str(Path(src).parent), str(dst)))
        assert target.read_text() == HOSTS
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    provider = sandbox.provider("host", host(ip="10.0.0.5"))
    provider.sync(provider.check())
    assert renames == [(str(target.parent), str(target))]
    assert names(target.parent) == ["hosts"]


def test_sensitive_comment_is_redacted(sandbox: Sandbox) -> None:
    changes, _ = sandbox.run("host", Case(
        "secret", host(ip="10.0.0.5", comment="ticket-SECRET-2"),
        before={"etc/hosts": F("10.0.0.5 db # ticket-SECRET-1\n")},
        changes=[("comment", "[redacted]", "[redacted]")],
        after={"etc/hosts": F("10.0.0.5\tdb\t# ticket-SECRET-2\n")},
        sensitive=frozenset({"comment"}),
    ))
    assert "SECRET" not in repr(changes)


def test_unreadable_target_is_a_provider_error(sandbox: Sandbox) -> None:
    (sandbox.root / "etc/hosts").mkdir(parents=True)
    with pytest.raises(ProviderError, match="is a directory, not a regular file"):
        sandbox.provider("host", host(ip="10.0.0.5")).check()
