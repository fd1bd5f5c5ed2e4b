"""The approvals recorded against changes, and whether a change has the ones it needs.

The guarantees hold whatever ``approvals.yaml`` says (:mod:`steward.pipeline.approvals.rules`):

* the proposer of a change never approves it (compared by name, whatever the kind);
* an approval is bound to the head commit and impact digest the approver saw: it counts only
  while the change is still at that head with that digest, and is *void* otherwise;
* an agent's approval never counts as a human's, and a change proposed by an agent needs at
  least ``agent_authored.humans`` human approvals wherever approvals are needed;
* an approver must still hold an eligible role when the approvals are counted, so revoking a
  role voids its approvals.

Approvals are only ever inserted (``steward_approvals``); voiding is computed, never stored,
so the record of who approved what stays intact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
)

from steward.access.authorize import Forbidden
from steward.access.principal import CREDENTIAL_ROLES, Principal
from steward.access.rbac import Grantee, Rbac, actor_for, parse_principal
from steward.clock import SYSTEM_CLOCK, Clock
from steward.pipeline.approvals.rules import (
    ApprovalError,
    ApprovalRules,
    ChangeLike,
    Requirement,
    describe_roles,
)
from steward.pipeline.tables import metadata
from steward.store import db as store_db
from steward.store.db import UTCDateTime

Verdict = Literal["approve", "reject"]
VERDICTS: Final[tuple[Verdict, ...]] = ("approve", "reject")
_COMMENT_MAX: Final = 2000

approvals = Table(
    "steward_approvals",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("change_id", String(32), nullable=False),
    Column("environment", String(255), nullable=False),
    Column("approver_name", String(255), nullable=False),
    # human | agent
    Column("approver_kind", String(16), nullable=False),
    # approve | reject
    Column("verdict", String(16), nullable=False),
    Column("head", String(64), nullable=False),
    Column("impact_digest", String(80), nullable=False),
    # the approver's roles in the change's environment when it gave its verdict
    Column("roles", JSON, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("comment", Text, nullable=True),
    Index("ix_steward_approvals_change", "change_id", "id"),
)



class SelfApprovalError(Forbidden):
    """The proposer tried to approve their own change (HTTP 403)."""


class HumanApprovalRequired(Forbidden):
    """An agent tried to approve where every required approval must be a human's (403)."""


class StaleApprovalError(ApprovalError):
    """The verdict names a head or impact digest the change no longer has (HTTP 409).

    ``head`` and ``digest`` are the change's current ones, so the reviewer knows what to
    read before giving the verdict again (the REST answer carries them as fields).
    """

    def __init__(self, message: str, *, head: str | None = None,
                 digest: str | None = None) -> None:
        super().__init__(message)
        self.head = head
        self.digest = digest


def check_reviewed(change: ChangeLike, head: str, digest: str | None, *,
                   what: str = "give the verdict") -> None:
    """Refuse (:class:`StaleApprovalError`) unless ``head``/``digest`` are the change's own.

    The one comparison behind every act bound to what its actor reviewed: approve, reject,
    override and deploy. The message names the current head and digest in full.
    """
    current_head, current_digest = change.head, change.impact_digest
    if head == current_head and digest == current_digest:
        return
    if current_digest is None:
        detail = (f"{change.id} has no impact analysis yet (head {current_head}); run "
                  f"'steward change impact {change.id} --again' and review it first")
    elif head != current_head:
        detail = (f"{change.id} is now at head {current_head} (impact report "
                  f"{current_digest}), not {head} as reviewed; review the new head and "
                  f"{what} again")
    else:
        detail = (f"{change.id}'s impact report is now {current_digest} (head "
                  f"{current_head}), not {digest} as reviewed; review the new report and "
                  f"{what} again")
    raise StaleApprovalError(detail, head=current_head, digest=current_digest)


# -- recorded verdicts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    change_id: str
    environment: str
    approver_name: str
    approver_kind: str
    verdict: Verdict
    head: str
    impact_digest: str
    roles: tuple[str, ...]
    at: datetime
    comment: str | None

    @property
    def approver(self) -> str:
        return f"{self.approver_kind}:{self.approver_name}"

    def to_json(self) -> dict[str, Any]:
        return {"approver": {"kind": self.approver_kind, "name": self.approver_name},
                "at": self.at.isoformat().replace("+00:00", "Z"), "change": self.change_id,
                "comment": self.comment, "environment": self.environment, "head": self.head,
                "id": self.id, "impact_digest": self.impact_digest, "roles": list(self.roles),
                "verdict": self.verdict}


@dataclass(frozen=True, slots=True)
class VoidApproval:
    record: ApprovalRecord
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "void_reason": self.reason}


@dataclass(frozen=True, slots=True)
class ApprovalStatus:
    """Whether a change may deploy, and if not, what is missing in words."""

    satisfied: bool
    requirement: Requirement
    valid_approvals: list[ApprovalRecord] = field(default_factory=list)
    void_approvals: list[VoidApproval] = field(default_factory=list)
    rejections: list[ApprovalRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"missing": list(self.missing),
                "rejections": [r.to_json() for r in self.rejections],
                "requirement": self.requirement.to_json(), "satisfied": self.satisfied,
                "valid_approvals": [r.to_json() for r in self.valid_approvals],
                "void_approvals": [v.to_json() for v in self.void_approvals]}


def _short(commit: str) -> str:
    return commit[:12]


def _same_principal(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


class Approvals:
    """Records verdicts on changes and decides whether a change's approvals suffice."""

    def __init__(self, engine: Engine, rules: ApprovalRules, rbac: Rbac, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.rules = rules
        self.rbac = rbac
        #: Stamps each verdict.
        self.clock = clock

    def _eligible(self, approver: Grantee, requirement: Requirement,
                  implied: Sequence[str] = ()) -> tuple[str, ...]:
        """The approver's roles that count for ``requirement`` (admin counts as any).

        ``implied``: roles its token kind gave it when it recorded the verdict (an admin
        token's ``admin``); they are not bindings, so only revoking the token ends them.
        """
        held = self.rbac.counts_as_in(approver, requirement.environment) | set(implied)
        return tuple(sorted(r for r in held if r in requirement.roles or r == "admin"))

    def record(self, change: ChangeLike, actor: Principal, verdict: str, head: str,
               impact_digest: str, comment: str | None = None, *,
               impact_summary: Mapping[str, Any] | None = None) -> ApprovalRecord:
        """Record ``actor``'s verdict on ``change`` as of ``head`` and ``impact_digest``.

        Refused (nothing written) when the verdict is unknown, the change has moved on from
        the head or digest the approver reviewed, the actor proposed the change, lacks the
        permission or an eligible role, or is an agent where only humans may approve.
        """
        if verdict not in VERDICTS:
            raise ApprovalError(f"verdict {verdict!r} is invalid: approve or reject")
        who = actor_for(actor)
        if who.kind == "system":
            raise ApprovalError(f"{who.label}: Steward itself never approves or rejects changes")
        name, kind = parse_principal(who)
        label = f"{kind}:{name}"
        env = change.environment
        proposer = change.proposer
        if verdict == "approve" and _same_principal(name, proposer.name):
            pronoun = "it cannot approve its" if proposer.kind == "agent" else \
                "they cannot approve their"
            raise SelfApprovalError(
                f"{change.id} was proposed by {proposer.kind}:{proposer.name}; "
                f"{pronoun} own change",
                permission="change:approve", environment=env, principal=label)
        permission = "change:approve" if verdict == "approve" else "change:reject"
        # The rollback fast path lets executors (change:rollback) give the verdict too.
        rollback_ok = change.kind == "rollback" and self.rbac.has(who, "change:rollback", env)
        if not rollback_ok:
            self.rbac.check(who, permission, env)
        if not self.rbac.has(who, "desired_state:read", env):
            raise Forbidden(
                f"{label} lacks permission desired_state:read in environment {env}: it cannot "
                f"read the change and impact report it would give its verdict on",
                permission="desired_state:read", environment=env, principal=label)
        check_reviewed(change, head, impact_digest)
        requirement = self.rules.requirement(change, impact_summary)
        held = self._eligible(who, requirement)
        if not held:
            raise Forbidden(
                f"{label} holds no role that counts for {change.kind} changes in {env} "
                f"(needs one of: {', '.join(requirement.roles)})",
                permission=permission, environment=env, principal=label)
        if (verdict == "approve" and kind == "agent" and requirement.approvals
                and requirement.humans >= requirement.approvals):
            raise HumanApprovalRequired(
                f"{label} is an agent and every approval {change.id} needs in {env} must come "
                f"from a human ({'; '.join(requirement.reasons)})",
                permission=permission, environment=env, principal=label)
        text = (comment or "").strip()[:_COMMENT_MAX] or None
        now = self.clock.now()
        roles = sorted(self.rbac.roles_in(who, env))
        with self.engine.begin() as conn:
            result = conn.execute(insert(approvals).values(
                change_id=change.id, environment=env, approver_name=name, approver_kind=kind,
                verdict=verdict, head=head, impact_digest=impact_digest, roles=roles, at=now,
                comment=text))
            key = result.inserted_primary_key
            assert key is not None
            record_id = int(key[0])
        return ApprovalRecord(record_id, change.id, env, name, kind, verdict,
                              head, impact_digest, tuple(roles), now, text)

    def records(self, change_id: str) -> list[ApprovalRecord]:
        """Every verdict ever given on the change, oldest first."""
        c = approvals.c
        query = select(approvals).where(c.change_id == change_id).order_by(c.id)
        with store_db.reading(self.engine) as conn:
            return [ApprovalRecord(
                int(row.id), row.change_id, row.environment, row.approver_name,
                row.approver_kind, cast(Verdict, row.verdict), row.head, row.impact_digest,
                tuple(row.roles or ()), row.at, row.comment) for row in conn.execute(query)]

    def status(self, change: ChangeLike,
               impact_summary: Mapping[str, Any] | None) -> ApprovalStatus:
        """Whether ``change`` at its current head and digest has the approvals it needs."""
        requirement = self.rules.requirement(change, impact_summary)
        env = change.environment
        void: list[VoidApproval] = []
        latest: dict[tuple[str, str], ApprovalRecord] = {}
        for record in self.records(change.id):
            if record.head != change.head:
                void.append(VoidApproval(record, f"given for head {_short(record.head)}; the "
                                                 f"change is now at {_short(change.head)}"))
            elif record.impact_digest != change.impact_digest:
                void.append(VoidApproval(record, f"given for impact report "
                                                 f"{record.impact_digest}; it is now "
                                                 f"{change.impact_digest}"))
            else:
                key = (record.approver_kind, record.approver_name.casefold())
                if key in latest:
                    void.append(VoidApproval(latest[key], "superseded by a later verdict of the "
                                                          "same approver"))
                latest[key] = record
        valid: list[ApprovalRecord] = []
        rejections: list[ApprovalRecord] = []
        for record in sorted(latest.values(), key=lambda r: r.id):
            who = f"{record.approver_kind}:{record.approver_name}"
            if record.verdict == "approve" and _same_principal(record.approver_name,
                                                               change.proposer.name):
                void.append(VoidApproval(record, f"{who} proposed the change"))
            elif not self._eligible(who, requirement, _implied(record)):
                void.append(VoidApproval(record, f"{who} no longer holds a role that counts in "
                                                 f"{env} ({describe_roles(requirement.roles)})"))
            elif record.verdict == "reject":
                rejections.append(record)
            else:
                valid.append(record)
        void.sort(key=lambda v: v.record.id)
        missing = _missing(requirement, valid, rejections)
        return ApprovalStatus(satisfied=not missing, requirement=requirement,
                              valid_approvals=valid, void_approvals=void,
                              rejections=rejections, missing=missing)


def _implied(record: ApprovalRecord) -> tuple[str, ...]:
    return tuple(r for r in record.roles if r in CREDENTIAL_ROLES.values())


def _missing(requirement: Requirement, valid: Sequence[ApprovalRecord],
             rejections: Sequence[ApprovalRecord]) -> list[str]:
    missing: list[str] = []
    for record in rejections:
        missing.append(f"rejected by {record.approver}"
                       + (f": {record.comment}" if record.comment else "")
                       + " (the rejection stands until they approve this head)")
    humans = sum(1 for r in valid if r.approver_kind == "human")
    need_humans = max(0, requirement.humans - humans)
    need_more = max(0, requirement.approvals - len(valid) - need_humans)
    roles, env = describe_roles(requirement.roles), requirement.environment
    if need_humans:
        missing.append(f"{need_humans} more approval{'' if need_humans == 1 else 's'} by a "
                       f"human with role {roles} in {env}")
    if need_more:
        missing.append(f"{need_more} more approval{'' if need_more == 1 else 's'} with role "
                       f"{roles} in {env}")
    return missing
