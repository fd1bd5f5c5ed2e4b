"""What a proposal may be, and the commits it becomes, before a change records them.

Shared by every way of proposing (edits, a patch, a pushed branch, a rollback, a promotion
and amendments): the payload and title rules, the commit's author and message, which
branches are environments, the stale-base and "does it load" checks, and the heads of
rollbacks and amendments. Failures name what to fix; nothing here moves a branch or
writes a record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from steward.access.principal import Principal
from steward.errors import StewardError
from steward.gitrepo import (
    CHANGE_BRANCH_PREFIX,
    Author,
    DesiredStateRepo,
    EditError,
    GitError,
    PatchError,
    UnknownRefError,
    check_path,
)
from steward.pipeline.changes.errors import ChangeError, InvalidProposal, StaleProposal
from steward.pipeline.changes.model import Change

MAX_TITLE: Final = 200


def short(sha: str) -> str:
    return sha[:12]


def name_files(paths: Sequence[str], limit: int = 10) -> str:
    """Up to ``limit`` paths for a message, and how many more there are."""
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def check_payload(edits: Mapping[str, str | bytes | None] | None, patch: str | None) -> None:
    if (edits is None) == (patch is None):
        raise InvalidProposal("propose either file edits or a unified patch (exactly one)")
    if patch is not None:
        if not patch.strip():
            raise InvalidProposal("patch: empty")
        return
    assert edits is not None
    if not edits:
        raise InvalidProposal("edits: no files given")
    for path, content in edits.items():
        try:
            check_path(path)
        except EditError as exc:
            raise InvalidProposal(f"edits: {exc}") from None
        if content is not None and not isinstance(content, str | bytes):
            raise InvalidProposal(
                f"edits[{path!r}]: content must be text, bytes, or null to delete")


def change_title(text: str, *, truncate: bool = False) -> str:
    """One line of at most :data:`MAX_TITLE` characters (cut, when ``truncate``)."""
    title = " ".join(text.split())
    if not title:
        raise InvalidProposal("title: give the change a one-line title")
    if len(title) > MAX_TITLE:
        if not truncate:
            raise InvalidProposal(f"title: at most {MAX_TITLE} characters, not {len(title)}")
        title = title[:MAX_TITLE - 3] + "..."
    return title


def author_of(actor: Principal) -> Author:
    try:
        return Author(actor.name, actor.git_email)
    except GitError as exc:
        raise InvalidProposal(f"proposer {actor.label!r}: {exc}") from None


def commit_message(title: str, message: str, actor: Principal) -> str:
    body = message.strip()
    return f"{title}\n\n{body + chr(10) + chr(10) if body else ''}Proposed-by: {actor.label}\n"


def environment_tip(repo: DesiredStateRepo, environments: Sequence[str] | None,
                    environment: str) -> str:
    """The tip of ``environment``'s branch; ``environments`` (when given) are the only
    environments, else any branch outside ``changes/`` is one."""
    if environment.startswith(CHANGE_BRANCH_PREFIX) or (
            environments is not None and environment not in environments):
        known = environments if environments is not None else tuple(
            sorted(b for b in repo.branches() if not b.startswith(CHANGE_BRANCH_PREFIX)))
        raise InvalidProposal(
            f"{environment!r} is not an environment; known: {', '.join(known)}"
        )
    tip = repo.branches().get(environment)
    if tip is None:
        raise InvalidProposal(
            f"environment {environment!r} has no branch in the desired-state repository"
        )
    return tip


def resolve_commit(repo: DesiredStateRepo, ref: str, what: str) -> str:
    try:
        return repo.resolve(ref)
    except UnknownRefError:
        raise InvalidProposal(
            f"{what} {ref!r} is not a commit of the desired-state repository"
        ) from None


def build(repo: DesiredStateRepo, parent: str, author: Author, message: str, *,
          edits: Mapping[str, str | bytes | None] | None, patch: str | None) -> str:
    """The proposal's commit on ``parent`` (empty allowed: the caller says what it changes)."""
    try:
        return repo.commit(parent=parent, author=author, message=message,
                           edits=edits, patch=patch, allow_empty=True)
    except PatchError as exc:
        raise InvalidProposal(f"the patch does not apply to {short(parent)}: {exc}") from exc
    except GitError as exc:
        raise InvalidProposal(f"cannot build the proposal on {short(parent)}: {exc}") from exc


def check_not_stale(repo: DesiredStateRepo, environment: str, base: str, tip: str,
                    touched: Sequence[str], *, advice: str | None = None) -> None:
    """Refuse a proposal whose files also changed in ``environment`` between base and tip."""
    moved = repo.changed_files(base, tip)
    overlap = sorted(set(touched) & set(moved))
    if overlap:
        raise StaleProposal(
            f"base {short(base)} is stale: {environment} moved to {short(tip)} since and "
            f"changed {name_files(overlap)} too; "
            + (advice or f"re-read {'it' if len(overlap) == 1 else 'them'} at "
               f"{short(tip)} and propose again")
        )


def check_loads(repo: DesiredStateRepo, head: str, environment: str) -> None:
    try:
        repo.load(head)
    except StewardError as exc:
        raise InvalidProposal(
            f"the proposed {environment} tree {short(head)} does not load, so nothing "
            f"was recorded: {exc}"
        ) from exc


def rollback_head(repo: DesiredStateRepo, change: Change, tip: str, touched: Sequence[str],
                  author: Author, message: str) -> str:
    """The commit on ``tip`` restoring the files ``change`` touched to their base content.

    When the environment's tree is still exactly the change's head, the rollback's tree is
    the change's base. When other work landed since, only the change's own files are
    restored to their base content, provided nothing after the change touched them;
    otherwise an automatic rollback would undo others' work, and is refused. No branch moves.
    """
    env = change.environment
    since = repo.changed_files(change.head, tip)
    try:
        if not since:
            head = repo.restore(parent=tip, to_tree_of=change.base, author=author,
                                message=message)
        else:
            overlap = sorted(set(touched) & set(since))
            if overlap:
                raise ChangeError(
                    f"cannot roll back {change.id} automatically: {name_files(overlap)} "
                    f"changed in {env} after it; propose a fix instead"
                )
            edits = repo.read_files(change.base, touched)
            head = repo.commit(parent=tip, author=author, message=message,
                               edits=edits, allow_empty=True)
    except GitError as exc:
        raise ChangeError(f"cannot build the rollback of {change.id}: {exc}") from exc
    if not repo.changed_files(tip, head):
        raise ChangeError(
            f"{change.id}'s files in {env} already match {short(change.base)}: "
            "nothing to roll back"
        )
    return head


def amended_head(repo: DesiredStateRepo, change: Change, actor: Principal, *,
                 edits: Mapping[str, str | bytes | None] | None, patch: str | None,
                 head: str | None, message: str | None) -> str:
    """The new head of an amended change: ``head`` itself (it must descend from the
    change's base), or a commit of the edits or patch on the change's head."""
    if head is not None:
        new = resolve_commit(repo, head, "head")
        if not repo.is_ancestor(change.base, new):
            raise InvalidProposal(
                f"the new head {short(new)} does not descend from {change.id}'s base "
                f"{short(change.base)}"
            )
    else:
        check_payload(edits, patch)
        text = message.strip() if message and message.strip() else f"Amend {change.id}"
        subject = change_title(text.splitlines()[0], truncate=True)
        new = build(repo, change.head, author_of(actor),
                    commit_message(subject, text, actor), edits=edits, patch=patch)
    return new
