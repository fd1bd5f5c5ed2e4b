"""The symlink provider: creation, retargeting (atomically), things in the way, removal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from steward.engine.provider import ProviderError, Unresolved

from .harness import Case, D, F, L, Sandbox, names

P = "/etc/link"


def link(**params: Any) -> dict[str, Any]:
    return {"path": P, **params}


CASES = [
    Case(
        "create",
        link(target="/etc/real"),
        before={"etc/real": F("r")},
        changes=[("ensure", "absent", "present"), ("target", None, "/etc/real")],
        after={"etc/real": F("r"), "etc/link": L("/etc/real")},
    ),
    Case(
        "create a relative, dangling link",
        link(target="../var/nowhere"),
        before={"etc": D()},
        changes=[("ensure", "absent", "present"), ("target", None, "../var/nowhere")],
        after={"etc/link": L("../var/nowhere")},
    ),
    Case(
        "in sync",
        link(target="real"),
        before={"etc/link": L("real"), "etc/real": F()},
    ),
    Case(
        "wrong target",
        link(target="new"),
        before={"etc/link": L("old"), "etc/old": F("o"), "etc/new": F("n")},
        changes=[("target", "old", "new")],
        after={"etc/link": L("new"), "etc/old": F("o"), "etc/new": F("n")},
    ),
    Case(
        "unicode target",
        link(target="/opt/grüße"),
        before={"etc/link": L("/opt/old")},
        changes=[("target", "/opt/old", "/opt/grüße")],
        after={"etc/link": L("/opt/grüße")},
    ),
    Case(
        "a regular file in the way without force",
        link(target="t"),
        before={"etc/link": F("data")},
        error="is a regular file; set force to replace it",
    ),
    Case(
        "a regular file in the way with force",
        link(target="t", force=True),
        before={"etc/link": F("data")},
        changes=[("ensure", "file", "present"), ("target", None, "t")],
        after={"etc/link": L("t")},
    ),
    Case(
        "an empty directory in the way with force",
        link(target="t", force=True),
        before={"etc/link": D()},
        changes=[("ensure", "directory", "present"), ("target", None, "t")],
        after={"etc/link": L("t")},
    ),
    Case(
        "an empty directory in the way without force",
        link(target="t"),
        before={"etc/link": D()},
        error="is a directory; set force",
    ),
    Case(
        "a non-empty directory is never replaced",
        link(target="t", force=True),
        before={"etc/link/file": F()},
        error="is a directory that is not empty",
    ),
    Case(
        "absent removes the link, not its target",
        link(ensure="absent"),
        before={"etc/link": L("real"), "etc/real": F("r")},
        changes=[("ensure", "present", "absent")],
        after={"etc/real": F("r")},
    ),
    Case(
        "absent and missing",
        link(ensure="absent"),
        before={"etc": D()},
    ),
    Case(
        "absent refuses a regular file",
        link(ensure="absent"),
        before={"etc/link": F("x")},
        error="is a regular file, not a symlink",
    ),
    Case(
        "missing parent is unresolved",
        link(target="t"),
        error=r"^parent directory /etc does not exist$",
        error_type=Unresolved,
    ),
    Case(
        "target is required",
        link(),
        before={"etc": D()},
        error="'target' is required",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_symlink_table(sandbox: Sandbox, case: Case) -> None:
    sandbox.run("symlink", case)


def test_retarget_is_one_rename_of_a_temp_link(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/link").symlink_to("old")
    renames: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((str(src), str(dst), str(Path(src).readlink())))
        assert str(Path(dst).readlink()) == "old", "the old link stays until the rename"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    provider = sandbox.provider("symlink", link(target="new"))
    provider.sync(provider.check())
    [(src, dst, target)] = renames
    assert str(Path(src).parent) == str(Path(dst).parent) == str(sandbox.root / "etc")
    assert target == "new"
    assert names(sandbox.root / "etc") == ["link"]


def test_failed_rename_removes_the_temp_link(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sandbox.root / "etc").mkdir()
    (sandbox.root / "etc/link").symlink_to("old")

    def broken(src: Any, dst: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    provider = sandbox.provider("symlink", link(target="new"))
    changes = provider.check()
    with pytest.raises(ProviderError, match="Input/output error"):
        provider.sync(changes)
    assert names(sandbox.root / "etc") == ["link"]
    assert str(Path(sandbox.root / "etc/link").readlink()) == "old"
