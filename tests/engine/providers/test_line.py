"""The line provider: add, replace by regex, insert after, remove; the rest of the file intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import ProviderError, Unresolved

from .harness import OTHER, Case, D, F, L, Sandbox, names, needs_other_user

P = "/etc/cfg"


def line(**params: Any) -> dict[str, Any]:
    return {"name": "setting", "path": P, **params}


CASES = [
    Case(
        "append at the end",
        line(line="c"),
        before={"etc/cfg": F("a\nb\n")},
        changes=[("ensure", None, "c")],
        after={"etc/cfg": F("a\nb\nc\n")},
    ),
    Case(
        "already present",
        line(line="b"),
        before={"etc/cfg": F("a\nb\nc\n")},
    ),
    Case(
        "already present as the last line without a newline",
        line(line="c"),
        before={"etc/cfg": F("a\nc")},
    ),
    Case(
        "append to a file without a trailing newline",
        line(line="c"),
        before={"etc/cfg": F("a\nb")},
        changes=[("ensure", None, "c")],
        after={"etc/cfg": F("a\nb\nc\n")},
    ),
    Case(
        "append to an empty file",
        line(line="only"),
        before={"etc/cfg": F("")},
        changes=[("ensure", None, "only")],
        after={"etc/cfg": F("only\n")},
    ),
    Case(
        "a partial match is not the line",
        line(line="Port 22"),
        before={"etc/cfg": F("Port 222\n")},
        changes=[("ensure", None, "Port 22")],
        after={"etc/cfg": F("Port 222\nPort 22\n")},
    ),
    Case(
        "replace the matching line",
        line(line="Port 2222", match=r"^#?Port\b"),
        before={"etc/cfg": F("# ssh\nPort 22\nX11Forwarding no\n")},
        changes=[("line", "Port 22", "Port 2222")],
        after={"etc/cfg": F("# ssh\nPort 2222\nX11Forwarding no\n")},
    ),
    Case(
        "replace a commented default",
        line(line="PermitRootLogin no", match=r"^#?\s*PermitRootLogin"),
        before={"etc/cfg": F("#PermitRootLogin prohibit-password\nUsePAM yes\n")},
        changes=[("line", "#PermitRootLogin prohibit-password", "PermitRootLogin no")],
        after={"etc/cfg": F("PermitRootLogin no\nUsePAM yes\n")},
    ),
    Case(
        "match in sync",
        line(line="Port 2222", match=r"^#?Port\b"),
        before={"etc/cfg": F("Port 2222\nother\n")},
    ),
    Case(
        "match finds nothing: append",
        line(line="Port 2222", match=r"^#?Port\b"),
        before={"etc/cfg": F("other\n")},
        changes=[("ensure", None, "Port 2222")],
        after={"etc/cfg": F("other\nPort 2222\n")},
    ),
    Case(
        "exact line present but another match differs: the conflict goes, no duplicate",
        line(line="Port 22", match=r"^#?Port\b"),
        before={"etc/cfg": F("#Port 22\nPort 22\n")},
        changes=[("line", "#Port 22", "Port 22")],
        after={"etc/cfg": F("Port 22\n")},
    ),
    Case(
        "several differing matches: first replaced, the others removed",
        line(line="Port 22", match=r"^#?Port\b"),
        before={"etc/cfg": F("a\nPort 1\nb\n#Port 2\nc\n")},
        changes=[("line", "Port 1", "Port 22")],
        after={"etc/cfg": F("a\nPort 22\nb\nc\n")},
    ),
    Case(
        "replace keeps a missing trailing newline",
        line(line="k=2", match="^k="),
        before={"etc/cfg": F("a\nk=1")},
        changes=[("line", "k=1", "k=2")],
        after={"etc/cfg": F("a\nk=2")},
    ),
    Case(
        "insert after the last line matching 'after'",
        line(line="new", after=r"^\[main\]"),
        before={"etc/cfg": F("[main]\na\n[main]\nb\n[other]\nc\n")},
        changes=[("ensure", None, "new")],
        after={"etc/cfg": F("[main]\na\n[main]\nnew\nb\n[other]\nc\n")},
    ),
    Case(
        "insert after, keeping a missing trailing newline",
        line(line="new", after="^a$"),
        before={"etc/cfg": F("a\nb")},
        changes=[("ensure", None, "new")],
        after={"etc/cfg": F("a\nnew\nb")},
    ),
    Case(
        "insert after the last line adds the trailing newline",
        line(line="new", after="^b$"),
        before={"etc/cfg": F("a\nb")},
        changes=[("ensure", None, "new")],
        after={"etc/cfg": F("a\nb\nnew\n")},
    ),
    Case(
        "'after' matches nothing: append",
        line(line="new", after="^nothing$"),
        before={"etc/cfg": F("a\n")},
        changes=[("ensure", None, "new")],
        after={"etc/cfg": F("a\nnew\n")},
    ),
    Case(
        "absent removes the exact line",
        line(line="b", ensure="absent"),
        before={"etc/cfg": F("a\nb\nc\nb\n")},
        changes=[("ensure", "b\nb", None)],
        after={"etc/cfg": F("a\nc\n")},
    ),
    Case(
        "absent removes lines matching 'match'",
        line(match="^debug", ensure="absent"),
        before={"etc/cfg": F("debug=1\nkeep\ndebug_level=3\n")},
        changes=[("ensure", "debug=1\ndebug_level=3", None)],
        after={"etc/cfg": F("keep\n")},
    ),
    Case(
        "absent and not there",
        line(line="zzz", ensure="absent"),
        before={"etc/cfg": F("a\n")},
    ),
    Case(
        "absent of the only line leaves an empty file",
        line(line="a", ensure="absent"),
        before={"etc/cfg": F("a")},
        changes=[("ensure", "a", None)],
        after={"etc/cfg": F("")},
    ),
    Case(
        "unicode lines",
        line(line="grüße=✓", match="^grüße="),
        before={"etc/cfg": F("日本=1\ngrüße=✗\n")},
        changes=[("line", "grüße=✗", "grüße=✓")],
        after={"etc/cfg": F("日本=1\ngrüße=✓\n")},
    ),
    Case(
        "bytes that are not UTF-8 elsewhere in the file survive",
        line(line="new"),
        before={"etc/cfg": F(b"caf\xe9\n\x00bin\n")},
        changes=[("ensure", None, "new")],
        after={"etc/cfg": F(b"caf\xe9\n\x00bin\nnew\n")},
    ),
    Case(
        "CRLF lines are left as they are",
        line(line="c"),
        before={"etc/cfg": F("a\r\nb\r\n")},
        changes=[("ensure", None, "c")],
        after={"etc/cfg": F("a\r\nb\r\nc\n")},
    ),
    Case(
        "mode is preserved",
        line(line="c"),
        before={"etc/cfg": F("a\n", 0o600)},
        changes=[("ensure", None, "c")],
        after={"etc/cfg": F("a\nc\n", 0o600)},
    ),
    Case(
        "a symlinked file is edited through the link, which stays",
        line(line="c"),
        before={"etc/cfg": L("real/cfg"), "etc/real/cfg": F("a\n", 0o640)},
        changes=[("ensure", None, "c")],
        after={"etc/cfg": L("real/cfg"), "etc/real/cfg": F("a\nc\n", 0o640)},
    ),
    Case(
        "a symlink leading outside the root is refused",
        line(line="c"),
        before={"etc/cfg": L("/etc/passwd")},
        error="leads outside the root",
    ),
    Case(
        "missing file is unresolved",
        line(line="c"),
        before={"etc": D()},
        error=r"^file /etc/cfg does not exist$",
        error_type=Unresolved,
    ),
    Case(
        "a directory is refused",
        line(line="c"),
        before={"etc/cfg": D()},
        error="/etc/cfg is a directory, not a regular file",
    ),
    Case(
        "invalid regex",
        line(line="c", match="("),
        before={"etc/cfg": F("a\n")},
        error="'match' is not a valid regex '\\(': ",
    ),
    Case(
        "line with a newline is refused",
        line(line="a\nb"),
        before={"etc/cfg": F("a\n")},
        error="without a newline",
    ),
    Case(
        "present needs a line",
        line(match="x"),
        before={"etc/cfg": F("a\n")},
        error="'line' is required",
    ),
    Case(
        "absent needs a line or a match",
        line(ensure="absent"),
        before={"etc/cfg": F("a\n")},
        error="needs 'line' or 'match'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_line_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("line", case)


@needs_other_user
def test_owner_is_preserved(sandbox: Sandbox) -> None:
    assert OTHER is not None
    uid, _, gid, _ = OTHER
    sandbox.run("line", Case(
        "owner", line(line="c"), before={"etc/cfg": F("a\n", 0o640, uid, gid)},
        changes=[("ensure", None, "c")], after={"etc/cfg": F("a\nc\n", 0o640, uid, gid)},
    ))


def test_sensitive_line_is_redacted(sandbox: Sandbox) -> None:
    changes, ctx = sandbox.run("line", Case(
        "secret", line(line="password=new-secret", match="^password="),
        before={"etc/cfg": F("user=a\npassword=old-secret\n")},
        changes=[("line", REDACTED, REDACTED)],
        after={"etc/cfg": F("user=a\npassword=new-secret\n")},
        sensitive=frozenset({"line"}),
    ))
    text = repr(changes) + repr(ctx.logs)
    assert "secret" not in text
    assert changes[0].diff is None
    provider = sandbox.provider("line", line(line="password=x"), sensitive={"line"})
    assert provider.desired() == {"ensure": "present", "line": REDACTED}


def test_sensitive_line_added_and_removed_is_redacted(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/cfg").write_text("a\n")
    add = sandbox.provider("line", line(line="token=s3cr3t"), sensitive={"line"})
    [change] = add.check()
    assert (change.old, change.new) == (None, REDACTED)
    assert "s3cr3t" not in change.message
    add.sync([change])
    remove = sandbox.provider("line", line(line="token=s3cr3t", ensure="absent"),
                              sensitive={"line"})
    [change] = remove.check()
    assert (change.old, change.new) == (REDACTED, None)
    assert "s3cr3t" not in repr(change)


def test_write_is_atomic(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/cfg"
    target.write_text("a\n")
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((str(Path(src).parent), str(dst)))
        assert target.read_text() == "a\n"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    provider = sandbox.provider("line", line(line="b"))
    provider.sync(provider.check())
    assert renames == [(str(target.parent), str(target))]
    assert names(target.parent) == ["cfg"]


def test_sync_replans_on_the_current_file(sandbox: Sandbox) -> None:
    (sandbox.root / "etc").mkdir()
    target = sandbox.root / "etc/cfg"
    target.write_text("a\n")
    provider = sandbox.provider("line", line(line="b"))
    changes = provider.check()
    target.write_text("a\nb\nz\n")  # someone else added it meanwhile
    provider.sync(changes)
    assert target.read_text() == "a\nb\nz\n"


def test_failed_write_raises_provider_error(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/cfg").write_text("a\n")

    def broken(src: Any, dst: Any) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", broken)
    provider = sandbox.provider("line", line(line="b"))
    changes = provider.check()
    with pytest.raises(ProviderError, match="cannot update /etc/cfg: Read-only file system"):
        provider.sync(changes)
    assert names(sandbox.root / "etc") == ["cfg"]
