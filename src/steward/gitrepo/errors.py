"""Failures of the desired-state repository; each names the ref, commit or path at fault."""

from __future__ import annotations

from collections.abc import Sequence

from steward.errors import StewardError


class GitError(StewardError):
    """A git operation on the desired-state repository failed."""


class UnknownRefError(GitError):
    """A branch, commit or ref names nothing in the repository."""

    def __init__(self, ref: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown ref {ref!r}: no such branch or commit "
                                    "in the desired-state repository")
        self.ref = ref


class StaleBaseError(GitError):
    """A branch moved since the caller read it (compare-and-swap lost): re-read and retry."""

    def __init__(self, branch: str, expected: str | None, actual: str | None) -> None:
        want = "to be absent" if expected is None else f"at {expected[:12]}"
        now = "no longer exists" if actual is None else f"is now at {actual[:12]}"
        super().__init__(f"branch {branch!r} moved: expected it {want}, but it {now}; "
                         "re-read the branch and base the change on its new tip")
        self.branch = branch
        self.expected = expected
        self.actual = actual


class EditError(GitError):
    """A proposed edit cannot be committed (bad path, deleting a missing file, no change)."""


class PatchError(EditError):
    """A unified patch does not apply; the message names the file and hunk at fault."""


class MergeConflictError(GitError):
    """Two lines of history change the same lines; names the conflicting files."""

    def __init__(self, into: str, commit: str, files: Sequence[str]) -> None:
        self.files = tuple(files)
        super().__init__(
            f"merging {commit[:12]} into {into!r} conflicts in "
            f"{', '.join(self.files) or 'the tree'}; rebase the change on the tip of {into!r}"
        )
        self.into = into
        self.commit = commit
