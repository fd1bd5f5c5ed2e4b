"""The directory provider: existence, ownership, mode, removal and purge."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest

from steward.engine.provider import ProviderError, Unresolved

from .harness import GROUP, OTHER, USER, Case, D, F, L, Sandbox, needs_other_user

P = "/srv/app"


def directory(**params: Any) -> dict[str, Any]:
    return {"path": P, **params}


CASES = [
    Case(
        "create",
        directory(),
        before={"srv": D()},
        changes=[("ensure", "absent", "present")],
        after={"srv/app": D(0o755)},
    ),
    Case(
        "create with mode, owner and group",
        directory(mode="0750", owner=USER, group=GROUP),
        before={"srv": D()},
        changes=[("ensure", "absent", "present"), ("owner", None, USER),
                 ("group", None, GROUP), ("mode", None, "0750")],
        after={"srv/app": D(0o750)},
    ),
    Case(
        "create with setgid",
        directory(mode="2775"),
        before={"srv": D()},
        changes=[("ensure", "absent", "present"), ("mode", None, "2775")],
        after={"srv/app": D(0o2775)},
    ),
    Case(
        "in sync",
        directory(mode="0700", owner=USER, group=GROUP),
        before={"srv/app": D(0o700)},
    ),
    Case(
        "mode change",
        directory(mode="0700"),
        before={"srv/app/file": F("x")},
        changes=[("mode", "0755", "0700")],
        after={"srv/app": D(0o700), "srv/app/file": F("x")},
    ),
    Case(
        "unmanaged mode is left alone",
        directory(),
        before={"srv/app": D(0o711)},
    ),
    Case(
        "missing parent is unresolved (only the leaf is created)",
        directory(),
        error=r"^parent directory /srv does not exist$",
        error_type=Unresolved,
    ),
    Case(
        "a file in the way",
        directory(),
        before={"srv/app": F("x")},
        error=r"/srv/app is a regular file, not a directory",
    ),
    Case(
        "a symlink in the way",
        directory(),
        before={"srv/app": L("/elsewhere"), "srv/other": D()},
        error=r"/srv/app is a symlink, not a directory",
    ),
    Case(
        "absent removes an empty directory",
        directory(ensure="absent"),
        before={"srv/app": D(), "srv/keep": F("x")},
        changes=[("ensure", "present", "absent")],
        after={"srv/keep": F("x")},
    ),
    Case(
        "absent refuses a non-empty directory without force",
        directory(ensure="absent"),
        before={"srv/app/data": F("x")},
        error=r"/srv/app is not empty \(1 entry\); set force",
    ),
    Case(
        "absent with force removes the contents too",
        directory(ensure="absent", force=True),
        before={"srv/app/data/deep/file": F("x"), "srv/app/link": L("/etc"),
                "srv/keep": F("k")},
        changes=[("ensure", "present", "absent")],
        after={"srv/keep": F("k")},
    ),
    Case(
        "absent and missing",
        directory(ensure="absent"),
        before={"srv": D()},
    ),
    Case(
        "absent refuses a file",
        directory(ensure="absent"),
        before={"srv/app": F("x")},
        error="is a regular file, not a directory; a directory resource will not remove it",
    ),
    Case(
        "purge removes unmanaged entries at any depth, keeping managed paths and ancestors",
        directory(purge=True),
        before={
            "srv/app/managed.conf": F("m"),
            "srv/app/stray.conf": F("s"),
            "srv/app/stray-dir/inner/file": F("i"),
            "srv/app/sub/keep": F("k"),
            "srv/app/sub/junk": F("j"),
            "srv/app/deep/x/y/managed": F("m"),
            "srv/app/deep/x/other": F("o"),
            "srv/app/deep/z": D(),
            "srv/app/.hidden": F("h"),
            "srv/sibling": F("outside the purged directory"),
        },
        managed=("/srv/app", "/srv/app/managed.conf", "/srv/app/sub", "/srv/app/sub/keep",
                 "/srv/app/deep/x/y/managed", "/srv/sibling", "/etc/unrelated"),
        changes=[("purge", [".hidden", "deep/x/other", "deep/z/", "stray-dir/", "stray.conf",
                            "sub/junk"], [])],
        after={
            "srv/app/managed.conf": F("m"),
            "srv/app/sub/keep": F("k"),
            "srv/app/deep/x/y/managed": F("m"),
            "srv/sibling": F("outside the purged directory"),
        },
    ),
    Case(
        "purge removes a symlink without following it",
        directory(purge=True),
        before={"srv/app/link": L("../target"), "srv/target/precious": F("p")},
        managed=("/srv/app",),
        changes=[("purge", ["link"], [])],
        after={"srv/app": D(), "srv/target/precious": F("p")},
    ),
    Case(
        "purge does not descend into a managed symlink",
        directory(purge=True),
        before={"srv/app/link": L("../target"), "srv/target/precious": F("p")},
        managed=("/srv/app", "/srv/app/link"),
    ),
    Case(
        "purge with only managed entries",
        directory(purge=True),
        before={"srv/app/a": F("a"), "srv/app/b/c": F("c")},
        managed=("/srv/app/a", "/srv/app/b/c"),
    ),
    Case(
        "purge matches managed paths written unnormalised",
        directory(purge=True, path="/srv/app/"),
        before={"srv/app/a": F("a"), "srv/app/b": F("b")},
        managed=("/srv//app/./a",),
        changes=[("purge", ["b"], [])],
        after={"srv/app/a": F("a")},
    ),
    Case(
        "purge of a directory still to be created",
        directory(purge=True),
        before={"srv": D()},
        changes=[("ensure", "absent", "present")],
        after={"srv/app": D()},
    ),
    Case(
        "mode before purge, in property order",
        directory(purge=True, mode="0750"),
        before={"srv/app/stray": F("s")},
        changes=[("mode", "0755", "0750"), ("purge", ["stray"], [])],
        after={"srv/app": D(0o750)},
    ),
    Case(
        "purge with unicode names",
        directory(purge=True),
        before={"srv/app/grüße.txt": F("x"), "srv/app/日本": F("y")},
        managed=("/srv/app/日本",),
        changes=[("purge", ["grüße.txt"], [])],
        after={"srv/app/日本": F("y")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_directory_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("directory", case)


def _other_cases() -> list[Case]:
    if OTHER is None:
        return []
    uid, user, gid, group = OTHER
    return [
        Case(
            "chown",
            directory(owner=user, group=group),
            before={"srv/app": D()},
            changes=[("owner", USER, user), ("group", GROUP, group)],
            after={"srv/app": D(uid=uid, gid=gid)},
        ),
        Case(
            "create owned by another user",
            directory(owner=user, group=gid, mode="0700"),
            before={"srv": D()},
            changes=[("ensure", "absent", "present"), ("owner", None, user),
                     ("group", None, group), ("mode", None, "0700")],
            after={"srv/app": D(0o700, uid, gid)},
        ),
    ]


@needs_other_user
@pytest.mark.parametrize("case", _other_cases(), ids=lambda c: c.id)
def test_directory_ownership_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("directory", case)


def test_purge_logs_each_removal(sandbox: Sandbox) -> None:
    _, ctx = sandbox.run("directory", Case(
        "log", directory(purge=True), before={"srv/app/a": F(), "srv/app/b/c": F()},
        changes=[("purge", ["a", "b/"], [])], after={"srv/app": D()},
    ))
    assert [e.message for e in ctx.logs] == ["purged /srv/app/a", "purged /srv/app/b/"]


def test_new_directory_mode_ignores_umask_and_is_never_looser(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "srv").mkdir()
    seen: list[int] = []
    real_chmod = os.chmod

    def spy(path: Any, mode: int, **kwargs: Any) -> None:
        seen.append(stat.S_IMODE(os.lstat(path).st_mode))
        real_chmod(path, mode, **kwargs)

    monkeypatch.setattr(os, "chmod", spy)
    old = os.umask(0o077)
    try:
        provider = sandbox.provider("directory", directory())
        provider.sync(provider.check())
    finally:
        os.umask(old)
    assert seen == [0o700], "created restrictive, then opened up"
    assert stat.S_IMODE((sandbox.root / "srv/app").stat().st_mode) == 0o755


def test_sync_reports_a_vanished_parent(sandbox: Sandbox) -> None:
    (sandbox.root / "srv").mkdir()
    provider = sandbox.provider("directory", directory())
    changes = provider.check()
    (sandbox.root / "srv").rmdir()
    with pytest.raises(ProviderError, match="parent directory /srv does not exist"):
        provider.sync(changes)


def test_desired_normalises_mode(sandbox: Sandbox) -> None:
    provider = sandbox.provider("directory", directory(mode="750", purge=True))
    assert provider.desired() == {"ensure": "present", "mode": "0750", "purge": []}
