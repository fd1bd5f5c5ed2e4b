"""The file provider: a table of cases, then atomicity, backups, diffs and redaction."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import ProviderError, Unresolved
from steward.engine.providers import file as file_provider_module
from steward.engine.providers import pathutil as file_module
from steward.engine.providers import provider_class
from steward.engine.providers.file import FileProvider

from .harness import GID, GROUP, OTHER, UID, USER, Case, D, F, L, Sandbox, names, needs_other_user

P = "/etc/app.conf"


def sha(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return "{sha256}" + hashlib.sha256(data).hexdigest()


def file(**params: Any) -> dict[str, Any]:
    return {"path": P, **params}


CASES = [
    Case(
        "create with content and mode",
        file(content="hello\n", mode="0600"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("hello\n")),
                 ("mode", None, "0600")],
        after={"etc/app.conf": F("hello\n", 0o600)},
    ),
    Case(
        "create without mode gets 0644",
        file(content="x"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("x"))],
        after={"etc/app.conf": F("x", 0o644)},
    ),
    Case(
        "create empty file without content",
        file(),
        before={"etc": D()},
        changes=[("ensure", "absent", "present")],
        after={"etc/app.conf": F("")},
    ),
    Case(
        "create with a three-digit mode",
        file(content="", mode="640"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("")),
                 ("mode", None, "0640")],
        after={"etc/app.conf": F("", 0o640)},
    ),
    Case(
        "in sync",
        file(content="same\n", mode="0640"),
        before={"etc/app.conf": F("same\n", 0o640)},
    ),
    Case(
        "content differs, same size",
        file(content="bbbb\n"),
        before={"etc/app.conf": F("aaaa\n")},
        changes=[("content", sha("aaaa\n"), sha("bbbb\n"))],
        after={"etc/app.conf": F("bbbb\n")},
    ),
    Case(
        "content differs in size",
        file(content="longer content\n"),
        before={"etc/app.conf": F("short\n")},
        changes=[("content", sha("short\n"), sha("longer content\n"))],
        after={"etc/app.conf": F("longer content\n")},
    ),
    Case(
        "content change keeps an unmanaged mode",
        file(content="new\n"),
        before={"etc/app.conf": F("old\n", 0o600)},
        changes=[("content", sha("old\n"), sha("new\n"))],
        after={"etc/app.conf": F("new\n", 0o600)},
    ),
    Case(
        "content and mode change together",
        file(content="new\n", mode="0640"),
        before={"etc/app.conf": F("old!\n", 0o666)},
        changes=[("content", sha("old!\n"), sha("new\n")), ("mode", "0666", "0640")],
        after={"etc/app.conf": F("new\n", 0o640)},
    ),
    Case(
        "mode only",
        file(mode="0600"),
        before={"etc/app.conf": F("keep\n", 0o644)},
        changes=[("mode", "0644", "0600")],
        after={"etc/app.conf": F("keep\n", 0o600)},
    ),
    Case(
        "setuid mode",
        file(mode="4755"),
        before={"etc/app.conf": F("#!/bin/sh\n", 0o755)},
        changes=[("mode", "0755", "4755")],
        after={"etc/app.conf": F("#!/bin/sh\n", 0o4755)},
    ),
    Case(
        "replace false leaves existing content",
        file(content="desired\n", replace=False),
        before={"etc/app.conf": F("local edit\n")},
    ),
    Case(
        "replace false still manages mode",
        file(content="desired\n", replace=False, mode="0600"),
        before={"etc/app.conf": F("local edit\n")},
        changes=[("mode", "0644", "0600")],
        after={"etc/app.conf": F("local edit\n", 0o600)},
    ),
    Case(
        "replace false creates a missing file",
        file(content="desired\n", replace=False),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("desired\n"))],
        after={"etc/app.conf": F("desired\n")},
    ),
    Case(
        "unicode content is created",
        file(content="grüße ✓ 日本\n"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("grüße ✓ 日本\n"))],
        after={"etc/app.conf": F("grüße ✓ 日本\n")},
    ),
    Case(
        "unicode content is compared as UTF-8 bytes",
        file(content="grüße ✓\n"),
        before={"etc/app.conf": F("grüße ✓\n")},
    ),
    Case(
        "unicode content differs",
        file(content="ünïcode 2\n"),
        before={"etc/app.conf": F("ünïcode 1\n")},
        changes=[("content", sha("ünïcode 1\n"), sha("ünïcode 2\n"))],
        after={"etc/app.conf": F("ünïcode 2\n")},
    ),
    Case(
        "binary content replaced by text",
        file(content="text\n"),
        before={"etc/app.conf": F(b"\x00\xff\xfe binary")},
        changes=[("content", sha(b"\x00\xff\xfe binary"), sha("text\n"))],
        after={"etc/app.conf": F("text\n")},
    ),
    Case(
        "trailing newline added",
        file(content="no newline\n"),
        before={"etc/app.conf": F("no newline")},
        changes=[("content", sha("no newline"), sha("no newline\n"))],
        after={"etc/app.conf": F("no newline\n")},
    ),
    Case(
        "a symlink in the way is replaced by a file; its target is untouched",
        file(content="real\n"),
        before={"etc/app.conf": L("other.conf"), "etc/other.conf": F("other\n")},
        changes=[("ensure", "symlink", "present"), ("content", None, sha("real\n"))],
        after={"etc/app.conf": F("real\n"), "etc/other.conf": F("other\n")},
    ),
    Case(
        "a symlink is not replaced when content is unmanaged",
        file(mode="0644"),
        before={"etc/app.conf": L("other.conf"), "etc/other.conf": F("other\n")},
        error="is a symlink; a file resource replaces it only when it manages the content",
    ),
    Case(
        "a symlink is not replaced with replace false",
        file(content="x", replace=False),
        before={"etc/app.conf": L("other.conf"), "etc/other.conf": F("other\n")},
        error="is a symlink",
    ),
    Case(
        "absent removes the file",
        file(ensure="absent", content="ignored"),
        before={"etc/app.conf": F("bye\n"), "etc/other": F("stay\n")},
        changes=[("ensure", "present", "absent")],
        after={"etc/other": F("stay\n")},
    ),
    Case(
        "absent removes a symlink, not its target",
        file(ensure="absent"),
        before={"etc/app.conf": L("other"), "etc/other": F("stay\n")},
        changes=[("ensure", "present", "absent")],
        after={"etc/other": F("stay\n")},
    ),
    Case(
        "absent and missing",
        file(ensure="absent"),
        before={"etc": D()},
    ),
    Case(
        "absent with a missing parent",
        file(ensure="absent"),
    ),
    Case(
        "absent refuses a directory",
        file(ensure="absent"),
        before={"etc/app.conf/inner": F()},
        error="is a directory",
    ),
    Case(
        "present refuses a directory",
        file(content="x"),
        before={"etc/app.conf": D()},
        error=r"/etc/app\.conf is a directory, not a regular file",
    ),
    Case(
        "missing parent is unresolved",
        file(content="x"),
        error=r"^parent directory /etc does not exist$",
        error_type=Unresolved,
    ),
    Case(
        "parent is a file",
        file(content="x"),
        before={"etc": F("not a dir")},
        error="parent directory /etc does not exist",
        error_type=Unresolved,
    ),
    Case(
        "owner and group by name, in sync",
        file(content="x", owner=USER, group=GROUP),
        before={"etc/app.conf": F("x")},
    ),
    Case(
        "owner and group by id, in sync",
        file(content="x", owner=UID, group=str(GID)),
        before={"etc/app.conf": F("x")},
    ),
    Case(
        "unknown owner is unresolved",
        file(content="x", owner="no-such-user-steward"),
        before={"etc/app.conf": F("x")},
        error="user 'no-such-user-steward' does not exist",
        error_type=Unresolved,
    ),
    Case(
        "unknown group is unresolved, even for a new file",
        file(content="x", group="no-such-group-steward"),
        before={"etc": D()},
        error="group 'no-such-group-steward' does not exist",
        error_type=Unresolved,
    ),
    Case(
        "create with the current owner and group",
        file(content="x", owner=USER, group=GROUP, mode="0640"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("x")),
                 ("owner", None, USER), ("group", None, GROUP), ("mode", None, "0640")],
        after={"etc/app.conf": F("x", 0o640)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_file_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("file", case)


def _other_cases() -> list[Case]:
    if OTHER is None:
        return []
    uid, user, gid, group = OTHER
    return [
        Case(
            "chown to another user and group",
            file(owner=user, group=group),
            before={"etc/app.conf": F("x")},
            changes=[("owner", USER, user), ("group", GROUP, group)],
            after={"etc/app.conf": F("x", uid=uid, gid=gid)},
        ),
        Case(
            "chown by numeric id, reported by name",
            file(owner=uid),
            before={"etc/app.conf": F("x")},
            changes=[("owner", USER, user)],
            after={"etc/app.conf": F("x", uid=uid)},
        ),
        Case(
            "back to the current user",
            file(owner=USER, group=GROUP),
            before={"etc/app.conf": F("x", uid=uid, gid=gid)},
            changes=[("owner", user, USER), ("group", group, GROUP)],
            after={"etc/app.conf": F("x")},
        ),
        Case(
            "create owned by another user",
            file(content="secret-ish\n", owner=user, group=group, mode="0600"),
            before={"etc": D()},
            changes=[("ensure", "absent", "present"), ("content", None, sha("secret-ish\n")),
                     ("owner", None, user), ("group", None, group), ("mode", None, "0600")],
            after={"etc/app.conf": F("secret-ish\n", 0o600, uid, gid)},
        ),
        Case(
            "content change keeps an unmanaged owner",
            file(content="new\n"),
            before={"etc/app.conf": F("old\n", 0o640, uid, gid)},
            changes=[("content", sha("old\n"), sha("new\n"))],
            after={"etc/app.conf": F("new\n", 0o640, uid, gid)},
        ),
        Case(
            "chown keeps a setuid bit when mode is unmanaged",
            file(owner=user),
            before={"etc/app.conf": F("x", 0o4755)},
            changes=[("owner", USER, user)],
            after={"etc/app.conf": F("x", 0o4755, uid=uid)},
        ),
        Case(
            "unknown uid is accepted and shown as a number",
            file(owner=54321),
            before={"etc/app.conf": F("x")},
            changes=[("owner", USER, "54321")],
            after={"etc/app.conf": F("x", uid=54321)},
        ),
    ]


@needs_other_user
@pytest.mark.parametrize("case", _other_cases(), ids=lambda c: c.id)
def test_file_ownership_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("file", case)


# --- atomicity --------------------------------------------------------------------------------


@needs_other_user
def test_temp_file_has_final_owner_and_mode_before_the_rename(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert OTHER is not None
    uid, user, gid, _ = OTHER
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/app.conf"
    target.write_text("old\n")
    renames: list[tuple[str, str, int, int, int, bytes]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        st = os.lstat(src)
        renames.append((str(src), str(dst), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    provider = sandbox.provider("file", file(content="new\n", owner=user, mode="0640",
                                             backup=False))
    provider.sync(provider.check())
    assert len(renames) == 1
    src, dst, mode, st_uid, st_gid, data = renames[0]
    assert str(Path(src).parent) == str(sandbox.root / "etc")
    assert dst == str(target)
    assert (mode, st_uid, st_gid, data) == (0o640, uid, GID, b"new\n")
    assert gid != GID or uid != UID
    assert names(sandbox.root / "etc") == ["app.conf"]


def test_sync_writes_through_a_rename_in_the_same_directory(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/app.conf"
    target.write_text("old\n")
    inode = target.stat().st_ino
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((str(src), str(dst)))
        assert Path(src).read_bytes() == b"new content\n"
        assert target.read_bytes() == b"old\n", "the old file stays whole until the rename"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    provider = sandbox.provider("file", file(content="new content\n", backup=False))
    provider.sync(provider.check())
    assert [(str(Path(s).parent), d) for s, d in renames] == [(str(target.parent), str(target))]
    assert Path(renames[0][0]).name.startswith(".app.conf.steward-")
    assert target.stat().st_ino != inode
    assert names(target.parent) == ["app.conf"]


def test_failed_write_leaves_the_original_and_no_temp_file(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/app.conf"
    target.write_text("original\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    provider = sandbox.provider("file", file(content="replacement\n", backup=False))
    changes = provider.check()
    with pytest.raises(ProviderError, match=r"cannot update /etc/app\.conf: No space left"):
        provider.sync(changes)
    assert target.read_text() == "original\n"
    assert names(target.parent) == ["app.conf"]


def test_failed_rename_leaves_no_temp_file(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()

    def broken_replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    provider = sandbox.provider("file", file(content="x"))
    changes = provider.check()
    with pytest.raises(ProviderError, match="Permission denied"):
        provider.sync(changes)
    assert names(sandbox.root / "etc") == []


def test_new_file_mode_ignores_umask(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    old = os.umask(0o077)
    try:
        provider = sandbox.provider("file", file(content="x"))
        provider.sync(provider.check())
    finally:
        os.umask(old)
    assert stat.S_IMODE((sandbox.root / "etc/app.conf").stat().st_mode) == 0o644


# --- backups ---------------------------------------------------------------------------------


def test_replaced_content_is_backed_up_by_hash(sandbox: Sandbox) -> None:
    _, ctx = sandbox.run("file", Case(
        "backup", file(content="new\n"), before={"etc/app.conf": F("old content\n")},
        changes=[("content", sha("old content\n"), sha("new\n"))],
        after={"etc/app.conf": F("new\n")},
    ))
    digest = hashlib.sha256(b"old content\n").hexdigest()
    backup = sandbox.state / "backup" / digest
    assert backup.read_bytes() == b"old content\n"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    assert [e.message for e in ctx.logs] == [
        f"backed up the previous content of /etc/app.conf to {backup}"
    ]
    assert ctx.logs[0].source == "file[/etc/app.conf]"


def test_backup_is_content_addressed_and_written_once(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/app.conf"
    for content in ("same old\n", "same old\n"):
        target.write_text(content)
        provider = sandbox.provider("file", file(content="new\n"))
        provider.sync(provider.check())
    assert names(sandbox.state / "backup") == [hashlib.sha256(b"same old\n").hexdigest()]


def test_removed_file_is_backed_up(sandbox: Sandbox) -> None:
    sandbox.run("file", Case(
        "remove", file(ensure="absent"), before={"etc/app.conf": F("last words\n")},
        changes=[("ensure", "present", "absent")], after={"etc": D()},
    ))
    assert (sandbox.state / "backup" / hashlib.sha256(b"last words\n").hexdigest()).exists()


def test_backup_false_keeps_nothing(sandbox: Sandbox) -> None:
    _, ctx = sandbox.run("file", Case(
        "no backup", file(content="new\n", backup=False), before={"etc/app.conf": F("old\n")},
        changes=[("content", sha("old\n"), sha("new\n"))], after={"etc/app.conf": F("new\n")},
    ))
    assert not (sandbox.state / "backup").exists()
    assert ctx.logs == []


# --- diffs -----------------------------------------------------------------------------------


def test_change_carries_a_unified_diff_with_the_path(sandbox: Sandbox) -> None:
    changes, _ = sandbox.run("file", Case(
        "diff", file(content="a\nB\nc\n"), before={"etc/app.conf": F("a\nb\nc\n")},
        changes=[("content", sha("a\nb\nc\n"), sha("a\nB\nc\n"))],
        after={"etc/app.conf": F("a\nB\nc\n")},
    ))
    assert changes[0].diff == (
        "--- /etc/app.conf\n+++ /etc/app.conf\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    )
    old, new = sha("a\nb\nc\n"), sha("a\nB\nc\n")
    assert changes[0].message == f"changed content '{old}' to '{new}'"


def test_diff_marks_a_missing_final_newline(sandbox: Sandbox) -> None:
    changes, _ = sandbox.run("file", Case(
        "newline", file(content="x\n"), before={"etc/app.conf": F("x")},
        changes=[("content", sha("x"), sha("x\n"))], after={"etc/app.conf": F("x\n")},
    ))
    assert changes[0].diff == (
        "--- /etc/app.conf\n+++ /etc/app.conf\n@@ -1 +1 @@\n-x\n"
        "\\ No newline at end of file\n+x\n"
    )


def test_new_file_diff_is_against_dev_null(sandbox: Sandbox) -> None:
    changes, _ = sandbox.run("file", Case(
        "new", file(content="ü\n"), before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, sha("ü\n"))],
        after={"etc/app.conf": F("ü\n")},
    ))
    assert changes[1].diff == "--- /dev/null\n+++ /etc/app.conf\n@@ -0,0 +1 @@\n+ü\n"


def test_no_diff_for_binary_or_undecodable_content(sandbox: Sandbox) -> None:
    for old in (b"\x00\x01\x02", b"\xff\xfe latin-1 \xe9"):
        (sandbox.root / "etc").mkdir(exist_ok=True)
        (sandbox.root / "etc/app.conf").write_bytes(old)
        [change] = sandbox.provider("file", file(content="text\n")).check()
        assert change.diff is None
        assert change.old == sha(old)


def test_huge_content_gets_a_note_instead_of_a_diff(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/app.conf").write_text("small\n")
    big = "line\n" * (file_module.DIFF_MAX_BYTES // 5 + 1)
    [change] = sandbox.provider("file", file(content=big)).check()
    assert change.diff is not None
    assert change.diff.startswith("--- /etc/app.conf\n+++ /etc/app.conf\n(diff omitted: ")
    assert len(change.diff) < 200


def test_long_diff_is_truncated_with_a_note(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/app.conf").write_text("".join(f"old {i}\n" for i in range(3000)))
    [change] = sandbox.provider("file", file(content="new\n")).check()
    assert change.diff is not None
    lines = change.diff.splitlines()
    assert len(lines) == file_module.DIFF_MAX_LINES + 1
    assert lines[-1] == "(diff truncated)"


# --- sensitive content -----------------------------------------------------------------------

SECRET = "password=hunter2-very-secret\n"


def _assert_no_leak(sandbox: Sandbox, changes: list[Any], logs: list[Any]) -> None:
    secret_hash = hashlib.sha256(SECRET.encode()).hexdigest()
    old_hash = hashlib.sha256(b"password=old-secret\n").hexdigest()
    text = repr(changes) + repr(logs)
    for leak in ("hunter2", "old-secret", secret_hash, old_hash):
        assert leak not in text
    for change in changes:
        assert change.diff is None


def test_sensitive_content_change_is_redacted(sandbox: Sandbox) -> None:
    changes, ctx = sandbox.run("file", Case(
        "sensitive change", file(content=SECRET, mode="0600"),
        before={"etc/app.conf": F("password=old-secret\n", 0o600)},
        changes=[("content", REDACTED, REDACTED)],
        after={"etc/app.conf": F(SECRET, 0o600)},
        sensitive=frozenset({"content"}),
    ))
    _assert_no_leak(sandbox, changes, ctx.logs)
    # The old content is still kept, under the state directory only.
    assert (sandbox.state / "backup" / hashlib.sha256(b"password=old-secret\n").hexdigest()
            ).read_text() == "password=old-secret\n"


def test_sensitive_content_creation_is_redacted(sandbox: Sandbox) -> None:
    changes, ctx = sandbox.run("file", Case(
        "sensitive create", file(content=SECRET, mode="0600"), before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("content", None, REDACTED),
                 ("mode", None, "0600")],
        after={"etc/app.conf": F(SECRET, 0o600)},
        sensitive=frozenset({"content"}),
    ))
    _assert_no_leak(sandbox, changes, ctx.logs)


def test_sensitive_content_desired_is_redacted(sandbox: Sandbox) -> None:
    provider = sandbox.provider("file", file(content=SECRET, mode="600"),
                                sensitive={"content"})
    assert provider.desired() == {"ensure": "present", "content": REDACTED, "mode": "0600"}
    plain = sandbox.provider("file", file(content="x", owner="root"))
    assert plain.desired() == {"ensure": "present", "content": sha("x"), "owner": "root"}


# --- other -----------------------------------------------------------------------------------


def test_fifo_in_the_way_is_refused(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    os.mkfifo(sandbox.root / "etc/app.conf")
    with pytest.raises(ProviderError, match="is a fifo, not a regular file"):
        sandbox.provider("file", file(content="x")).check()


def test_unrooted_context_uses_paths_as_given(tmp_path: Path) -> None:
    target = tmp_path / "plain.conf"
    target.write_text("x")
    sandbox = Sandbox(root=tmp_path, state=tmp_path / "state")
    ctx = sandbox.context()
    ctx.root = None
    provider = sandbox.provider("file", {"path": str(target), "content": "y"}, ctx=ctx)
    provider.sync(provider.check())
    assert target.read_text() == "y"


def test_id_lookups_are_cached_in_the_run(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/app.conf").write_text("x")
    ctx = sandbox.context()
    provider = sandbox.provider("file", file(owner=USER, group=GROUP), ctx=ctx)
    assert provider.check() == []
    assert ctx.cache["steward.ids.uid_by_name"] == {USER: UID}
    assert ctx.cache["steward.ids.gid_by_name"] == {GROUP: GID}


def test_in_sync_check_reads_only_when_sizes_match(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/app.conf").write_text("same\n")
    reads: list[str] = []
    real_read = file_provider_module.read_bytes

    def counting(path: str, size: int = 0) -> bytes:
        reads.append(path)
        return real_read(path, size)

    monkeypatch.setattr(file_provider_module, "read_bytes", counting)
    assert sandbox.provider("file", file(content="same\n")).check() == []
    assert len(reads) == 1
    assert sandbox.provider("file", file(mode="0644")).check() == []
    assert len(reads) == 1, "no content managed: no read"
    [change] = sandbox.provider("file", file(content="other size\n"),
                                sensitive={"content"}).check()
    assert len(reads) == 1, "sizes differ and the content is secret: nothing to read"
    assert change.old == REDACTED


def test_provider_class_is_registered() -> None:
    assert provider_class("file") is FileProvider
