"""Commits as read-only directories and as loaded repositories, each made once per commit.

A commit's files are materialised once into ``<cache_dir>/<sha>`` (read-only, built in a
temporary directory and renamed into place, so concurrent readers in any process see a
complete tree or none) and loaded with :func:`steward.language.load_repository`; loaded
repositories are kept in a small in-memory LRU keyed by commit (a commit's content never
changes, so neither cache needs invalidation).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from steward.gitrepo.errors import EditError, GitError
from steward.gitrepo.git import GitDir
from steward.gitrepo.names import check_path, is_full_sha
from steward.gitrepo.trees import REGULAR_MODES, mode_kind
from steward.language import Repository, load_repository

#: Default number of loaded repositories kept in memory per repository.
LOAD_CACHE_SIZE = 8
#: The checkout cache, when none is given: inside the git directory (git ignores it).
DEFAULT_CACHE = "steward-checkouts"


class Checkouts:
    """The checkout directory cache and the loaded-repository LRU of one git directory.

    Thread-safe: a commit is loaded by one thread at a time (a lock per commit being
    loaded), and the LRU is locked.
    """

    def __init__(self, git: GitDir, cache_dir: Path, load_cache_size: int) -> None:
        self.git = git
        self.cache_dir = cache_dir
        self.load_cache_size = load_cache_size
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Repository] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}

    def checkout(self, commit: str) -> Path:
        """A read-only directory holding ``commit``'s files (see the module docstring)."""
        sha = commit if is_full_sha(commit) else self.git.resolve(commit)
        target = self.cache_dir / sha
        if target.is_dir():
            return target
        if is_full_sha(commit):
            sha = self.git.resolve(commit)  # exists, and is a commit (not a tree or blob)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=self.cache_dir))
        try:
            materialise(self.git, sha, temp)
            try:
                os.rename(temp, target)
            except OSError:
                if not target.is_dir():
                    raise
                # Another thread or process won the race; its tree is identical.
        except OSError as exc:
            raise GitError(f"cannot materialise commit {sha[:12]} in {self.cache_dir}: "
                           f"{exc.strerror or exc}") from None
        finally:
            if temp.exists():
                remove_tree(temp)
        return target

    def load(self, commit: str) -> Repository:
        """``commit``'s repository, loaded (and validated) once and kept in the LRU."""
        sha = commit if is_full_sha(commit) else self.git.resolve(commit)
        with self._lock:
            hit = self._loaded.get(sha)
            if hit is not None:
                self._loaded.move_to_end(sha)
                return hit
            gate = self._loading.setdefault(sha, threading.Lock())
        with gate:
            with self._lock:
                hit = self._loaded.get(sha)
                if hit is not None:
                    self._loaded.move_to_end(sha)
                    return hit
            try:
                repo = load_repository(self.checkout(sha))
            finally:
                with self._lock:
                    self._loading.pop(sha, None)
            with self._lock:
                self._loaded[sha] = repo
                self._loaded.move_to_end(sha)
                while len(self._loaded) > self.load_cache_size:
                    self._loaded.popitem(last=False)
            return repo


def materialise(git: GitDir, sha: str, into: Path) -> None:
    """Write ``sha``'s files under ``into``, read-only; only regular files are allowed."""
    out = git.run("ls-tree", "-r", "-z", "--full-tree", sha).stdout
    entries: list[tuple[str, str, str]] = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, raw_path = record.split(b"\t", 1)
        mode, _kind, obj = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        try:
            check_path(path)
        except EditError as exc:
            raise GitError(f"commit {sha[:12]}: {exc}") from None
        if mode not in REGULAR_MODES:
            raise GitError(f"commit {sha[:12]}: {path!r} is {mode_kind(mode)}; the "
                           "desired-state repository holds regular files only")
        entries.append((mode, obj, path))
    blobs = read_blobs(git, sorted({obj for _, obj, _ in entries}))
    directories: set[Path] = set()
    for mode, obj, path in entries:
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        directories.update(p for p in target.relative_to(into).parents if str(p) != ".")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blobs[obj])
        # Read-only, and the server user's alone like the rest of the data directory.
        os.chmod(target, 0o500 if mode == "100755" else 0o400)
    read_only = stat.S_IRUSR | stat.S_IXUSR
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        os.chmod(into / directory, read_only)
    os.chmod(into, read_only)


def read_blobs(git: GitDir, objects: Sequence[str]) -> dict[str, bytes]:
    """The content of each blob, from one ``git cat-file --batch``."""
    if not objects:
        return {}
    out = git.run("cat-file", "--batch",
                  input="".join(f"{obj}\n" for obj in objects).encode()).stdout
    blobs: dict[str, bytes] = {}
    position = 0
    for obj in objects:
        end = out.index(b"\n", position)
        header = out[position:end].split()
        if len(header) != 3:
            raise GitError(f"{git.path}: object {obj} is missing")
        size = int(header[2])
        blobs[obj] = out[end + 1:end + 1 + size]
        position = end + 1 + size + 1
    return blobs


def remove_tree(path: Path) -> None:
    """Remove a (possibly read-only) materialised tree."""
    if not path.exists():
        return
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)
    shutil.rmtree(path, ignore_errors=True)
