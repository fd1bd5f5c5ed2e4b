""":class:`DesiredStateRepo`: the server's bare git repository of desired state.

Everything goes through the real ``git`` command line in a scrubbed environment
(:mod:`~steward.gitrepo.git`). Writes never touch a work tree: commits are built in a
temporary index (:mod:`~steward.gitrepo.trees`) and published by a compare-and-swap
``git update-ref`` (:mod:`~steward.gitrepo.branches`). Reading a commit materialises and
loads it once (:mod:`~steward.gitrepo.checkouts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from steward.gitrepo import branches as branch_ops
from steward.gitrepo import trees
from steward.gitrepo.author import Author
from steward.gitrepo.branches import CHANGE_BRANCH_PREFIX, RefSnapshot
from steward.gitrepo.checkouts import DEFAULT_CACHE, LOAD_CACHE_SIZE, Checkouts
from steward.gitrepo.errors import GitError
from steward.gitrepo.git import GitDir, failure, run_git
from steward.gitrepo.names import check_branch_name, check_path
from steward.language import Repository, load_repository


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
        self.git = GitDir(self.path)
        self._checkouts = Checkouts(self.git, self.cache_dir, self.load_cache_size)

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
        files = trees.source_files(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = run_git(["init", "--bare", "--quiet", "--template=",
                        f"--initial-branch={default}", str(path)], cwd=path.parent)
        if proc.returncode != 0:
            raise GitError(f"cannot create {path}: {failure(proc)}")
        repo = cls(path, cache_dir)
        for key, value in (("core.logAllRefUpdates", "true"),
                           ("receive.fsckObjects", "true"),
                           ("gc.autoDetach", "false")):
            repo.git.run("config", key, value)
        tree = trees.import_tree(repo.git, source, files)
        commit = trees.commit_tree(repo.git, tree, [], author, message)
        for env in envs:
            repo.set_branch(env, commit, expected=None)
        repo.git.run("symbolic-ref", "HEAD", f"refs/heads/{default}")
        repo.protect_branches([*envs, CHANGE_BRANCH_PREFIX + "*"])
        return repo

    def protect_branches(self, patterns: Sequence[str]) -> None:
        """Refuse pushes (create, update, delete) to these branches (``name`` or ``prefix*``).

        A ``pre-receive`` hook: it guards against mistakes by people who push, the server's
        own updates (``update-ref``) never run hooks.
        """
        branch_ops.write_push_guard(self.git, patterns)

    # -- refs ----------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The full sha of the commit ``ref`` names (a branch, sha or abbreviation)."""
        return self.git.resolve(ref)

    def tip(self, branch: str) -> str:
        """The commit at the tip of ``branch`` (exactly ``refs/heads/<branch>``)."""
        return branch_ops.tip(self.git, branch)

    def branches(self) -> dict[str, str]:
        """Every branch and its tip, sorted by name."""
        return dict(self.refs().branches)

    def refs(self) -> RefSnapshot:
        """Branch tips and the default branch, from one ``git for-each-ref``."""
        return branch_ops.read_refs(self.git)

    def default_branch(self) -> str:
        """The branch HEAD names: the default environment."""
        return branch_ops.default_branch(self.git)

    def set_branch(self, name: str, commit: str, *, expected: str | None) -> None:
        """Point ``name`` at ``commit`` if it is still at ``expected`` (None: must not exist).

        Atomic compare-and-swap (``git update-ref NEW OLD``); :class:`StaleBaseError` when
        the branch has moved since the caller read it.
        """
        branch_ops.set_branch(self.git, name, commit, expected=expected)

    def delete_branch(self, name: str, *, expected: str | None = None) -> None:
        """Delete ``name`` (if still at ``expected``, when given); never the default branch."""
        branch_ops.delete_branch(self.git, name, expected=expected)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own)."""
        return branch_ops.is_ancestor(self.git, ancestor, descendant)

    def merge_base(self, a: str, b: str) -> str:
        """The best common ancestor of two commits."""
        return branch_ops.merge_base(self.git, a, b)

    def common_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None when they share no history."""
        return branch_ops.common_base(self.git, a, b)

    # -- reading -------------------------------------------------------------------------------

    def checkout(self, commit: str) -> Path:
        """A read-only directory holding ``commit``'s files, made once per commit.

        Built in a temporary directory next to its final place and renamed into place, so a
        reader in any thread or process sees a complete tree or none. Symlinks and
        submodules are refused: the desired state is regular files only.
        """
        return self._checkouts.checkout(commit)

    def load(self, commit: str) -> Repository:
        """``commit``'s repository, loaded (and validated) once and kept in a bounded LRU."""
        return self._checkouts.load(commit)

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``commit``, or None if there is no such file there."""
        check_path(path)
        sha = self.git.resolve(commit)
        out = self.git.run("cat-file", "--batch", input=f"{sha}:{path}\n".encode()).stdout
        header, _, rest = out.partition(b"\n")
        fields = header.split()
        if len(fields) != 3 or fields[1] != b"blob":
            return None
        return rest[: int(fields[2])]

    def read_files(self, commit: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Each path's bytes at ``commit`` (None where it has no such file), as ``edits``
        for :meth:`commit`: to carry files from one commit onto another."""
        return {path: self.read_file(commit, path) for path in paths}

    def list_files(self, commit: str) -> list[str]:
        """Every file path at ``commit``, sorted."""
        sha = self.git.resolve(commit)
        out = self.git.run("ls-tree", "-r", "-z", "--full-tree", "--name-only", sha).stdout
        return sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)

    def changed_files(self, base: str, head: str) -> list[str]:
        """Paths that differ between two commits, sorted; a rename is a delete plus an add."""
        sha_base, sha_head = self.git.resolve(base), self.git.resolve(head)
        out = self.git.run("diff-tree", "-r", "-z", "--no-renames", "--name-only",
                           sha_base, sha_head).stdout
        return sorted({p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p})

    def diff(self, base: str, head: str, paths: Sequence[str] = ()) -> str:
        """The diff from ``base`` to ``head`` (optionally of some paths only).

        Git's format, with binary patches, so :meth:`commit` can apply it (``patch=``);
        text that is not UTF-8 is shown with replacement characters.
        """
        for path in paths:
            check_path(path)
        sha_base, sha_head = self.git.resolve(base), self.git.resolve(head)
        out = self.git.run("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                           "--no-renames", sha_base, sha_head, "--", *paths).stdout
        return out.decode("utf-8", "replace")

    def log(self, ref: str, limit: int = 50) -> list[dict[str, str]]:
        """Up to ``limit`` commits reachable from ``ref``, newest first."""
        if limit < 1:
            raise GitError(f"log limit must be positive, not {limit}")
        sha = self.git.resolve(ref)
        fmt = "%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B"
        out = self.git.run("log", "-z", f"--format={fmt}", f"--max-count={limit}", sha,
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
        return trees.build_commit(self.git, parent=parent, author=author, message=message,
                                  edits=edits, patch=patch, allow_empty=allow_empty)

    def restore(self, *, parent: str, to_tree_of: str, author: Author, message: str) -> str:
        """A new commit on ``parent`` whose files are exactly ``to_tree_of``'s; no branch
        moves (:meth:`revert` is this, published on a branch)."""
        return trees.restore_commit(self.git, parent=parent, to_tree_of=to_tree_of,
                                    author=author, message=message)

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
        tree = trees.merge_trees(self.git, tip, head, into=into)
        merged = trees.commit_tree(self.git, tree, [tip, head], author, message)
        self.set_branch(into, merged, expected=tip)
        return merged

    def revert(self, *, branch: str, to_tree_of: str, author: Author, message: str) -> str:
        """A new commit on ``branch``'s tip whose files are exactly ``to_tree_of``'s.

        Used for rollback: history moves forward (nothing is rewritten) while the content
        returns to a known-good state. The branch moves by compare-and-swap.
        """
        tip = self.tip(branch)
        reverted = self.restore(parent=tip, to_tree_of=to_tree_of, author=author,
                                message=message)
        self.set_branch(branch, reverted, expected=tip)
        return reverted

    def _ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.git.raw("merge-base", "--is-ancestor", ancestor, descendant).returncode == 0
