"""``--root`` confines every path: nothing is written (or read) through a symlink out of it.

Hypothesis builds trees of symlinks under a root (absolute and relative targets, chains, links
to ``..``, to a sibling "outside" directory, dangling), then applies a generated catalog of
file, directory and symlink resources: the outside tree is byte-for-byte unchanged, and each
resource either succeeded under the root or failed naming the link that leads out.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steward.catalog.model import Catalog, Resource
from steward.engine import transaction
from steward.engine.context import Context
from steward.engine.provider import ProviderError, Unresolved
from steward.engine.providers.pathutil import real_path, resolve_gid, resolve_uid, user_name
from steward.engine.report import build_report
from steward.engine.runner import SubprocessRunner

NAMES = ["a", "b", "etc", "app"]


def snapshot(top: Path) -> dict[str, Any]:
    """Every entry below ``top``: type, content or link target, mode."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(top))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", path.stat().st_mode)
            else:
                found[rel] = ("file", path.read_bytes(), path.stat().st_mode)
    return found


def apply(root: Path, state: Path, resources: list[Resource]) -> dict[str, Any]:
    cat = Catalog(node="n1", environment="production", resources=resources, edges=[]).seal()
    ctx = Context(runner=SubprocessRunner(), root=root, state_dir=state)
    return build_report(transaction.apply_catalog(cat, ctx))


def make_root(tmp: Path) -> tuple[Path, Path]:
    root, outside = tmp / "root", tmp / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("outside\n")
    return root, outside


def test_a_symlink_out_then_a_file_under_it_writes_nothing_outside(tmp_path: Path) -> None:
    """The reported attack: symlink /etc/app -> OUTSIDE, then file /etc/app/conf."""
    root, outside = make_root(tmp_path)
    before = snapshot(outside)
    report = apply(root, tmp_path / "state", [
        Resource("symlink", "/etc/app", {"target": str(outside)}),
        Resource("file", "/etc/app/conf",
                 {"content": "pwned\n", "require": ["symlink[/etc/app]"]}),
    ])
    assert snapshot(outside) == before
    [conf] = [r for r in report["resources"] if r["ref"] == "file[/etc/app/conf]"]
    assert conf["status"] == "failed", conf
    assert conf["message"] == (
        f"/etc/app is a symlink leading outside --root {root} (to {outside}); refusing to "
        "manage /etc/app/conf through it"), conf


@pytest.mark.parametrize("target", ["../../outside", "../..", "/", "/../../..", "/etc/../.."])
def test_relative_and_absolute_escapes(tmp_path: Path, target: str) -> None:
    root, outside = make_root(tmp_path)
    os.symlink(target, root / "etc" / "app")
    before = snapshot(tmp_path / "outside")
    # An absolute target is the host's: the kernel would follow it there, so it escapes too.
    with pytest.raises(ProviderError, match="/etc/app is a symlink leading outside --root"):
        real_path(Context(runner=SubprocessRunner(), root=root), "/etc/app/x")
    assert snapshot(outside) == before


def test_links_inside_the_root_are_followed_within_it(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    (root / "srv").mkdir()
    os.symlink("../srv", root / "etc" / "app")
    real = real_path(Context(runner=SubprocessRunner(), root=root), "/etc/app/conf")
    assert real == str((root / "srv" / "conf").resolve())


_link_target = st.one_of(
    st.sampled_from(["..", "../..", "../../outside", "/", "/tmp", ".", "a", "../a", "b/c"]),
    st.lists(st.sampled_from([*NAMES, "..", "."]), min_size=1, max_size=4).map("/".join),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    st.just("OUTSIDE"),
)
_rel = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
_tree = st.dictionaries(_rel, st.one_of(st.just("dir"), _link_target), max_size=6)
_resource = st.tuples(st.sampled_from(["file", "directory", "symlink"]), _rel, _link_target)


@settings(max_examples=60, deadline=None)
@given(tree=_tree, resources=st.lists(_resource, min_size=1, max_size=5,
                                      unique_by=lambda r: r[1]))
def test_generated_symlink_trees_never_lead_a_write_outside(
    tree: dict[str, str], resources: list[tuple[str, str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside = make_root(base)
        real_root = str(root.resolve())
        for rel, kind in sorted(tree.items()):
            path = root / rel
            if not os.path.realpath(path.parent).startswith(real_root):
                continue  # the tree's own links lead there: the setup must not write outside
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if kind == "dir":
                    path.mkdir(exist_ok=True)
                else:
                    os.symlink(str(outside) if kind == "OUTSIDE" else kind, path)
            except OSError:
                continue  # a parent is a link or a file: the tree is what it is
        before = snapshot(outside)
        catalog = []
        for kind, rel, target in resources:
            params: dict[str, Any] = {"content": "x\n"} if kind == "file" else {}
            if kind == "symlink":
                params["target"] = str(outside) if target == "OUTSIDE" else target
            catalog.append(Resource(kind, "/" + rel, params))
        report = apply(root, base / "state", catalog)
        assert snapshot(outside) == before
        # Nothing appeared anywhere else beside the root either.
        assert sorted(p.name for p in base.iterdir()) == sorted(
            ["root", "outside", "state"] if (base / "state").exists() else ["root", "outside"])
        for resource in report["resources"]:
            assert resource["status"] in ("changed", "unchanged", "failed", "skipped"), resource


def test_owners_resolve_against_the_roots_own_files(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nappuser:x:4242:4343::/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nappgroup:x:4343:\n")
    ctx = Context(runner=SubprocessRunner(), root=root)
    assert resolve_uid(ctx, "appuser") == 4242
    assert resolve_gid(ctx, "appgroup") == 4343
    assert user_name(ctx, 4242) == "appuser"
    # A name the host knows but the root does not is not found.
    with pytest.raises(Unresolved, match=r"user 'daemon' does not exist in .*/etc/passwd"):
        resolve_uid(ctx, "daemon")
    with pytest.raises(Unresolved, match=r"group 'daemon' does not exist in .*/etc/group"):
        resolve_gid(ctx, "daemon")


def test_a_root_without_passwd_uses_the_hosts(tmp_path: Path) -> None:
    root, _ = make_root(tmp_path)
    assert resolve_uid(Context(runner=SubprocessRunner(), root=root), "root") == 0


def test_top_level_paths_are_managed_under_the_root(tmp_path: Path) -> None:
    """``/`` is the root itself: a directory at the top (``/srv``) and the files in it are
    created under ``--root``, and a second run changes nothing."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    ctx = Context(runner=SubprocessRunner(), root=root, state_dir=state)
    assert real_path(ctx, "/") == str(root.resolve())
    resources = [Resource("directory", "/srv", {"mode": "0755"}),
                 Resource("file", "/srv/app.conf", {"content": "x\n", "mode": "0644"})]
    first = apply(root, state, resources)
    assert first["status"] == "changed", [r["message"] for r in first["resources"]]
    assert (root / "srv" / "app.conf").read_text() == "x\n"
    assert apply(root, state, resources)["status"] == "unchanged"
