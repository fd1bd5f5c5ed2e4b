"""The table runner: build a tree, check in noop and for real, sync, check again.

Every case asserts the same things (pyinfra-style): the expected changes, that noop reports
exactly what the real check reports and touches nothing, the expected final tree, and that a
second check finds nothing to do.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from steward.catalog.model import Resource
from steward.catalog.types import TYPES
from steward.engine.context import Context
from steward.engine.provider import Change, Provider, ProviderError
from steward.engine.providers import provider_class
from steward.engine.testing import ReplayRunner

UID = os.geteuid()
GID = os.getegid()
USER = pwd.getpwuid(UID).pw_name
GROUP = grp.getgrgid(GID).gr_name
IS_ROOT = UID == 0


def _other_user() -> tuple[int, str, int, str] | None:
    """A second uid/gid to chown to (only root may), e.g. nobody/nogroup."""
    if not IS_ROOT:
        return None
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        return None
    group = grp.getgrgid(user.pw_gid)
    return user.pw_uid, user.pw_name, group.gr_gid, group.gr_name


OTHER = _other_user()
needs_other_user = pytest.mark.skipif(OTHER is None, reason="needs root and a 'nobody' user")


@dataclass(frozen=True)
class F:
    """A regular file; uid/gid None mean the test process's."""

    content: str | bytes = ""
    mode: int = 0o644
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class D:
    """A directory."""

    mode: int = 0o755
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True)
class L:
    """A symbolic link."""

    target: str


Node = F | D | L
Tree = Mapping[str, Node]


@dataclass
class Case:
    """One row of a table: initial tree, parameters, expected changes and final tree."""

    id: str
    params: dict[str, Any]
    before: Tree = field(default_factory=dict)
    #: (property, old, new) of each change, in order.
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    #: The whole tree after sync; None means unchanged.
    after: Tree | None = None
    #: A regex the check's error must match (in noop and for real); nothing may change.
    error: str | None = None
    error_type: type[Exception] = ProviderError
    sensitive: frozenset[str] = frozenset()
    managed: tuple[str, ...] = ()


def normalise(tree: Tree) -> dict[str, Node]:
    """Fill implicit parent directories and the process's ids; content as bytes."""
    out: dict[str, Node] = {}
    for rel in tree:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            out.setdefault("/".join(parts[:depth]), D(uid=UID, gid=GID))
    for rel, node in tree.items():
        if isinstance(node, F):
            content = node.content.encode() if isinstance(node.content, str) else node.content
            out[rel] = F(content, node.mode, _id(node.uid, UID), _id(node.gid, GID))
        elif isinstance(node, D):
            out[rel] = D(node.mode, _id(node.uid, UID), _id(node.gid, GID))
        else:
            out[rel] = node
    return out


def _id(value: int | None, default: int) -> int:
    return default if value is None else value


def build(root: Path, tree: Tree) -> None:
    """Create ``tree`` under ``root`` with exactly the modes and owners it names."""
    root.mkdir(parents=True, exist_ok=True)
    nodes = normalise(tree)
    for rel in sorted(nodes, key=lambda r: r.count("/")):
        node = nodes[rel]
        path = root / rel
        if isinstance(node, D):
            path.mkdir()
        elif isinstance(node, F):
            assert isinstance(node.content, bytes)
            path.write_bytes(node.content)
        else:
            path.symlink_to(node.target)
    for rel in sorted(nodes, key=lambda r: -r.count("/")):
        node = nodes[rel]
        if isinstance(node, F | D):
            if IS_ROOT:
                os.chown(root / rel, _id(node.uid, UID), _id(node.gid, GID))
            (root / rel).chmod(node.mode)


def snapshot(root: Path) -> dict[str, Node]:
    """The tree under ``root`` as nodes (content, mode, owner; link targets)."""
    out: dict[str, Node] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = L(str(path.readlink()))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = D(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                out[rel] = F(path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def names(directory: Path) -> list[str]:
    """The entries of a directory, sorted (to see leftover temp files)."""
    return sorted(entry.name for entry in directory.iterdir())


def fingerprint(*roots: Path) -> dict[str, Any]:
    """Everything a read-only check must leave alone: the snapshot plus inodes and mtimes."""
    out: dict[str, Any] = {}
    for root in roots:
        for rel, node in snapshot(root).items():
            st = (root / rel).lstat()
            out[f"{root}/{rel}"] = (node, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return out


@dataclass
class Sandbox:
    """A root for the catalog's paths and a state directory outside it."""

    root: Path
    state: Path

    def context(self, *, noop: bool = False, managed: Iterable[str] = ()) -> Context:
        return Context(runner=ReplayRunner(), noop=noop, root=self.root, state_dir=self.state,
                       managed_paths=frozenset(managed))

    def provider(
        self,
        type_name: str,
        params: Mapping[str, Any],
        *,
        noop: bool = False,
        sensitive: Iterable[str] = (),
        managed: Iterable[str] = (),
        ctx: Context | None = None,
    ) -> Provider:
        """A provider as the engine builds it: defaults filled, namevar from the title."""
        rtype = TYPES[type_name]
        full: dict[str, Any] = {p.name: p.default for p in rtype.params}
        full.update(params)
        title = str(full[rtype.namevar])
        resource = Resource(type_name, title, dict(params))
        context = ctx if ctx is not None else self.context(noop=noop, managed=managed)
        return provider_class(type_name)(resource, full, context, frozenset(sensitive))

    def run(self, type_name: str, case: Case) -> tuple[list[Change], Context]:
        """Run one table row; returns the real run's changes and context for extra checks."""
        build(self.root, case.before)
        self.state.mkdir(exist_ok=True)
        before = fingerprint(self.root, self.state)
        kwargs: dict[str, Any] = {"sensitive": case.sensitive, "managed": case.managed}

        noop = self.provider(type_name, case.params, noop=True, **kwargs)
        if case.error is not None:
            with pytest.raises(case.error_type, match=case.error):
                noop.check()
            with pytest.raises(case.error_type, match=case.error):
                self.provider(type_name, case.params, **kwargs).check()
            assert fingerprint(self.root, self.state) == before
            return [], noop.ctx
        predicted = noop.check()
        assert fingerprint(self.root, self.state) == before, "noop check changed the tree"

        real = self.provider(type_name, case.params, **kwargs)
        changes = real.check()
        assert changes == predicted, "noop must predict exactly what a real run does"
        assert [(c.property, c.old, c.new) for c in changes] == case.changes
        assert fingerprint(self.root, self.state) == before, "check changed the tree"

        real.sync(changes)
        expected = normalise(case.before if case.after is None else case.after)
        assert snapshot(self.root) == expected

        again = self.provider(type_name, case.params, **kwargs).check()
        assert again == [], "a second check after sync must find nothing to do"
        return changes, real.ctx
