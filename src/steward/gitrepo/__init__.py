"""The server's desired-state git repository: environments are branches.

Sits below the server (which compiles each environment from its branch) and above the
compiler and store; the change pipeline builds proposals, merges and reverts on it.
"""

from steward.gitrepo.author import COMMITTER_EMAIL, COMMITTER_NAME, STEWARD, Author
from steward.gitrepo.branches import CHANGE_BRANCH_PREFIX, RefSnapshot
from steward.gitrepo.errors import (
    EditError,
    GitError,
    MergeConflictError,
    PatchError,
    StaleBaseError,
    UnknownRefError,
)
from steward.gitrepo.git import git_environment
from steward.gitrepo.names import check_branch_name, check_path, is_full_sha
from steward.gitrepo.repo import DesiredStateRepo

__all__ = [
    "CHANGE_BRANCH_PREFIX",
    "COMMITTER_EMAIL",
    "COMMITTER_NAME",
    "STEWARD",
    "Author",
    "DesiredStateRepo",
    "EditError",
    "GitError",
    "MergeConflictError",
    "PatchError",
    "RefSnapshot",
    "StaleBaseError",
    "UnknownRefError",
    "check_branch_name",
    "check_path",
    "git_environment",
    "is_full_sha",
]
