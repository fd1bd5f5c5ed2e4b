"""Changes: proposals against an environment's branch, their records and their states.

A change is a pair of commits in the desired-state repository (``base`` and ``head``, the
head on the branch ``changes/<id>``) plus a row in the server's database that the state
machine of :mod:`steward.pipeline.changes.states` moves along. This module is the only
writer of both, and keeps them consistent: a proposal whose head does not load, or whose
branch cannot be created, leaves neither a record nor a branch behind.

**Stale bases.** A proposal names the commit it was written against (``base``; by default
the environment's tip). It must be the tip or an ancestor of it. When the environment moved
since ``base``:

* if any file the proposal changes was also changed in the environment between ``base`` and
  the tip, it is rejected as stale (:class:`StaleProposal`), naming those files: the proposer
  wrote against content that no longer exists and must re-read it;
* otherwise the proposal is *rebased*: its files (exactly as proposed) are committed on top of
  the tip, the change's ``base`` is the tip, and the history records ``rebased_from``. The
  change's ``base..head`` is therefore always exactly the proposal, on a current base.

A branch pushed by a person (:meth:`Changes.propose_branch`) is never rewritten: its base is
its merge-base with the environment, with the same conflict rule; deploy merges it.

**Amendments** (:meth:`Changes.update_head`) give an open change a new head on its branch.
The impact report and every approval bound to the old head are void: the change returns to
``proposed`` and must be analysed again.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from steward.access.principal import SYSTEM, Principal
from steward.clock import SYSTEM_CLOCK, Clock
from steward.gitrepo import CHANGE_BRANCH_PREFIX, DesiredStateRepo, GitError, StaleBaseError
from steward.pipeline.changes.errors import (
    ChangeConflict,
    ChangeError,
    ChangeNotFound,
    IllegalTransition,
    InvalidProposal,
    StaleProposal,
)
from steward.pipeline.changes.model import (
    Change,
    HistoryEntry,
    change_counter,
    change_history,
    changes,
)
from steward.pipeline.changes.proposals import (
    amended_head,
    author_of,
    build,
    change_title,
    check_loads,
    check_not_stale,
    check_payload,
    commit_message,
    environment_tip,
    resolve_commit,
    rollback_head,
    short,
)
from steward.pipeline.changes.states import (
    MERGED_STATES,
    OPEN_STATES,
    ChangeKind,
    ChangeState,
    action_for,
    describe_next,
    parse_state,
)

__all__ = [
    "Change",
    "ChangeConflict",
    "ChangeError",
    "ChangeNotFound",
    "Changes",
    "HistoryEntry",
    "IllegalTransition",
    "InvalidProposal",
    "StaleProposal",
]

_COUNTER: Final = "changes"
_ATTEMPTS: Final = 5


class Changes:
    """Proposals, change records and their state machine, over one repository and database.

    ``environments`` (when given) are the branches changes may target; otherwise any existing
    branch outside ``changes/`` is an environment.
    """

    def __init__(self, engine: Engine, repo: DesiredStateRepo, *,
                 environments: Sequence[str] | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock
        self.repo = repo
        self.environments = tuple(environments) if environments is not None else None

    # -- reading ---------------------------------------------------------------------------

    def get(self, change_id: str) -> Change:
        with self.engine.connect() as conn:
            return self._get(conn, change_id)

    @staticmethod
    def _get(conn: Connection, change_id: str) -> Change:
        row = conn.execute(select(changes).where(changes.c.id == change_id)).one_or_none()
        if row is None:
            raise ChangeNotFound(f"no change {change_id!r}")
        return Change.from_row(row)

    def list(self, state: str | None = None, environment: str | None = None, *,
             parent: str | None = None) -> builtins.list[Change]:
        """Changes in the order they were proposed, optionally filtered."""
        query = select(changes).order_by(changes.c.seq)
        if state is not None:
            query = query.where(changes.c.state == parse_state(state))
        if environment is not None:
            query = query.where(changes.c.environment == environment)
        if parent is not None:
            query = query.where(changes.c.parent_id == parent)
        with self.engine.connect() as conn:
            return [Change.from_row(row) for row in conn.execute(query)]

    def history(self, change_id: str) -> builtins.list[HistoryEntry]:
        """What happened to the change, oldest first."""
        with self.engine.connect() as conn:
            self._get(conn, change_id)
            rows = conn.execute(
                select(change_history).where(change_history.c.change_id == change_id)
                .order_by(change_history.c.id)
            )
            return [HistoryEntry.from_row(row) for row in rows]

    # -- proposing -------------------------------------------------------------------------

    def propose_edits(
        self,
        actor: Principal,
        environment: str,
        *,
        base: str | None = None,
        edits: Mapping[str, str | bytes | None] | None = None,
        patch: str | None = None,
        title: str,
        message: str = "",
    ) -> Change:
        """Propose file edits (path -> content, None deletes) or a unified patch.

        See the module docstring for the stale-base rule. Nothing is recorded unless the
        proposed head loads.
        """
        return self._propose_edits(actor, environment, base=base, edits=edits, patch=patch,
                                   title=title, message=message)

    def _propose_edits(
        self,
        actor: Principal,
        environment: str,
        *,
        base: str | None,
        edits: Mapping[str, str | bytes | None] | None,
        patch: str | None,
        title: str,
        message: str,
        kind: ChangeKind = "normal",
        parent: str | None = None,
    ) -> Change:
        title = change_title(title)
        tip = environment_tip(self.repo, self.environments, environment)
        check_payload(edits, patch)
        base_sha = tip if base is None else resolve_commit(self.repo, base, "base")
        if base_sha != tip and not self.repo.is_ancestor(base_sha, tip):
            raise StaleProposal(
                f"base {short(base_sha)} is not in the history of {environment!r} (tip "
                f"{short(tip)}); propose against {environment}'s tip"
            )
        author = author_of(actor)
        git_message = commit_message(title, message, actor)
        candidate = build(self.repo, base_sha, author, git_message, edits=edits, patch=patch)
        touched = self.repo.changed_files(base_sha, candidate)
        if not touched:
            raise InvalidProposal(
                f"the proposal changes nothing: every edit matches {environment} at "
                f"{short(base_sha)}"
            )
        detail: dict[str, Any] = {"files": sorted(touched)}
        head = candidate
        if base_sha != tip:
            check_not_stale(self.repo, environment, base_sha, tip, touched)
            # Nothing the proposal touches moved: the same files on top of the tip.
            rebased = self.repo.read_files(candidate, touched)
            head = build(self.repo, tip, author, git_message, edits=rebased, patch=None)
            detail["rebased_from"] = base_sha
        check_loads(self.repo, head, environment)
        return self._record(
            actor, environment, base=tip, head=head, title=title, message=message,
            kind=kind, parent=parent, detail=detail,
        )

    def propose_branch(self, actor: Principal, branch: str, environment: str, message: str, *,
                       title: str | None = None) -> Change:
        """Turn a pushed branch into a change: base = merge-base with the environment."""
        tip = environment_tip(self.repo, self.environments, environment)
        if branch == environment or branch.startswith(CHANGE_BRANCH_PREFIX) or (
                self.environments is not None and branch in self.environments):
            raise InvalidProposal(
                f"branch {branch!r} cannot be proposed: push your work to a branch of its own "
                f"(not an environment or a changes/ branch)"
            )
        head = self.repo.branches().get(branch)
        if head is None:
            raise InvalidProposal(
                f"no branch {branch!r} in the desired-state repository; push it first "
                f"(git push origin HEAD:{branch})"
            )
        if not message.strip():
            raise InvalidProposal("message: describe the change (-m MESSAGE)")
        base = self.repo.common_base(head, tip)
        if base is None:
            raise InvalidProposal(
                f"branch {branch!r} shares no history with {environment!r}; branch from it"
            )
        touched = self.repo.changed_files(base, head)
        if not touched:
            raise InvalidProposal(
                f"branch {branch!r} ({short(head)}) changes nothing relative to {environment} "
                f"at {short(base)}"
            )
        if base != tip:
            check_not_stale(self.repo, environment, base, tip, touched,
                            advice=f"merge or rebase {branch} onto {environment}")
        check_loads(self.repo, head, environment)
        return self._record(
            actor, environment, base=base, head=head,
            title=change_title(title if title is not None else message.strip().splitlines()[0]),
            message=message.strip(), kind="normal", parent=None,
            detail={"files": sorted(touched), "from_branch": branch},
        )

    def create_revert(self, change_id: str, actor: Principal) -> Change:
        """A rollback change: restores what ``change_id`` changed, on top of today's tip.

        Refused when work landed since on the change's own files (see :func:`rollback_head`).
        """
        change = self.get(change_id)
        if change.state not in MERGED_STATES:
            raise ChangeError(
                f"{change.id} is {change.state}: only a deploying, deployed or failed change "
                "can be rolled back" + (
                    f" (reject it instead: steward change reject {change.id})"
                    if change.state in OPEN_STATES else "")
            )
        for other in self.list(parent=change.id):
            if other.kind == "rollback" and other.state not in ("rejected", "failed",
                                                                 "rolled_back"):
                raise ChangeConflict(
                    f"{change.id} already has rollback {other.id} ({other.state})"
                )
        env = change.environment
        tip = environment_tip(self.repo, self.environments, env)
        if not self.repo.is_ancestor(change.head, tip):
            raise ChangeError(
                f"{change.id}'s head {short(change.head)} is not in {env} (tip {short(tip)}): "
                "it was never merged, so there is nothing to roll back"
            )
        touched = self.repo.changed_files(change.base, change.head)
        author = author_of(actor)
        title = change_title(f"Roll back {change.id}: {change.title}", truncate=True)
        body = (f"Restores the files {change.id} changed in {env} to their content at "
                f"{short(change.base)}.")
        git_message = commit_message(title, body, actor)
        head = rollback_head(self.repo, change, tip, touched, author, git_message)
        check_loads(self.repo, head, env)
        created = self._record(
            actor, env, base=tip, head=head, title=title, message=body, kind="rollback",
            parent=change.id, detail={"files": sorted(touched), "rollback_of": change.id},
        )
        self._note(change.id, actor, "rollback_proposed", {"rollback": created.id})
        return created

    def create_promotion(self, change_id: str, actor: Principal, environment: str) -> Change:
        """Propose ``change_id``'s diff to another environment (``change promote``)."""
        change = self.get(change_id)
        if environment == change.environment:
            raise InvalidProposal(f"{change.id} already targets {environment!r}")
        if change.state not in ("deployed",):
            raise ChangeError(
                f"{change.id} is {change.state}: only a deployed change can be promoted"
            )
        patch = self.repo.diff(change.base, change.head)
        try:
            promoted = self._propose_edits(
                actor, environment, base=None, edits=None, patch=patch,
                title=change_title(f"Promote {change.id} to {environment}: {change.title}",
                                   truncate=True),
                message=change.message, kind="promotion", parent=change.id,
            )
        except InvalidProposal as exc:
            raise InvalidProposal(f"cannot promote {change.id} to {environment}: {exc}") from exc
        self._note(change.id, actor, "promotion_proposed",
                   {"promotion": promoted.id, "environment": environment})
        return promoted

    # -- amending --------------------------------------------------------------------------

    def update_head(
        self,
        change_id: str,
        actor: Principal,
        *,
        edits: Mapping[str, str | bytes | None] | None = None,
        patch: str | None = None,
        head: str | None = None,
        message: str | None = None,
        expected_head: str | None = None,
    ) -> Change:
        """Amend an open change: a commit on its head (edits or patch), or a new ``head``.

        The change returns to ``proposed`` with no impact digest; approvals bound to the old
        head are void (recorded in the history; the approvals table checks the binding).
        """
        change = self.get(change_id)
        if change.state not in OPEN_STATES:
            raise IllegalTransition(
                f"{change.id} is {change.state}: only a proposed, analysed or approved change "
                "can be amended"
            )
        if expected_head is not None and expected_head != change.head:
            raise ChangeConflict(
                f"{change.id}'s head is {short(change.head)}, not {short(expected_head)}: "
                "it was amended meanwhile; read it again"
            )
        given = sum(x is not None for x in (edits, patch, head))
        if given != 1:
            raise InvalidProposal("amend with exactly one of: edits, a patch, or a new head")
        new = amended_head(self.repo, change, actor, edits=edits, patch=patch, head=head,
                           message=message)
        if not self.repo.changed_files(change.head, new):
            raise InvalidProposal(f"the amendment changes nothing in {change.id}")
        touched = self.repo.changed_files(change.base, new)
        if not touched:
            raise InvalidProposal(
                f"after the amendment {change.id} changes nothing relative to its base "
                f"{short(change.base)}; reject it instead"
            )
        tip = environment_tip(self.repo, self.environments, change.environment)
        if tip != change.base and self.repo.is_ancestor(change.base, tip):
            check_not_stale(self.repo, change.environment, change.base, tip, touched)
        check_loads(self.repo, new, change.environment)
        try:
            self.repo.set_branch(change.branch, new, expected=change.head)
        except StaleBaseError as exc:
            raise ChangeConflict(
                f"{change.branch} moved meanwhile; read {change.id} again ({exc})"
            ) from exc
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(changes)
                    .where(changes.c.id == change.id, changes.c.head == change.head,
                           changes.c.state == change.state)
                    .values(head=new, state="proposed", impact_digest=None, updated_at=now)
                )
                if result.rowcount != 1:
                    raise ChangeConflict(
                        f"{change.id} changed meanwhile (it was {change.state} at "
                        f"{short(change.head)}); read it again"
                    )
                _append(conn, change.id, now, actor, "amend", change.state, "proposed", {
                    "from_head": change.head, "to_head": new, "files": sorted(touched),
                    "approvals": "void", "impact_digest": change.impact_digest,
                })
        except BaseException:
            self._undo_branch(change.branch, to=change.head, expected=new)
            raise
        return self.get(change.id)

    # -- moving ----------------------------------------------------------------------------

    def transition(
        self,
        change_id: str,
        to_state: str,
        actor: Principal,
        *,
        detail: Mapping[str, Any] | None = None,
        expected_head: str | None = None,
        expected_impact: str | None = None,
    ) -> Change:
        """Move a change along the state machine, atomically (compare-and-set on its row).

        ``expected_head``/``expected_impact`` bind the move to what the caller checked (an
        approval to the head and impact digest it approved): if either changed, nothing moves.
        """
        target = parse_state(to_state, field="to_state")
        if target == "proposed":
            raise IllegalTransition(
                f"a change returns to 'proposed' only when its head changes (amend {change_id})"
            )
        for _attempt in range(_ATTEMPTS):
            change = self.get(change_id)
            _check_binding(change, expected_head, expected_impact)
            action = action_for(change.state, target)
            if action is None:
                raise IllegalTransition(
                    f"{change.id} is {change.state}: it cannot become {target} "
                    f"({describe_next(change.state)})"
                )
            if target == "analysed" and change.impact_digest is None:
                raise IllegalTransition(
                    f"{change.id} has no impact report yet: run steward change impact "
                    f"{change.id} first"
                )
            now = self.clock.now()
            with self.engine.begin() as conn:
                conditions = [changes.c.id == change.id, changes.c.state == change.state,
                              changes.c.head == change.head]
                conditions.append(
                    changes.c.impact_digest.is_(None) if change.impact_digest is None
                    else changes.c.impact_digest == change.impact_digest)
                result = conn.execute(
                    update(changes).where(*conditions).values(state=target, updated_at=now)
                )
                if result.rowcount != 1:
                    continue  # moved meanwhile: judge the move again from its new state
                _append(conn, change.id, now, actor, action, change.state, target,
                        dict(detail) if detail is not None else None)
            return self.get(change.id)
        raise ChangeConflict(f"{change_id} keeps changing under this request; try again")

    def reject(self, change_id: str, actor: Principal, reason: str, *,
               expected_head: str | None = None,
               expected_impact: str | None = None) -> Change:
        """Close an open change for good; its branch stays, for the audit trail.

        ``expected_head``/``expected_impact``: what the rejecter reviewed (see transition).
        """
        if not reason.strip():
            raise ChangeError("reason: say why the change is rejected")
        return self.transition(change_id, "rejected", actor, detail={"reason": reason.strip()},
                               expected_head=expected_head, expected_impact=expected_impact)

    def set_impact(self, change_id: str, digest: str, *, actor: Principal | None = None,
                   expected_head: str | None = None) -> Change:
        """Record the digest of the change's latest impact report.

        The report was computed for a head (``expected_head``): if the change was amended
        since, the digest is refused. A new digest on an *approved* change voids its
        approvals, so the change goes back to ``analysed``.
        """
        if not digest.startswith("sha256:"):
            raise ChangeError(f"impact digest {digest!r} is not of the form sha256:<hex>")
        who = actor or SYSTEM
        for _attempt in range(_ATTEMPTS):
            change = self.get(change_id)
            _check_binding(change, expected_head, None)
            if change.state not in OPEN_STATES:
                raise IllegalTransition(
                    f"{change.id} is {change.state}: its impact report can no longer change"
                )
            target: ChangeState = change.state
            if change.state == "approved" and digest != change.impact_digest:
                target = "analysed"
            now = self.clock.now()
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(changes)
                    .where(changes.c.id == change.id, changes.c.state == change.state,
                           changes.c.head == change.head)
                    .values(impact_digest=digest, state=target, updated_at=now)
                )
                if result.rowcount != 1:
                    continue
                detail: dict[str, Any] = {"digest": digest, "previous": change.impact_digest,
                                          "head": change.head}
                if target != change.state:
                    detail["approvals"] = "void"
                _append(conn, change.id, now, who, "impact", change.state, target, detail)
            return self.get(change.id)
        raise ChangeConflict(f"{change_id} keeps changing under this request; try again")

    # -- internals -------------------------------------------------------------------------

    def _record(self, actor: Principal, environment: str, *, base: str, head: str, title: str,
                message: str, kind: ChangeKind, parent: str | None,
                detail: dict[str, Any]) -> Change:
        """Allocate the id, write the row and its first history entry, create the branch.

        The branch is created inside the database transaction: if it fails the row is rolled
        back; if the commit fails the branch is deleted.
        """
        for _attempt in range(_ATTEMPTS):
            branch_created: str | None = None
            try:
                with self.engine.begin() as conn:
                    seq = _allocate(conn)
                    existing = self.repo.branches()
                    # A branch left by an earlier database (restored, or reset) keeps its number.
                    while f"{CHANGE_BRANCH_PREFIX}chg-{seq}" in existing:
                        seq = _allocate(conn)
                    change_id = f"chg-{seq}"
                    branch = f"{CHANGE_BRANCH_PREFIX}{change_id}"
                    now = self.clock.now()
                    conn.execute(insert(changes).values(
                        id=change_id, seq=seq, title=title, message=message,
                        proposer_name=actor.name, proposer_kind=actor.kind,
                        environment=environment, base=base, head=head, branch=branch,
                        state="proposed", impact_digest=None, kind=kind, parent_id=parent,
                        created_at=now, updated_at=now,
                    ))
                    _append(conn, change_id, now, actor, "propose", None, "proposed", {
                        **detail, "base": base, "head": head, "kind": kind, "parent": parent,
                    })
                    try:
                        self.repo.set_branch(branch, head, expected=None)
                    except GitError as exc:
                        raise ChangeError(f"cannot create branch {branch}: {exc}") from exc
                    branch_created = branch
            except BaseException as exc:
                if branch_created is not None:
                    self._undo_branch(branch_created, to=None, expected=head)
                if isinstance(exc, IntegrityError):
                    # Two first-ever proposals created the counter row at once: try again.
                    continue
                raise
            return self.get(change_id)
        raise ChangeConflict("could not allocate a change id; try again")

    def _note(self, change_id: str, actor: Principal, action: str, detail: dict[str, Any]) -> None:
        """A history entry that does not move the state (e.g. a rollback was proposed).

        The state is read before the write transaction: on SQLite a transaction that reads
        first and writes later cannot wait for the write lock, only fail.
        """
        state = self.get(change_id).state
        with self.engine.begin() as conn:
            _append(conn, change_id, self.clock.now(), actor, action, state, state, detail)

    def _undo_branch(self, branch: str, *, to: str | None, expected: str) -> None:
        """Best effort: put a change branch back after the database refused the write."""
        with contextlib.suppress(GitError):  # the original error matters more
            if to is None:
                self.repo.delete_branch(branch, expected=expected)
            else:
                self.repo.set_branch(branch, to, expected=expected)


def _allocate(conn: Connection) -> int:
    """The next change number; the UPDATE takes the row (PostgreSQL) or write (SQLite) lock."""
    result = conn.execute(
        update(change_counter).where(change_counter.c.name == _COUNTER)
        .values(value=change_counter.c.value + 1)
    )
    if result.rowcount == 0:
        conn.execute(insert(change_counter).values(name=_COUNTER, value=1))
        return 1
    value: int = conn.execute(
        select(change_counter.c.value).where(change_counter.c.name == _COUNTER)
    ).scalar_one()
    return value


def _append(conn: Connection, change_id: str, at: datetime, actor: Principal, action: str,
            from_state: str | None, to_state: str, detail: dict[str, Any] | None) -> None:
    conn.execute(insert(change_history).values(
        change_id=change_id, at=at, actor=actor.label, action=action, from_state=from_state,
        to_state=to_state, detail=detail,
    ))


def _check_binding(change: Change, expected_head: str | None,
                   expected_impact: str | None) -> None:
    if expected_head is not None and expected_head != change.head:
        raise ChangeConflict(
            f"{change.id}'s head is now {short(change.head)}, not {short(expected_head)}: it "
            "was amended; review it again"
        )
    if expected_impact is not None and expected_impact != change.impact_digest:
        raise ChangeConflict(
            f"{change.id}'s impact report is now {change.impact_digest or 'missing'}, not "
            f"{expected_impact}: it was re-analysed; review it again"
        )
