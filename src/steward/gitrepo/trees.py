"""Building trees and commits: from a directory, from edits and patches, by merging.

Nothing here touches a work tree or moves a branch: a tree is built from its parent's in a
temporary index (``GIT_INDEX_FILE``) and written with ``git commit-tree``; publishing the
commit is the caller's compare-and-swap (:mod:`steward.gitrepo.branches`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from steward.gitrepo.author import COMMITTER_EMAIL, COMMITTER_NAME, Author
from steward.gitrepo.errors import EditError, GitError, MergeConflictError, PatchError
from steward.gitrepo.git import GitDir, failure
from steward.gitrepo.names import check_path

#: The modes of the files a desired-state tree may hold (no symlinks, no submodules).
REGULAR_MODES = frozenset({"100644", "100755"})


def mode_kind(mode: str) -> str:
    """What a tree entry of a mode outside :data:`REGULAR_MODES` is, for error messages."""
    return {"120000": "a symlink", "160000": "a submodule"}.get(mode, mode)


def tree_of(git: GitDir, commit: str) -> str:
    return git.run("rev-parse", f"{commit}^{{tree}}").stdout.decode().strip()


def commit_tree(git: GitDir, tree: str, parents: Sequence[str], author: Author,
                message: str) -> str:
    """Write a commit of ``tree`` on ``parents``: ``author`` authors it, Steward commits it."""
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
    return git.run(*args, input=text.encode("utf-8"), env=env).stdout.decode().strip()


def source_files(source: Path) -> list[tuple[str, str]]:
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


def import_tree(git: GitDir, source: Path, files: Sequence[tuple[str, str]]) -> str:
    """The tree of ``files`` (from :func:`source_files`) read from ``source``."""
    with tempfile.TemporaryDirectory(prefix="steward-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if files:
            shas = git.run("hash-object", "-w", "--no-filters", "--stdin-paths",
                           input="".join(f"{source / rel}\n" for rel, _ in files)
                           .encode()).stdout.decode().split()
            info = b"".join(
                f"{mode} {sha}\t{rel}".encode() + b"\0"
                for (rel, mode), sha in zip(files, shas, strict=True)
            )
            git.run("update-index", "-z", "--add", "--index-info", input=info, env=index)
        return git.run("write-tree", env=index).stdout.decode().strip()


def build_commit(git: GitDir, *, parent: str, author: Author, message: str,
                 edits: Mapping[str, str | bytes | None] | None,
                 patch: str | bytes | None, allow_empty: bool) -> str:
    """A commit on ``parent``: its tree with ``patch`` applied, then ``edits``.

    See :meth:`steward.gitrepo.DesiredStateRepo.commit`, which documents the arguments.
    """
    if not isinstance(message, str) or not message.strip():
        raise EditError("a commit message is required")
    parent_sha = git.resolve(parent)
    with tempfile.TemporaryDirectory(prefix="steward-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git.run("read-tree", parent_sha, env=index)
        if patch is not None:
            _apply_patch(git, patch, parent_sha, index)
        if edits:
            _apply_edits(git, edits, parent_sha, index, Path(tmp))
        tree = git.run("write-tree", env=index).stdout.decode().strip()
    parent_tree = tree_of(git, parent_sha)
    _check_tree_change(git, parent_tree, tree)
    if tree == parent_tree and not allow_empty:
        raise EditError(f"the proposed edits change nothing in {parent_sha[:12]}")
    return commit_tree(git, tree, [parent_sha], author, message)


def restore_commit(git: GitDir, *, parent: str, to_tree_of: str, author: Author,
                   message: str) -> str:
    """A commit on ``parent`` whose files are exactly ``to_tree_of``'s (a rollback's)."""
    parent_sha = git.resolve(parent)
    tree = tree_of(git, git.resolve(to_tree_of))
    return commit_tree(git, tree, [parent_sha], author, message)


def merge_trees(git: GitDir, tip: str, head: str, *, into: str) -> str:
    """The tree merging ``head`` into ``tip`` (``git merge-tree --write-tree``).

    Conflicts raise :class:`MergeConflictError` naming ``into`` (the branch) and the files.
    """
    proc = git.raw("merge-tree", "--write-tree", "-z", "--name-only", "--no-messages",
                   tip, head)
    fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    if proc.returncode == 1:
        files = sorted({f for f in fields[1:] if f})
        raise MergeConflictError(into, head, files)
    if proc.returncode != 0:
        raise GitError(f"cannot merge {head[:12]} into {into!r}: {failure(proc)}")
    return fields[0].strip()


def _apply_patch(git: GitDir, patch: str | bytes, parent: str,
                 index: Mapping[str, str]) -> None:
    raw = patch.encode("utf-8") if isinstance(patch, str) else patch
    if not isinstance(raw, bytes):
        raise PatchError("a patch must be text (a unified diff)")
    if not raw.strip():
        raise PatchError("the patch is empty")
    proc = git.raw("apply", "--cached", "--whitespace=nowarn", "-", input=raw, env=index)
    if proc.returncode != 0:
        problem = failure(proc).replace('No valid patches in input (allow with '
                                        '"--allow-empty")', "no unified diff in the patch")
        raise PatchError(f"the patch does not apply to {parent[:12]}: {problem}")


def _apply_edits(git: GitDir, edits: Mapping[str, str | bytes | None], parent: str,
                 index: Mapping[str, str], tmp: Path) -> None:
    listing = git.run("ls-files", "-s", "-z", env=index).stdout
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
    _check_shape(modes, deletions, writes)
    records: list[bytes] = [
        f"0 {'0' * len(parent)}\t{path}".encode() + b"\0" for path in deletions
    ]
    if writes:
        blob_paths: list[str] = []
        for number, (_, data) in enumerate(writes):
            blob = tmp / f"blob-{number}"
            blob.write_bytes(data)
            blob_paths.append(str(blob))
        shas = git.run("hash-object", "-w", "--no-filters", "--stdin-paths",
                       input="".join(f"{p}\n" for p in blob_paths).encode()
                       ).stdout.decode().split()
        for (path, _), sha in zip(writes, shas, strict=True):
            mode = "100755" if modes.get(path) == "100755" else "100644"
            records.append(f"{mode} {sha}\t{path}".encode() + b"\0")
    proc = git.raw("update-index", "-z", "--add", "--remove", "--index-info",
                   input=b"".join(records), env=index)
    if proc.returncode != 0:
        raise EditError(f"cannot apply the edits to {parent[:12]}: {failure(proc)}")


def _check_shape(modes: Mapping[str, str], deletions: Sequence[str],
                 writes: Sequence[tuple[str, bytes]]) -> None:
    """No written path may be a directory of the result, nor lie under a file of it."""
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


def _check_tree_change(git: GitDir, old_tree: str, new_tree: str) -> None:
    """Every path a commit adds or modifies must be a valid regular file."""
    if old_tree == new_tree:
        return
    out = git.run("diff-tree", "-r", "-z", "--no-renames", old_tree, new_tree).stdout
    fields = out.split(b"\0")
    for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(b":"):
            continue
        _, new_mode, _, _, status = meta[1:].decode().split()
        if status == "D":
            continue
        path = raw_path.decode("utf-8", "surrogateescape")
        check_path(path)
        if new_mode not in REGULAR_MODES:
            raise EditError(f"{path!r} would be {mode_kind(new_mode)}; the desired-state "
                            "repository holds regular files only")
