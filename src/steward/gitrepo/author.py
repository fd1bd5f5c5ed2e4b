"""Who commits: the proposer (human or agent) is a commit's author, Steward its committer."""

from __future__ import annotations

from dataclasses import dataclass

from steward.gitrepo.errors import GitError

COMMITTER_NAME = "Steward"
COMMITTER_EMAIL = "steward@localhost"


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
