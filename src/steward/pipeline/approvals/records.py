"""Approval rules per environment, and the approvals recorded against changes.

The rules say how many approvals a change needs before it may deploy, from which roles, and
how many of them must come from humans. They are read from ``<data>/approvals.yaml``; without
it the defaults below apply. The guarantees hold whatever the file says:

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast

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
from steward.access.roles import BUILTIN_ROLES
from steward.clock import utcnow
from steward.errors import StewardError, describe_value
from steward.language.errors import did_you_mean
from steward.language.yamlsource import load_yaml
from steward.pipeline.tables import metadata
from steward.store import db as store_db
from steward.store.db import UTCDateTime

Verdict = Literal["approve", "reject"]
VERDICTS: Final[tuple[Verdict, ...]] = ("approve", "reject")
APPROVALS_FILE: Final = "approvals.yaml"
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


class ApprovalError(StewardError):
    """A verdict cannot be recorded (HTTP 409 unless a subclass says otherwise)."""


class ApprovalRulesError(ApprovalError):
    """``approvals.yaml`` is invalid; the message names the file, line and field."""


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


# -- what this module needs from a change -----------------------------------------------------


class ChangeLike(Protocol):
    """The fields of a change record approvals depend on (``change_model.Change`` has them)."""

    @property
    def id(self) -> str: ...

    @property
    def proposer(self) -> Principal: ...

    @property
    def environment(self) -> str: ...

    @property
    def head(self) -> str: ...

    @property
    def impact_digest(self) -> str | None: ...

    @property
    def kind(self) -> str: ...


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlastRadiusRule:
    """Over ``percent`` % of the environment's nodes, ``approvals`` approvals are needed."""

    percent: float
    approvals: int


@dataclass(frozen=True, slots=True)
class RollbackRule:
    """The fast path for changes that revert a deployed change.

    Its count is capped at the environment's own ``approvals``: a fast path is never stricter.
    """

    approvals: int
    roles: tuple[str, ...]
    #: None: as many as the environment's own rule asks for.
    humans: int | None = None


@dataclass(frozen=True, slots=True)
class EnvironmentRule:
    environment: str
    approvals: int
    roles: tuple[str, ...]
    humans: int
    blast_radius: BlastRadiusRule | None
    rollback: RollbackRule

    def to_json(self) -> dict[str, Any]:
        blast = self.blast_radius
        return {
            "approvals": self.approvals,
            "blast_radius": None if blast is None else {"approvals": blast.approvals,
                                                        "percent": blast.percent},
            "environment": self.environment,
            "humans": self.humans,
            "roles": list(self.roles),
            "rollback": {"approvals": self.rollback.approvals,
                         "humans": (self.humans if self.rollback.humans is None
                                    else self.rollback.humans),
                         "roles": list(self.rollback.roles)},
        }


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one change needs, with the reasons in words."""

    environment: str
    approvals: int
    humans: int
    roles: tuple[str, ...]
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"approvals": self.approvals, "environment": self.environment,
                "humans": self.humans, "reasons": list(self.reasons), "roles": list(self.roles)}


_DEFAULT_RULE: Final = EnvironmentRule(
    environment="*", approvals=1, roles=("approver",), humans=0,
    blast_radius=BlastRadiusRule(percent=25.0, approvals=2),
    rollback=RollbackRule(approvals=1, roles=("approver", "executor"), humans=None),
)
#: The environments of the defaults, as overlays on ``defaults`` (and on a file's
#: ``defaults`` when the file lists no environments of its own).
_DEFAULT_ENVIRONMENTS: Final[Mapping[str, Mapping[str, int]]] = {
    "development": {"approvals": 0},
    "staging": {},
    "production": {"humans": 1},
}


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    """Approval rules by environment; :meth:`defaults` when there is no ``approvals.yaml``."""

    default: EnvironmentRule
    environments: Mapping[str, EnvironmentRule]
    agent_authored_humans: int = 1
    source: str | None = None

    @classmethod
    def defaults(cls) -> ApprovalRules:
        """development: none; staging: 1 approver; production: 1 human approver."""
        return replace(parse_approval_rules("", "(defaults)"), source=None)

    def for_environment(self, environment: str) -> EnvironmentRule:
        rule = self.environments.get(environment)
        return rule if rule is not None else replace(self.default, environment=environment)

    def requirement(self, change: ChangeLike,
                    impact_summary: Mapping[str, Any] | None) -> Requirement:
        """What ``change`` needs, given its impact report's ``summary`` (None: unknown).

        An unknown blast radius counts as over the limit: the rule fails closed.
        """
        env = change.environment
        rule = self.for_environment(env)
        rollback = change.kind == "rollback"
        if rollback:
            # A fast path is never stricter than the environment's own rule.
            approvals = min(rule.rollback.approvals, rule.approvals)
            roles = rule.rollback.roles
            humans = rule.humans if rule.rollback.humans is None else rule.rollback.humans
            humans = min(humans, approvals)
            reasons = [f"rollback fast path in {env}: {_count(approvals)}"
                       + (f" with role {_roles(roles)}" if approvals else "")]
        else:
            approvals, roles, humans = rule.approvals, rule.roles, rule.humans
            reasons = [f"{env} needs {_count(approvals)}"
                       + (f" with role {_roles(roles)}" if approvals else "")]
        if humans:
            reasons.append(f"{env} needs {_count(humans)} by a human")
        blast = rule.blast_radius
        if approvals and not rollback and blast is not None and blast.approvals > approvals:
            percent = _blast_percent(impact_summary)
            if percent is None:
                approvals = blast.approvals
                reasons.append(f"blast radius unknown (no impact analysis): treated as over "
                               f"{blast.percent:g}%, so {_count(approvals)}")
            elif percent > blast.percent:
                approvals = blast.approvals
                reasons.append(f"blast radius {percent:g}% of {env} is over {blast.percent:g}%, "
                               f"so {_count(approvals)}")
        if approvals and change.proposer.kind == "agent" and self.agent_authored_humans > humans:
            humans = self.agent_authored_humans
            reasons.append(f"proposed by an agent ({change.proposer.kind}:"
                           f"{change.proposer.name}): {_count(humans)} by a human")
        only_humans = _human_only(impact_summary)
        if only_humans:  # a policy's require_human: every approval a human's, at least one
            approvals = humans = max(approvals, humans, 1)
            reasons.append(f"every approval must come from a human: {'; '.join(only_humans)}")
        approvals = max(approvals, humans)
        return Requirement(env, approvals, humans, roles, tuple(reasons))

    def to_json(self) -> dict[str, Any]:
        return {"agent_authored": {"humans": self.agent_authored_humans},
                "default": self.default.to_json(),
                "environments": {k: v.to_json() for k, v in sorted(self.environments.items())},
                "source": self.source}


def _human_only(summary: Mapping[str, Any] | None) -> list[str]:
    """The policies' reasons why only humans may approve (``Analysis.summary``)."""
    reasons = summary.get("human_approval") if summary else None
    return [str(reason) for reason in reasons] if isinstance(reasons, list) else []


def _blast_percent(summary: Mapping[str, Any] | None) -> float | None:
    if not summary:
        return None
    blast = summary.get("blast_radius")
    percent = blast.get("percent") if isinstance(blast, Mapping) else None
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        return None
    return float(percent) if math.isfinite(percent) else None


def _count(n: int) -> str:
    return f"{n} approval{'' if n == 1 else 's'}"


def _roles(roles: Sequence[str]) -> str:
    return " or ".join(roles)


# -- approvals.yaml ---------------------------------------------------------------------------


_RULE_FIELDS: Final = ("approvals", "blast_radius", "humans", "roles", "rollback")
_TOP_FIELDS: Final = ("agent_authored", "blast_radius", "defaults", "environments", "rollback")


def load_approval_rules(config_dir: Path | None, *, roles: Sequence[str] | None = None,
                        environments: Sequence[str] | None = None) -> ApprovalRules:
    """The rules of ``<config_dir>/approvals.yaml``, or the defaults when it is absent.

    ``roles`` (default: the built-in ones) are the role names the rules may name;
    ``environments``, when given, the environments they may name.
    """
    if config_dir is None:
        return ApprovalRules.defaults()
    path = Path(config_dir) / APPROVALS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ApprovalRules.defaults()
    except (OSError, UnicodeDecodeError) as exc:
        raise ApprovalRulesError(f"cannot read {path}: {exc}") from None
    return parse_approval_rules(text, str(path), roles=roles, environments=environments)


def parse_approval_rules(text: str, file: str, *, roles: Sequence[str] | None = None,
                         environments: Sequence[str] | None = None) -> ApprovalRules:
    """Validate and build rules from YAML text; every error names ``file:line`` and field.

    Sections overlay the defaults field by field, except ``environments``: when present it
    replaces the default list, and environments not in it follow ``defaults``.
    """
    return _RulesParser(text, file, tuple(roles) if roles is not None else tuple(BUILTIN_ROLES),
                        environments).parse()


class _RulesParser:
    def __init__(self, text: str, file: str, roles: tuple[str, ...],
                 environments: Sequence[str] | None) -> None:
        try:
            self.document, self.source = load_yaml(text, file)
        except StewardError as exc:
            raise ApprovalRulesError(exc.message, location=exc.location) from None
        self.file = file
        self.roles = roles
        self.environments = environments

    def fail(self, path: tuple[Any, ...], message: str) -> ApprovalRulesError:
        name = ".".join(str(p) for p in path)
        return ApprovalRulesError(f"{name}: {message}" if name else message,
                                  location=self.source.where(path))

    def mapping(self, value: Any, path: tuple[Any, ...], known: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, not {describe_value(value)}")
        for key in value:
            if key not in known:
                raise self.fail((*path, key), f"unknown field {key!r}"
                                f"{did_you_mean(str(key), known)}; known: {', '.join(known)}")
        return value

    def integer(self, value: Any, path: tuple[Any, ...], minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"expected an integer of at least {minimum}, not "
                                  f"{describe_value(value)}")
        return value

    def role_list(self, value: Any, path: tuple[Any, ...]) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a non-empty list of role names, not "
                                  f"{describe_value(value)}")
        for index, role in enumerate(value):
            if not isinstance(role, str) or role not in self.roles:
                raise self.fail((*path, index), f"unknown role {role!r}"
                                f"{did_you_mean(str(role), self.roles)}; known: "
                                f"{', '.join(sorted(self.roles))}")
        return tuple(dict.fromkeys(value))

    def blast(self, value: Any, path: tuple[Any, ...],
              base: BlastRadiusRule | None) -> BlastRadiusRule | None:
        if value is None:
            return None  # blast_radius: null turns the rule off
        body = self.mapping(value, path, ("approvals", "percent"))
        start = base or BlastRadiusRule(percent=25.0, approvals=2)
        percent: Any = body.get("percent", start.percent)
        if (isinstance(percent, bool) or not isinstance(percent, (int, float))
                or not 0 <= percent <= 100):
            raise self.fail((*path, "percent"), f"expected a percentage between 0 and 100, not "
                                                f"{describe_value(percent)}")
        approvals = self.integer(body.get("approvals", start.approvals), (*path, "approvals"), 1)
        return BlastRadiusRule(percent=float(percent), approvals=approvals)

    def rollback(self, value: Any, path: tuple[Any, ...], base: RollbackRule) -> RollbackRule:
        body = self.mapping(value, path, ("approvals", "humans", "roles"))
        approvals = self.integer(body.get("approvals", base.approvals), (*path, "approvals"), 0)
        roles = (self.role_list(body["roles"], (*path, "roles")) if "roles" in body
                 else base.roles)
        humans = base.humans
        if "humans" in body:
            humans = self.integer(body["humans"], (*path, "humans"), 0)
            if humans > approvals:
                raise self.fail((*path, "humans"), f"{humans} human approvals cannot exceed the "
                                                   f"{approvals} approvals required")
        return RollbackRule(approvals=approvals, roles=roles, humans=humans)

    def rule(self, value: Any, path: tuple[Any, ...], base: EnvironmentRule,
             environment: str) -> EnvironmentRule:
        known = _RULE_FIELDS if path[0] == "environments" else ("approvals", "humans", "roles")
        body = self.mapping(value, path, known)
        approvals = self.integer(body.get("approvals", base.approvals), (*path, "approvals"), 0)
        roles = (self.role_list(body["roles"], (*path, "roles")) if "roles" in body
                 else base.roles)
        humans = self.integer(body.get("humans", min(base.humans, approvals)),
                              (*path, "humans"), 0)
        if humans > approvals:
            raise self.fail((*path, "humans"), f"{humans} human approvals cannot exceed the "
                                               f"{approvals} approvals required")
        blast = base.blast_radius
        if "blast_radius" in body:
            blast = self.blast(body["blast_radius"], (*path, "blast_radius"), blast)
        rollback = base.rollback
        if "rollback" in body:
            rollback = self.rollback(body["rollback"], (*path, "rollback"), rollback)
        return EnvironmentRule(environment, approvals, roles, humans, blast, rollback)

    def parse(self) -> ApprovalRules:
        top = self.mapping(self.document, (), _TOP_FIELDS)
        default = _DEFAULT_RULE
        if "blast_radius" in top:
            default = replace(default, blast_radius=self.blast(
                top["blast_radius"], ("blast_radius",), default.blast_radius))
        if "rollback" in top:
            default = replace(default, rollback=self.rollback(
                top["rollback"], ("rollback",), default.rollback))
        if "defaults" in top:
            default = self.rule(top["defaults"], ("defaults",), default, "*")
        agent = self.mapping(top.get("agent_authored"), ("agent_authored",), ("humans",))
        agent_humans = self.integer(agent.get("humans", 1), ("agent_authored", "humans"), 0)
        rules: dict[str, EnvironmentRule] = {}
        if "environments" in top:
            listed = top["environments"]
            if not isinstance(listed, dict):
                raise self.fail(("environments",), f"expected a mapping of environment name to "
                                                   f"rule, not {describe_value(listed)}")
            for name, body in listed.items():
                path = ("environments", name)
                if not isinstance(name, str) or not name:
                    raise self.fail(path, f"invalid environment name {name!r}")
                if self.environments is not None and name not in self.environments:
                    raise self.fail(path, f"unknown environment {name!r}"
                                    f"{did_you_mean(name, self.environments)}; known: "
                                    f"{', '.join(sorted(self.environments))}")
                rules[name] = self.rule(body, path, default, name)
        else:
            rules = {name: self.rule(values, ("defaults",), default, name)
                     for name, values in _DEFAULT_ENVIRONMENTS.items()}
        return ApprovalRules(default=default, environments=dict(sorted(rules.items())),
                             agent_authored_humans=agent_humans, source=self.file)


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

    def __init__(self, engine: Engine, rules: ApprovalRules, rbac: Rbac) -> None:
        self.engine = engine
        self.rules = rules
        self.rbac = rbac

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
        now = utcnow()
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
                                                 f"{env} ({_roles(requirement.roles)})"))
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
    roles, env = _roles(requirement.roles), requirement.environment
    if need_humans:
        missing.append(f"{need_humans} more approval{'' if need_humans == 1 else 's'} by a "
                       f"human with role {roles} in {env}")
    if need_more:
        missing.append(f"{need_more} more approval{'' if need_more == 1 else 's'} with role "
                       f"{roles} in {env}")
    return missing
