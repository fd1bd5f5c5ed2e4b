""":class:`DesiredStateRepo`: the server's bare git repository of desired state.

Everything goes through the real ``git`` command line, in a scrubbed environment (no system
or user configuration, no inherited ``GIT_*`` variables, C locale, UTC), so behaviour does
not depend on who runs the server or where. Writes never touch a work tree: a commit is
built from its parent's tree in a temporary index (``GIT_INDEX_FILE``), written with
``git commit-tree``, and published by a compare-and-swap ``git update-ref``, so concurrent
writers (threads, processes, a human's ``git push``) either win or get a
:class:`StaleBaseError`, never a half-applied state.

Reading a commit materialises its files once into ``<cache_dir>/<sha>`` (read-only, built
in a temporary directory and renamed into place, so concurrent readers in any process see a
complete tree or none) and loads them with :func:`steward.language.load_repository`; loaded
repositories are kept in a small in-memory LRU, keyed by commit (a commit's content never
changes, so the cache needs no invalidation).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from steward.gitrepo.errors import (
    EditError,
    GitError,
    MergeConflictError,
    PatchError,
    StaleBaseError,
    UnknownRefError,
)
from steward.language import Repository, load_repository

#: Who writes commits: the proposer is the author, the server the committer.
COMMITTER_NAME = "Steward"
COMMITTER_EMAIL = "steward@localhost"
#: Default number of loaded repositories kept in memory per :class:`DesiredStateRepo`.
LOAD_CACHE_SIZE = 8
#: Branches of proposals; protected from pushes like the environment branches.
CHANGE_BRANCH_PREFIX = "changes/"
#: The checkout cache, when none is given: inside the git directory (git ignores it).
DEFAULT_CACHE = "steward-checkouts"

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_PROTECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*\*?$")
_REGULAR_MODES = {"100644", "100755"}
_MAX_PATH = 4096


@dataclass(frozen=True, slots=True)
class Author:
    """The identity a commit is authored by (the proposer, human or agent)."""

    name: str
    email: str

    def __post_init__(self) -> None:
        for field_name, value in (("name", self.name), ("email", self.email)):
            if not isinstance(value, str) or not value.strip():
                raise GitError(f"commit author {field_name} must be a non-empty string")
            if any(c in value for c in "<>\n\r\0"):
                raise GitError(f"commit author {field_name} {value!r} may not contain "
                               "'<', '>' or line breaks")


STEWARD = Author(COMMITTER_NAME, COMMITTER_EMAIL)


@dataclass(frozen=True, slots=True)
class RefSnapshot:
    """Every branch tip and the default branch (HEAD's), read in one consistent call."""

    default: str | None
    branches: Mapping[str, str]


def check_path(path: object) -> str:
    """A repository path as edits may name it: relative, normalised, outside ``.git``.

    Returns it unchanged; raises :class:`EditError` naming the path and the rule it breaks.
    """
    if not isinstance(path, str) or not path:
        raise EditError(f"invalid path {path!r}: a path must be a non-empty string")
    shown = repr(path if len(path) <= 200 else path[:197] + "...")
    if len(path) > _MAX_PATH:
        raise EditError(f"invalid path {shown}: longer than {_MAX_PATH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in path) or "\\" in path:
        raise EditError(f"invalid path {shown}: control characters and backslashes "
                        "are not allowed")
    if path.startswith("/"):
        raise EditError(f"invalid path {shown}: must be relative to the repository root")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise EditError(f"invalid path {shown}: empty, '.' and '..' components "
                            "are not allowed")
        if part.lower() == ".git":
            raise EditError(f"invalid path {shown}: '.git' is reserved")
    return path


def is_full_sha(value: str) -> bool:
    return bool(_FULL_SHA.match(value))


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every git command runs in: nothing from the caller's git setup."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") and k not in ("EMAIL", "TZ", "LANGUAGE")}
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_LITERAL_PATHSPECS": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
        "TZ": "UTC",
    })
    if extra:
        env.update(extra)
    return env


def _run_git(args: Sequence[str], *, cwd: Path, input: bytes | None = None,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args], input=input, capture_output=True, cwd=cwd,
            env=git_environment(env), check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH); the desired-state "
                       "repository needs it") from None


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()]
    lines = [line.removeprefix("error: ").removeprefix("fatal: ") for line in lines if line]
    return "; ".join(lines) or f"exit status {proc.returncode}"


def _remove_tree(path: Path) -> None:
    """Remove a (possibly read-only) materialised tree."""
    if not path.exists():
        return
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)
    shutil.rmtree(path, ignore_errors=True)


class DesiredStateRepo:
    """A bare git repository of desired state; environments are its branches.

    Thread-safe: git itself serialises ref updates (``update-ref`` compare-and-swap), every
    commit is built in a private temporary index, and the in-memory caches are locked.
    """

    def __init__(self, path: Path, cache_dir: Path | None = None,
                 load_cache_size: int = LOAD_CACHE_SIZE) -> None:
        self.path = Path(path).resolve()
        if not self.is_repository(self.path):
            raise GitError(f"{self.path} is not a bare git repository")
        self.cache_dir = (Path(cache_dir) if cache_dir is not None
                          else self.path / DEFAULT_CACHE).resolve()
        self.load_cache_size = max(1, load_cache_size)
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Repository] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"DesiredStateRepo({str(self.path)!r})"

    @staticmethod
    def is_repository(path: Path) -> bool:
        """Whether ``path`` looks like a bare git repository (not a plain directory tree)."""
        return ((path / "HEAD").is_file() and (path / "objects").is_dir()
                and (path / "refs").is_dir())

    # -- creation ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        source: Path,
        environments: Sequence[str],
        author: Author,
        *,
        default: str | None = None,
        message: str = "Initial desired state",
        cache_dir: Path | None = None,
    ) -> DesiredStateRepo:
        """A new bare repository whose first commit holds ``source``'s files, on every branch.

        ``default`` (HEAD's branch) is the default environment; when not given it is the
        ``default_environment`` of ``source``'s ``steward.yaml``. The environment branches
        and ``changes/*`` are protected from pushes by a ``pre-receive`` hook: they move
        only through the change pipeline.
        """
        path = Path(path).resolve()
        source = Path(source).resolve()
        envs = list(environments)
        if not envs:
            raise GitError("at least one environment is needed")
        for env in envs:
            check_branch_name(env, what="environment")
        duplicated = sorted({env for env in envs if envs.count(env) > 1})
        if duplicated:
            raise GitError(f"environment {duplicated[0]!r} is listed twice")
        if not source.is_dir():
            raise GitError(f"{source} is not a directory")
        if default is None:
            default = load_repository(source).settings.default_environment
        if default not in envs:
            raise GitError(f"the default environment {default!r} is not one of the "
                           f"environments ({', '.join(envs)})")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise GitError(f"{path} already exists and is not empty")
        files = _source_files(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = _run_git(["init", "--bare", "--quiet", "--template=",
                         f"--initial-branch={default}", str(path)], cwd=path.parent)
        if proc.returncode != 0:
            raise GitError(f"cannot create {path}: {_stderr(proc)}")
        repo = cls(path, cache_dir)
        for key, value in (("core.logAllRefUpdates", "true"),
                           ("receive.fsckObjects", "true"),
                           ("gc.autoDetach", "false")):
            repo._git("config", key, value)
        with tempfile.TemporaryDirectory(prefix="steward-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if files:
                shas = repo._git("hash-object", "-w", "--no-filters", "--stdin-paths",
                                 input="".join(f"{source / rel}\n" for rel, _ in files)
                                 .encode()).stdout.decode().split()
                info = b"".join(
                    f"{mode} {sha}\t{rel}".encode() + b"\0"
                    for (rel, mode), sha in zip(files, shas, strict=True)
                )
                repo._git("update-index", "-z", "--add", "--index-info", input=info, env=index)
            tree = repo._git("write-tree", env=index).stdout.decode().strip()
        commit = repo._commit_tree(tree, [], author, message)
        for env in envs:
            repo.set_branch(env, commit, expected=None)
        repo._git("symbolic-ref", "HEAD", f"refs/heads/{default}")
        repo.protect_branches([*envs, CHANGE_BRANCH_PREFIX + "*"])
        return repo

    def protect_branches(self, patterns: Sequence[str]) -> None:
        """Refuse pushes (create, update, delete) to these branches (``name`` or ``prefix*``).

        A ``pre-receive`` hook: it guards against mistakes by people who push, the server's
        own updates (``update-ref``) never run hooks.
        """
        cases: list[str] = []
        for pattern in sorted(set(patterns)):
            if not _PROTECT.match(pattern) or ".." in pattern:
                raise GitError(f"invalid protected branch pattern {pattern!r}")
            cases.append(f"refs/heads/{pattern}")
        hooks = self.path / "hooks"
        hooks.mkdir(exist_ok=True)
        script = (
            "#!/bin/sh\n"
            "# Installed by Steward: these branches change only through the change pipeline.\n"
            "status=0\n"
            "while read -r old new ref; do\n"
            "  case \"$ref\" in\n"
            f"    {'|'.join(cases) if cases else 'refs/heads/.steward-none'})\n"
            "      echo \"steward: ${ref#refs/heads/} is managed by Steward and cannot be pushed;"
            " push another branch and propose it: steward change propose --branch BRANCH"
            " --to ENVIRONMENT\" >&2\n"
            "      status=1;;\n"
            "  esac\n"
            "done\n"
            "exit $status\n"
        )
        target = hooks / "pre-receive"
        temp = hooks / ".pre-receive.tmp"
        temp.write_text(script, encoding="utf-8")
        temp.chmod(0o700)  # run by git as the server's user only
        temp.replace(target)

    # -- refs ----------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The full sha of the commit ``ref`` names (a branch, sha or abbreviation)."""
        if (not isinstance(ref, str) or not ref or ref.startswith("-")
                or any(c in ref for c in "\0\n\r")):
            raise UnknownRefError(str(ref))
        proc = self._git_raw("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if proc.returncode != 0:
            raise UnknownRefError(ref)
        return proc.stdout.decode().strip()

    def tip(self, branch: str) -> str:
        """The commit at the tip of ``branch`` (exactly ``refs/heads/<branch>``)."""
        ref = self._branch_ref(branch)
        proc = self._git_raw("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if proc.returncode != 0:
            raise UnknownRefError(branch, f"no branch {branch!r} in the desired-state "
                                          "repository")
        return proc.stdout.decode().strip()

    def branches(self) -> dict[str, str]:
        """Every branch and its tip, sorted by name."""
        return dict(self.refs().branches)

    def refs(self) -> RefSnapshot:
        """Branch tips and the default branch, from one ``git for-each-ref``."""
        out = self._git("for-each-ref", "--format=%(HEAD)%00%(objectname)%00%(refname)",
                        "refs/heads/").stdout.decode()
        default: str | None = None
        branches: dict[str, str] = {}
        for line in out.splitlines():
            head, sha, ref = line.split("\0")
            name = ref.removeprefix("refs/heads/")
            branches[name] = sha
            if head == "*":
                default = name
        if default is None:
            proc = self._git_raw("symbolic-ref", "--quiet", "HEAD")
            if proc.returncode == 0:
                default = proc.stdout.decode().strip().removeprefix("refs/heads/")
        return RefSnapshot(default, dict(sorted(branches.items())))

    def default_branch(self) -> str:
        """The branch HEAD names: the default environment."""
        proc = self._git_raw("symbolic-ref", "--quiet", "HEAD")
        if proc.returncode != 0:
            raise GitError(f"{self.path}: HEAD does not name a branch")
        return proc.stdout.decode().strip().removeprefix("refs/heads/")

    def set_branch(self, name: str, commit: str, *, expected: str | None) -> None:
        """Point ``name`` at ``commit`` if it is still at ``expected`` (None: must not exist).

        Atomic compare-and-swap (``git update-ref NEW OLD``); :class:`StaleBaseError` when
        the branch has moved since the caller read it.
        """
        ref = self._branch_ref(name)
        new = self.resolve(commit)
        old = self._expected(expected, len(new))
        proc = self._git_raw("update-ref", "-m", f"steward: set {name}", ref, new, old)
        if proc.returncode != 0:
            self._ref_update_failed(name, expected, proc)

    def delete_branch(self, name: str, *, expected: str | None = None) -> None:
        """Delete ``name`` (if still at ``expected``, when given); never the default branch."""
        ref = self._branch_ref(name)
        current = self.tip(name)
        if name == self.refs().default:
            raise GitError(f"refusing to delete {name!r}: it is the default branch (HEAD)")
        old = self._expected(expected, len(current)) if expected is not None else current
        proc = self._git_raw("update-ref", "-m", f"steward: delete {name}", "-d", ref, old)
        if proc.returncode != 0:
            self._ref_update_failed(name, expected if expected is not None else current, proc)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own)."""
        a, d = self.resolve(ancestor), self.resolve(descendant)
        proc = self._git_raw("merge-base", "--is-ancestor", a, d)
        if proc.returncode not in (0, 1):
            raise GitError(f"cannot compare {ancestor!r} and {descendant!r}: {_stderr(proc)}")
        return proc.returncode == 0

    def merge_base(self, a: str, b: str) -> str:
        """The best common ancestor of two commits."""
        sha_a, sha_b = self.resolve(a), self.resolve(b)
        proc = self._git_raw("merge-base", sha_a, sha_b)
        if proc.returncode != 0:
            raise GitError(f"{a!r} and {b!r} share no history")
        return proc.stdout.decode().split()[0]

    # -- reading -------------------------------------------------------------------------------

    def checkout(self, commit: str) -> Path:
        """A read-only directory holding ``commit``'s files, made once per commit.

        Built in a temporary directory next to its final place and renamed into place, so a
        reader in any thread or process sees a complete tree or none. Symlinks and
        submodules are refused: the desired state is regular files only.
        """
        sha = commit if is_full_sha(commit) else self.resolve(commit)
        target = self.cache_dir / sha
        if target.is_dir():
            return target
        if is_full_sha(commit):
            sha = self.resolve(commit)  # exists, and is a commit (not a tree or blob)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=self.cache_dir))
        try:
            self._materialise(sha, temp)
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
                _remove_tree(temp)
        return target

    def load(self, commit: str) -> Repository:
        """``commit``'s repository, loaded (and validated) once and kept in a bounded LRU."""
        sha = commit if is_full_sha(commit) else self.resolve(commit)
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

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``commit``, or None if there is no such file there."""
        check_path(path)
        sha = self.resolve(commit)
        out = self._git("cat-file", "--batch", input=f"{sha}:{path}\n".encode()).stdout
        header, _, rest = out.partition(b"\n")
        fields = header.split()
        if len(fields) != 3 or fields[1] != b"blob":
            return None
        return rest[: int(fields[2])]

    def list_files(self, commit: str) -> list[str]:
        """Every file path at ``commit``, sorted."""
        sha = self.resolve(commit)
        out = self._git("ls-tree", "-r", "-z", "--full-tree", "--name-only", sha).stdout
        return sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths that differ between two commits, sorted; a rename is a delete plus an add."""
        sha_base, sha_head = self.resolve(base), self.resolve(head)
        out = self._git("diff-tree", "-r", "-z", "--no-renames", "--name-only",
                        sha_base, sha_head).stdout
        return sorted({p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p})

    def diff(self, base: str, head: str, paths: Sequence[str] = ()) -> str:
        """The diff from ``base`` to ``head`` (optionally of some paths only).

        Git's format, with binary patches, so :meth:`commit` can apply it (``patch=``);
        text that is not UTF-8 is shown with replacement characters.
        """
        for path in paths:
            check_path(path)
        sha_base, sha_head = self.resolve(base), self.resolve(head)
        out = self._git("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                        "--no-renames", sha_base, sha_head, "--", *paths).stdout
        return out.decode("utf-8", "replace")

    def log(self, ref: str, limit: int = 50) -> list[dict[str, str]]:
        """Up to ``limit`` commits reachable from ``ref``, newest first."""
        if limit < 1:
            raise GitError(f"log limit must be positive, not {limit}")
        sha = self.resolve(ref)
        fmt = "%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B"
        out = self._git("log", "-z", f"--format={fmt}", f"--max-count={limit}", sha,
                        "--").stdout.decode("utf-8", "replace")
        keys = ("commit", "parents", "author_name", "author_email", "author_date",
                "committer_name", "committer_email", "committer_date", "message")
        entries: list[dict[str, str]] = []
        for record in out.split("\0"):
            if not record:
                continue
            entry = dict(zip(keys, record.split("\x1f", len(keys) - 1), strict=True))
            entry["message"] = entry["message"].strip()
            entry["subject"] = entry["message"].split("\n", 1)[0]
            entries.append(entry)
        return entries

    # -- writing -------------------------------------------------------------------------------

    def commit(
        self,
        *,
        parent: str,
        author: Author,
        message: str,
        edits: Mapping[str, str | bytes | None] | None = None,
        patch: str | bytes | None = None,
        allow_empty: bool = False,
    ) -> str:
        """A new commit on ``parent``: its tree with ``patch`` applied, then ``edits``.

        ``edits`` maps a path to its new content (``str`` is written as UTF-8) or None to
        delete it. ``patch`` is a unified diff with ``a/`` and ``b/`` prefixes (as ``git
        diff`` writes). No branch moves: publish the commit with :meth:`set_branch`.
        Raises :class:`EditError`/:class:`PatchError` naming the path or hunk at fault.
        """
        if not isinstance(message, str) or not message.strip():
            raise EditError("a commit message is required")
        parent_sha = self.resolve(parent)
        with tempfile.TemporaryDirectory(prefix="steward-index-") as tmp:
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", parent_sha, env=index)
            if patch is not None:
                self._apply_patch(patch, parent_sha, index)
            if edits:
                self._apply_edits(edits, parent_sha, index, Path(tmp))
            tree = self._git("write-tree", env=index).stdout.decode().strip()
        parent_tree = self._tree_of(parent_sha)
        self._check_tree_change(parent_tree, tree)
        if tree == parent_tree and not allow_empty:
            raise EditError(f"the proposed edits change nothing in {parent_sha[:12]}")
        return self._commit_tree(tree, [parent_sha], author, message)

    def merge(self, *, into: str, commit: str, author: Author, message: str) -> str:
        """Merge ``commit`` into branch ``into``; returns the branch's new tip.

        Fast-forwards when ``into``'s tip is an ancestor of ``commit``; does nothing when
        ``commit`` is already contained; otherwise writes a merge commit (``git merge-tree
        --write-tree``). Conflicts raise :class:`MergeConflictError` naming the files; the
        branch moves by compare-and-swap (:class:`StaleBaseError` if it moved meanwhile).
        """
        tip = self.tip(into)
        head = self.resolve(commit)
        if head == tip or self._ancestor(head, tip):
            return tip
        if self._ancestor(tip, head):
            self.set_branch(into, head, expected=tip)
            return head
        proc = self._git_raw("merge-tree", "--write-tree", "-z", "--name-only",
                             "--no-messages", tip, head)
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        if proc.returncode == 1:
            files = sorted({f for f in fields[1:] if f})
            raise MergeConflictError(into, head, files)
        if proc.returncode != 0:
            raise GitError(f"cannot merge {head[:12]} into {into!r}: {_stderr(proc)}")
        tree = fields[0].strip()
        merged = self._commit_tree(tree, [tip, head], author, message)
        self.set_branch(into, merged, expected=tip)
        return merged

    def revert(self, *, branch: str, to_tree_of: str, author: Author, message: str) -> str:
        """A new commit on ``branch``'s tip whose files are exactly ``to_tree_of``'s.

        Used for rollback: history moves forward (nothing is rewritten) while the content
        returns to a known-good state. The branch moves by compare-and-swap.
        """
        tip = self.tip(branch)
        tree = self._tree_of(self.resolve(to_tree_of))
        reverted = self._commit_tree(tree, [tip], author, message)
        self.set_branch(branch, reverted, expected=tip)
        return reverted

    # -- internals -----------------------------------------------------------------------------

    def _git_raw(self, *args: str, input: bytes | None = None,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return _run_git(["--git-dir", str(self.path), *args], cwd=self.path, input=input,
                        env=env)

    def _git(self, *args: str, input: bytes | None = None,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = self._git_raw(*args, input=input, env=env)
        if proc.returncode != 0:
            raise GitError(f"git {args[0]} failed in {self.path}: {_stderr(proc)}")
        return proc

    def _branch_ref(self, name: str) -> str:
        check_branch_name(name)
        return f"refs/heads/{name}"

    def _expected(self, expected: str | None, width: int) -> str:
        if expected is None:
            return "0" * width
        if is_full_sha(expected):
            return expected
        return self.resolve(expected)

    def _ref_update_failed(self, name: str, expected: str | None,
                           proc: subprocess.CompletedProcess[bytes]) -> None:
        proc_now = self._git_raw("rev-parse", "--verify", "--quiet",
                                 f"refs/heads/{name}^{{commit}}")
        actual = proc_now.stdout.decode().strip() if proc_now.returncode == 0 else None
        wanted = None if expected is None else self._expected(expected, len(actual or "") or 40)
        if actual != wanted:
            raise StaleBaseError(name, wanted, actual)
        raise GitError(f"cannot update branch {name!r}: {_stderr(proc)}")

    def _ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = self._git_raw("merge-base", "--is-ancestor", ancestor, descendant)
        return proc.returncode == 0

    def _tree_of(self, commit: str) -> str:
        return self._git("rev-parse", f"{commit}^{{tree}}").stdout.decode().strip()

    def _commit_tree(self, tree: str, parents: Sequence[str], author: Author,
                     message: str) -> str:
        if not isinstance(author, Author):
            raise GitError("a commit needs an Author")
        if not isinstance(message, str) or not message.strip():
            raise GitError("a commit message is required")
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
               "GIT_COMMITTER_NAME": COMMITTER_NAME, "GIT_COMMITTER_EMAIL": COMMITTER_EMAIL}
        text = message.strip() + "\n"
        return self._git(*args, input=text.encode("utf-8"), env=env).stdout.decode().strip()

    def _apply_patch(self, patch: str | bytes, parent: str, index: Mapping[str, str]) -> None:
        raw = patch.encode("utf-8") if isinstance(patch, str) else patch
        if not isinstance(raw, bytes):
            raise PatchError("a patch must be text (a unified diff)")
        if not raw.strip():
            raise PatchError("the patch is empty")
        proc = self._git_raw("apply", "--cached", "--whitespace=nowarn", "-", input=raw,
                             env=index)
        if proc.returncode != 0:
            problem = _stderr(proc).replace('No valid patches in input (allow with '
                                            '"--allow-empty")', "no unified diff in the patch")
            raise PatchError(f"the patch does not apply to {parent[:12]}: {problem}")

    def _apply_edits(self, edits: Mapping[str, str | bytes | None], parent: str,
                     index: Mapping[str, str], tmp: Path) -> None:
        listing = self._git("ls-files", "-s", "-z", env=index).stdout
        modes: dict[str, str] = {}
        for record in listing.split(b"\0"):
            if record:
                meta, raw_path = record.split(b"\t", 1)
                modes[raw_path.decode("utf-8", "surrogateescape")] = meta.split()[0].decode()
        deletions: list[str] = []
        writes: list[tuple[str, bytes]] = []
        for path in sorted(edits):
            check_path(path)
            content = edits[path]
            if content is None:
                if path not in modes:
                    raise EditError(f"cannot delete {path!r}: no such file in {parent[:12]}")
                deletions.append(path)
            elif isinstance(content, str):
                writes.append((path, content.encode("utf-8")))
            elif isinstance(content, bytes):
                writes.append((path, content))
            else:
                raise EditError(f"{path!r}: new content must be text, bytes or null "
                                f"(to delete), not {type(content).__name__}")
        final = (set(modes) - set(deletions)) | {path for path, _ in writes}
        directories = {path.rsplit("/", i)[0] for path in final
                       for i in range(1, path.count("/") + 1)}
        for path, _ in writes:
            if path in directories:
                raise EditError(f"cannot write {path!r}: it is a directory in the result")
            parts = path.split("/")
            for depth in range(1, len(parts)):
                prefix = "/".join(parts[:depth])
                if prefix in final:
                    raise EditError(f"cannot write {path!r}: {prefix!r} is a file")
        records: list[bytes] = [
            f"0 {'0' * len(parent)}\t{path}".encode() + b"\0" for path in deletions
        ]
        if writes:
            blob_paths: list[str] = []
            for number, (_, data) in enumerate(writes):
                blob = tmp / f"blob-{number}"
                blob.write_bytes(data)
                blob_paths.append(str(blob))
            shas = self._git("hash-object", "-w", "--no-filters", "--stdin-paths",
                             input="".join(f"{p}\n" for p in blob_paths).encode()
                             ).stdout.decode().split()
            for (path, _), sha in zip(writes, shas, strict=True):
                mode = "100755" if modes.get(path) == "100755" else "100644"
                records.append(f"{mode} {sha}\t{path}".encode() + b"\0")
        proc = self._git_raw("update-index", "-z", "--add", "--remove", "--index-info",
                             input=b"".join(records), env=index)
        if proc.returncode != 0:
            raise EditError(f"cannot apply the edits to {parent[:12]}: {_stderr(proc)}")

    def _check_tree_change(self, old_tree: str, new_tree: str) -> None:
        """Every path a commit adds or modifies must be a valid regular file."""
        if old_tree == new_tree:
            return
        out = self._git("diff-tree", "-r", "-z", "--no-renames", old_tree, new_tree).stdout
        fields = out.split(b"\0")
        for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(b":"):
                continue
            _, new_mode, _, _, status = meta[1:].decode().split()
            if status == "D":
                continue
            path = raw_path.decode("utf-8", "surrogateescape")
            check_path(path)
            if new_mode not in _REGULAR_MODES:
                kind = {"120000": "a symlink", "160000": "a submodule"}.get(new_mode, new_mode)
                raise EditError(f"{path!r} would be {kind}; the desired-state repository "
                                "holds regular files only")

    def _materialise(self, sha: str, into: Path) -> None:
        out = self._git("ls-tree", "-r", "-z", "--full-tree", sha).stdout
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
            if mode not in _REGULAR_MODES:
                kind = {"120000": "a symlink", "160000": "a submodule"}.get(mode, mode)
                raise GitError(f"commit {sha[:12]}: {path!r} is {kind}; the desired-state "
                               "repository holds regular files only")
            entries.append((mode, obj, path))
        blobs = self._read_blobs(sorted({obj for _, obj, _ in entries}))
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

    def _read_blobs(self, objects: Sequence[str]) -> dict[str, bytes]:
        if not objects:
            return {}
        out = self._git("cat-file", "--batch",
                        input="".join(f"{obj}\n" for obj in objects).encode()).stdout
        blobs: dict[str, bytes] = {}
        position = 0
        for obj in objects:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            if len(header) != 3:
                raise GitError(f"{self.path}: object {obj} is missing")
            size = int(header[2])
            blobs[obj] = out[end + 1:end + 1 + size]
            position = end + 1 + size + 1
        return blobs


def check_branch_name(name: object, *, what: str = "branch") -> str:
    """A branch name git accepts and a shell pattern cannot misread."""
    if (not isinstance(name, str) or not _BRANCH.match(name) or name.endswith(".lock")
            or ".." in name or name == "HEAD" or name.endswith(".")):
        raise GitError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' "
                       "and '/' between words")
    return name


def _source_files(source: Path) -> list[tuple[str, str]]:
    """(path, git mode) of every file to import from ``source``, sorted; skips ``.git``."""
    found: list[tuple[str, str]] = []
    for directory, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            full = Path(directory) / name
            rel = full.relative_to(source).as_posix()
            if full.is_symlink():
                raise GitError(f"{source}: {rel!r} is a symlink; the desired-state repository "
                               "holds regular files only")
            try:
                check_path(rel)
            except EditError as exc:
                raise GitError(f"{source}: {exc}") from None
            mode = "100755" if full.stat().st_mode & 0o111 else "100644"
            found.append((rel, mode))
        for name in dirs:
            if (Path(directory) / name).is_symlink():
                rel = (Path(directory) / name).relative_to(source).as_posix()
                raise GitError(f"{source}: {rel!r} is a symlink; the desired-state repository "
                               "holds regular files only")
    return sorted(found)
