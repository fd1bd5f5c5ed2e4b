"""What a path, branch, sha or protected-branch pattern may look like, checked before git
sees it: git accepts more than a shell pattern or a desired-state file tree can hold."""

from __future__ import annotations

import re

from steward.gitrepo.errors import EditError, GitError

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_PROTECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*\*?$")
_MAX_PATH = 4096


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


def check_branch_name(name: object, *, what: str = "branch") -> str:
    """A branch name git accepts and a shell pattern cannot misread."""
    if (not isinstance(name, str) or not _BRANCH.match(name) or name.endswith(".lock")
            or ".." in name or name == "HEAD" or name.endswith(".")):
        raise GitError(f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' "
                       "and '/' between words")
    return name


def check_protect_pattern(pattern: str) -> str:
    """A protected-branch pattern (``name`` or ``prefix*``) safe in a shell ``case``."""
    if not _PROTECT.match(pattern) or ".." in pattern:
        raise GitError(f"invalid protected branch pattern {pattern!r}")
    return pattern
