"""Who holds which role where: role bindings, the checks, and the server's authoriser.

A *binding* gives a role (:mod:`steward.access.roles`) to one principal (a human or an
agent, by name) in one environment or in every environment (``*``). Bindings live in the
table ``steward_role_bindings``.

Token kinds map onto principals (:class:`~steward.access.principal.Principal`): ``user``
tokens are humans, ``agent`` tokens are agents, and ``admin`` and ``operator`` tokens are
humans who also hold the role of the same name in every environment (so the tokens minted
before roles existed keep exactly their old power). Node, join and enrollment tokens hold no
permission here.

Checks fail closed: an unknown role in a binding grants nothing, a permission asked for
without an environment is satisfied only by bindings that hold in every environment (``*``),
and every refusal is a :class:`~steward.access.authorize.Forbidden` naming the principal,
the permission and the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy import Engine, and_, delete, select
from sqlalchemy.exc import IntegrityError

from steward.access.authorize import Forbidden, kind_authorizer
from steward.access.principal import CREDENTIAL_ROLES, ActorKind, Principal
from steward.access.roles import (
    PERMISSION_SET,
    RbacError,
    Role,
    known_permission,
    load_roles,
)
from steward.access.tables import role_bindings
from steward.clock import SYSTEM_CLOCK, Clock
from steward.errors import NotFoundError
from steward.language.errors import did_you_mean
from steward.store import db as store_db

#: The environment scope meaning "every environment".
ALL_ENVIRONMENTS: Final = "*"

_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_IMPLIED: Final = frozenset(CREDENTIAL_ROLES.values())
#: Credentials whose permissions come from role bindings alone.
_ROLE_CREDENTIALS: Final = frozenset({"user", "agent"})


class BindingNotFound(NotFoundError):
    """A role binding to revoke does not exist (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Binding:
    identity_name: str
    identity_kind: ActorKind
    role: str
    environment: str
    granted_by: str | None
    granted_at: datetime | None

    @property
    def label(self) -> str:
        return f"{self.identity_kind}:{self.identity_name}"

    def to_json(self) -> dict[str, Any]:
        granted = self.granted_at
        return {"environment": self.environment, "granted_at": (
                    None if granted is None else granted.isoformat().replace("+00:00", "Z")),
                "granted_by": self.granted_by,
                "identity": {"kind": self.identity_kind, "name": self.identity_name},
                "role": self.role}


#: Whom a binding may name: a principal, a ``kind:name`` label or a plain (human's) name.
Grantee = Principal | str


def actor_for(principal: Principal) -> Principal:
    """The principal as the pipeline sees it: kind, name and the roles its credential implies.

    Those implied roles (``admin``, ``operator``) hold in every environment; roles granted
    by binding are looked up on each check, so a revocation takes effect at once. Nodes
    cannot act in the pipeline.
    """
    if principal.kind == "node":
        raise Forbidden(
            f"{principal.label}: {principal.label_kind} credentials cannot act in the change "
            "pipeline; use a user, agent, operator or admin token",
            permission="(any)", principal=principal.label)
    return principal.acting()


def parse_principal(principal: Grantee, kind: ActorKind | None = None) -> tuple[str, ActorKind]:
    """``(name, kind)`` of a principal, a ``kind:name`` label or a plain name.

    A plain name is a human unless ``kind`` says otherwise: granting to the wrong kind then
    grants nothing to the agent (fail closed) rather than something to the wrong principal.
    """
    if isinstance(principal, Principal):
        if principal.kind == "system":
            raise RbacError("roles cannot be granted to Steward itself (system actor)")
        actor = actor_for(principal)
        return actor.name, cast(ActorKind, actor.kind)
    text = principal.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("human", "user", "agent"):
        parsed: ActorKind = "agent" if prefix == "agent" else "human"
        if kind is not None and kind != parsed:
            raise RbacError(f"identity {text!r} is a {parsed}, not a {kind}")
        text, kind = rest, parsed
    if not text or len(text) > 255 or any(c.isspace() for c in text):
        raise RbacError(
            f"identity name {principal!r} is invalid: 1 to 255 characters, no whitespace"
        )
    if kind not in (None, "human", "agent"):
        raise RbacError(f"identity kind {kind!r} is invalid: human or agent")
    return text, kind or "human"


def _label(principal: Grantee) -> str:
    if isinstance(principal, Principal):
        return principal.label
    name, kind = parse_principal(principal)
    return f"{kind}:{name}"


def check_environment(environment: str, known: Sequence[str] | None, *,
                      field: str = "environment") -> str:
    """Validate an environment scope (a name or ``*``) against the configured list."""
    if environment == ALL_ENVIRONMENTS:
        return environment
    if not isinstance(environment, str) or not _ENVIRONMENT.match(environment):
        raise RbacError(f"{field}: {environment!r} is not a valid environment name")
    if known is not None and environment not in known:
        raise RbacError(
            f"{field}: unknown environment {environment!r}; known: "
            f"{', '.join([*sorted(known), ALL_ENVIRONMENTS])}{did_you_mean(environment, known)}"
        )
    return environment


# -- the service ------------------------------------------------------------------------------


class Rbac:
    """Role bindings in the database, roles from built-ins and ``<config_dir>/rbac.yaml``.

    ``environments``, when given, is the configured list: grants to any other environment
    are refused, so a typo cannot create a binding that silently never applies.
    """

    def __init__(self, engine: Engine, config_dir: Path | None,
                 *, environments: Sequence[str] | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        #: Stamps a binding's grant time.
        self.clock = clock
        self.config_dir = config_dir
        self.environments = tuple(environments) if environments is not None else None
        self.roles: Mapping[str, Role] = load_roles(config_dir)

    def role(self, name: str) -> Role:
        found = self.roles.get(name)
        if found is None:
            raise RbacError(f"unknown role {name!r}{did_you_mean(name, self.roles)}; "
                            f"known: {', '.join(self.roles)}")
        return found

    # -- bindings ---------------------------------------------------------------------------

    def grant(self, identity_name: Grantee, role: str, environment: str = ALL_ENVIRONMENTS,
              *, kind: ActorKind | None = None, granted_by: str | None = None) -> Binding:
        """Bind ``role`` to the principal in ``environment``; granting twice is a no-op."""
        name, actor_kind = parse_principal(identity_name, kind)
        self.role(role)
        check_environment(environment, self.environments)
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(role_bindings.insert().values(
                    identity_name=name, identity_kind=actor_kind, role=role,
                    environment=environment, granted_by=granted_by, granted_at=now))
        except IntegrityError:
            pass  # already bound: the existing row (and its grant time) stands
        for binding in self.bindings(f"{actor_kind}:{name}"):
            if binding.role == role and binding.environment == environment:
                return binding
        raise RbacError(f"binding of {role} to {actor_kind}:{name} in {environment} vanished")

    def revoke_role(self, identity_name: Grantee, role: str,
                    environment: str = ALL_ENVIRONMENTS, *, kind: ActorKind | None = None) -> None:
        """Remove one binding; :class:`BindingNotFound` if there was none."""
        name, actor_kind = parse_principal(identity_name, kind)
        c = role_bindings.c
        with self.engine.begin() as conn:
            result = conn.execute(delete(role_bindings).where(and_(
                c.identity_name == name, c.identity_kind == actor_kind, c.role == role,
                c.environment == environment)))
        if result.rowcount == 0:
            held = ", ".join(f"{r} in {e}" for r, e in self.roles_of(f"{actor_kind}:{name}"))
            raise BindingNotFound(f"{actor_kind}:{name} does not hold role {role} in "
                                  f"{environment}; it holds: {held or 'no roles'}")

    def bindings(self, identity: Grantee | None = None,
                 *, kind: ActorKind | None = None) -> list[Binding]:
        """Stored bindings (of one principal, or all), sorted by principal, role, scope."""
        c = role_bindings.c
        query = select(role_bindings).order_by(c.identity_kind, c.identity_name, c.role,
                                               c.environment)
        if identity is not None:
            name, actor_kind = parse_principal(identity, kind)
            query = query.where(and_(c.identity_name == name, c.identity_kind == actor_kind))
        with store_db.reading(self.engine) as conn:
            return [Binding(row.identity_name, cast(ActorKind, row.identity_kind), row.role,
                            row.environment, row.granted_by, row.granted_at)
                    for row in conn.execute(query)]

    def roles_of(self, identity: Grantee, *, kind: ActorKind | None = None
                 ) -> list[tuple[str, str]]:
        """``(role, environment)`` pairs, the roles a token kind implies included; sorted."""
        implied = _implied_roles(identity)
        if isinstance(identity, Principal) and identity.kind == "system":
            return sorted({(r, ALL_ENVIRONMENTS) for r in implied})
        if isinstance(identity, Principal) and identity.kind == "node":
            return []
        bound = {(b.role, b.environment) for b in self.bindings(identity, kind=kind)}
        return sorted(bound | {(r, ALL_ENVIRONMENTS) for r in implied})

    # -- checks -----------------------------------------------------------------------------

    def permissions_of(self, identity: Grantee, environment: str | None = None
                       ) -> frozenset[str]:
        """What the principal may do in ``environment`` (None: only ``*`` bindings count).

        An identity holding ``admin`` gets every permission listed.
        """
        if isinstance(identity, Principal) and identity.kind == "system":
            return PERMISSION_SET
        granted: set[str] = set()
        for role_name, scope in self.roles_of(identity):
            if scope not in (ALL_ENVIRONMENTS, environment):
                continue
            role = self.roles.get(role_name)
            if role is not None:  # a role removed from rbac.yaml grants nothing
                granted |= role.permissions
        return PERMISSION_SET if "admin" in granted else frozenset(granted)

    def has(self, identity: Grantee, permission: str, environment: str | None = None) -> bool:
        known_permission(permission)
        return permission in self.permissions_of(identity, environment)

    def check(self, identity: Grantee, permission: str, environment: str | None = None
              ) -> None:
        """Return if allowed, else raise :class:`Forbidden` naming what is missing.

        Steward itself (the ``system`` actor, e.g. an automatic rollback) is never refused;
        no token authenticates as it.
        """
        if isinstance(identity, Principal):
            actor_for(identity)  # a node: raises the explanatory refusal
        if not self.has(identity, permission, environment):
            raise Forbidden.lacking(_label(identity), permission, environment)

    def roles_in(self, identity: Grantee, environment: str) -> frozenset[str]:
        """Names of the roles the principal holds in ``environment`` (``*`` bindings too)."""
        return frozenset(role for role, scope in self.roles_of(identity)
                         if scope in (ALL_ENVIRONMENTS, environment))

    def counts_as_in(self, identity: Grantee, environment: str) -> frozenset[str]:
        """Roles held in ``environment`` plus the roles they include (for approval rules)."""
        names: set[str] = set()
        for name in self.roles_in(identity, environment):
            role = self.roles.get(name)
            if role is not None:
                names |= {name, *role.includes}
        return frozenset(names)

    def check_no_escalation(self, granter: Grantee, role: str,
                            environment: str = ALL_ENVIRONMENTS) -> None:
        """Refuse to let ``granter`` hand out (a token for) more power than it holds.

        Whoever grants a role, or mints a token for a principal holding one, must hold every
        permission of that role in that scope; an admin passes.
        """
        wanted = self.role(role).permissions
        scope = None if environment == ALL_ENVIRONMENTS else environment
        held = self.permissions_of(granter, scope)
        missing = sorted((PERMISSION_SET if "admin" in wanted else wanted) - held)
        if missing:
            raise Forbidden(
                f"{_label(granter)} cannot grant role {role} in {environment}: it lacks "
                f"{', '.join(missing)} there itself",
                permission=missing[0], environment=scope, principal=_label(granter))


def _implied_roles(identity: Grantee) -> tuple[str, ...]:
    if isinstance(identity, Principal):
        return tuple(r for r in identity.roles if r in _IMPLIED)
    return ()


def authorize(rbac: Rbac | None, principal: Principal, permission: str,
              environment: str | None) -> None:
    """The server's authoriser: user and agent tokens get what their roles allow.

    Admin and operator tokens keep the server's kind rules (which match the roles their kind
    implies: ``operator`` holds every permission a server endpoint asks but ``admin``); node,
    join and enrollment tokens hold no permission. Without bindings (``rbac`` None: a server
    with no change pipeline) user and agent tokens hold nothing. A role check reads the
    bindings on every request, so a revoked role stops working at once.
    """
    if rbac is None or principal.credential not in _ROLE_CREDENTIALS:
        kind_authorizer(principal, permission, environment)
        return
    rbac.check(principal, permission, environment)
