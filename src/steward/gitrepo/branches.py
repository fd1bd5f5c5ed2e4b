"""Branches: reading tips and moving them by compare-and-swap, and the push guard.

A branch moves only through ``git update-ref NEW OLD``, so concurrent writers (threads,
processes, a human's ``git push``) either win or get a :class:`StaleBaseError`, never a
half-applied state.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from steward.gitrepo.errors import GitError, StaleBaseError, UnknownRefError
from steward.gitrepo.git import GitDir, failure
from steward.gitrepo.names import check_branch_name, check_protect_pattern, is_full_sha

#: Branches of proposals; protected from pushes like the environment branches.
CHANGE_BRANCH_PREFIX = "changes/"


@dataclass(frozen=True, slots=True)
class RefSnapshot:
    """Every branch tip and the default branch (HEAD's), read in one consistent call."""

    default: str | None
    branches: Mapping[str, str]


def branch_ref(name: str) -> str:
    """``refs/heads/<name>``, once ``name`` is a valid branch name."""
    check_branch_name(name)
    return f"refs/heads/{name}"


def tip(git: GitDir, branch: str) -> str:
    """The commit at the tip of ``branch`` (exactly ``refs/heads/<branch>``)."""
    ref = branch_ref(branch)
    proc = git.raw("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise UnknownRefError(branch, f"no branch {branch!r} in the desired-state "
                                      "repository")
    return proc.stdout.decode().strip()


def read_refs(git: GitDir) -> RefSnapshot:
    """Branch tips and the default branch, from one ``git for-each-ref``."""
    out = git.run("for-each-ref", "--format=%(HEAD)%00%(objectname)%00%(refname)",
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
        proc = git.raw("symbolic-ref", "--quiet", "HEAD")
        if proc.returncode == 0:
            default = proc.stdout.decode().strip().removeprefix("refs/heads/")
    return RefSnapshot(default, dict(sorted(branches.items())))


def default_branch(git: GitDir) -> str:
    """The branch HEAD names: the default environment."""
    proc = git.raw("symbolic-ref", "--quiet", "HEAD")
    if proc.returncode != 0:
        raise GitError(f"{git.path}: HEAD does not name a branch")
    return proc.stdout.decode().strip().removeprefix("refs/heads/")


def set_branch(git: GitDir, name: str, commit: str, *, expected: str | None) -> None:
    """Point ``name`` at ``commit`` if it is still at ``expected`` (None: must not exist)."""
    ref = branch_ref(name)
    new = git.resolve(commit)
    old = _expected(git, expected, len(new))
    proc = git.raw("update-ref", "-m", f"steward: set {name}", ref, new, old)
    if proc.returncode != 0:
        _ref_update_failed(git, name, expected, proc)


def delete_branch(git: GitDir, name: str, *, expected: str | None = None) -> None:
    """Delete ``name`` (if still at ``expected``, when given); never the default branch."""
    ref = branch_ref(name)
    current = tip(git, name)
    if name == read_refs(git).default:
        raise GitError(f"refusing to delete {name!r}: it is the default branch (HEAD)")
    old = _expected(git, expected, len(current)) if expected is not None else current
    proc = git.raw("update-ref", "-m", f"steward: delete {name}", "-d", ref, old)
    if proc.returncode != 0:
        _ref_update_failed(git, name, expected if expected is not None else current, proc)


def is_ancestor(git: GitDir, ancestor: str, descendant: str) -> bool:
    """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own)."""
    a, d = git.resolve(ancestor), git.resolve(descendant)
    proc = git.raw("merge-base", "--is-ancestor", a, d)
    if proc.returncode not in (0, 1):
        raise GitError(f"cannot compare {ancestor!r} and {descendant!r}: {failure(proc)}")
    return proc.returncode == 0


def merge_base(git: GitDir, a: str, b: str) -> str:
    """The best common ancestor of two commits."""
    base = common_base(git, a, b)
    if base is None:
        raise GitError(f"{a!r} and {b!r} share no history")
    return base


def common_base(git: GitDir, a: str, b: str) -> str | None:
    """The best common ancestor of two commits, or None when they share no history."""
    sha_a, sha_b = git.resolve(a), git.resolve(b)
    proc = git.raw("merge-base", sha_a, sha_b)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().split()[0]


def write_push_guard(git: GitDir, patterns: Sequence[str]) -> None:
    """A ``pre-receive`` hook refusing pushes to these branches (``name`` or ``prefix*``)."""
    cases = [f"refs/heads/{check_protect_pattern(p)}" for p in sorted(set(patterns))]
    hooks = git.path / "hooks"
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


def _expected(git: GitDir, expected: str | None, width: int) -> str:
    if expected is None:
        return "0" * width
    if is_full_sha(expected):
        return expected
    return git.resolve(expected)


def _ref_update_failed(git: GitDir, name: str, expected: str | None,
                       proc: subprocess.CompletedProcess[bytes]) -> None:
    proc_now = git.raw("rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}")
    actual = proc_now.stdout.decode().strip() if proc_now.returncode == 0 else None
    wanted = None if expected is None else _expected(git, expected, len(actual or "") or 40)
    if actual != wanted:
        raise StaleBaseError(name, wanted, actual)
    raise GitError(f"cannot update branch {name!r}: {failure(proc)}")
