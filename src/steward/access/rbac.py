"""Roles, permissions and who holds them where: the pipeline's authorisation.

A *permission* is a string naming one kind of action (``change:approve``); a *role* is a
named set of permissions; a *binding* gives a role to one principal (a human or an agent,
by name) in one environment or in every environment (``*``). Bindings live in the table
``steward_role_bindings``; custom roles are read from ``<data>/rbac.yaml``.

Token kinds map onto principals: ``user`` tokens are humans, ``agent`` tokens are agents, and
``admin`` and ``operator`` tokens are humans who also hold the role of the same name in every
environment (so the tokens minted before roles existed keep exactly their old power). Node,
join and enrollment tokens hold no permission here.

Checks fail closed: an unknown role in a binding grants nothing, a permission asked for
without an environment is satisfied only by bindings that hold in every environment (``*``),
and every refusal is a :class:`PermissionDenied` naming the identity, the permission and the
environment.
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

from steward.access.authorize import Authorizer, Forbidden, kind_authorizer
from steward.access.principal import Actor, ActorKind
from steward.access.tables import role_bindings
from steward.access.tokens import Identity
from steward.errors import NotFoundError, StewardError, describe_value
from steward.language.errors import did_you_mean
from steward.language.yamlsource import SourceMap, load_yaml
from steward.store import db as store_db
from steward.store.db import utcnow

#: Every permission, sorted. ``admin`` implies all the others.
PERMISSIONS: Final[tuple[str, ...]] = tuple(sorted((
    "admin",
    "audit:read",
    "change:approve",
    "change:deploy",
    "change:impact",
    "change:promote",
    "change:propose",
    "change:reject",
    "change:rollback",
    "change:validate",
    "desired_state:read",
    "node:manage",
    "policy:override",
    "query",
    "report:read",
    "task:run",
    "task:run_readonly",
    "token:manage",
)))
_PERMISSION_SET: Final = frozenset(PERMISSIONS)

#: The environment scope meaning "every environment".
ALL_ENVIRONMENTS: Final = "*"

_APPROVER: Final = frozenset({"change:approve", "change:reject", "query", "desired_state:read",
                              "report:read"})

#: The built-in roles; ``rbac.yaml`` may add roles but not redefine these.
BUILTIN_ROLES: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset({"admin"}),
    "approver": _APPROVER,
    "debugger": frozenset({"query", "report:read", "task:run_readonly", "desired_state:read"}),
    "executor": frozenset({"change:deploy", "change:rollback", "change:promote", "task:run",
                           "task:run_readonly", "desired_state:read", "report:read"}),
    "operator": frozenset({"node:manage", "token:manage", "query", "report:read",
                           "audit:read", "desired_state:read"}),
    "planner": frozenset({"desired_state:read", "change:propose", "change:impact", "query"}),
    "security": _APPROVER | {"policy:override", "audit:read"},
    "validator": frozenset({"change:impact", "change:validate", "query",
                            "desired_state:read"}),
}
_BUILTIN_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "admin": "everything",
    "approver": "approve or reject changes; read them and query",
    "debugger": "query, read reports, run read-only tasks",
    "executor": "deploy approved changes, roll back, promote, run tasks",
    "operator": "manage nodes and tokens, query, read reports and the audit log",
    "planner": "read desired state, propose changes, run impact analysis, query",
    "security": "an approver who may also override soft-mandatory policies (e.g. sshd)",
    "validator": "run impact analysis, query, record a validation verdict",
}

#: Built-in roles that count as others in approval rules (security is an approver too).
_BUILTIN_INCLUDES: Final[Mapping[str, frozenset[str]]] = {"security": frozenset({"approver"})}

#: Roles that admin and operator tokens imply, in every environment.
TOKEN_ROLES: Final[Mapping[str, str]] = {"admin": "admin", "operator": "operator"}
_ACTOR_KIND_OF_TOKEN: Final[Mapping[str, ActorKind]] = {
    "admin": "human", "operator": "human", "user": "human", "agent": "agent",
}

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
RBAC_FILE: Final = "rbac.yaml"



class RbacError(StewardError):
    """A role, binding or environment named in a request does not exist or is invalid."""


class RbacConfigError(RbacError):
    """``rbac.yaml`` is invalid; the message names the file, line and field."""


class BindingNotFound(NotFoundError):
    """A role binding to revoke does not exist (HTTP 404)."""


class PermissionDenied(StewardError):
    """An identity lacks a permission (HTTP 403). The API audits it before answering."""

    def __init__(self, identity: str, permission: str, environment: str | None,
                 message: str | None = None) -> None:
        self.identity = identity
        self.permission = permission
        self.environment = environment
        where = (f"in environment {environment}" if environment
                 else "(it needs a role bound in every environment, '*')")
        super().__init__(message or f"{identity} lacks permission {permission} {where}")


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    permissions: frozenset[str]
    description: str
    builtin: bool
    #: ``file:line`` of a custom role's definition.
    source: str | None = None
    #: Roles this one includes, transitively: it counts as each of them in approval rules.
    includes: frozenset[str] = frozenset()

    def grants(self, permission: str) -> bool:
        return "admin" in self.permissions or permission in self.permissions

    def to_json(self) -> dict[str, Any]:
        return {"builtin": self.builtin, "description": self.description,
                "includes": sorted(self.includes), "name": self.name,
                "permissions": sorted(self.permissions), "source": self.source}


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


Principal = Actor | Identity | str


def actor_for(identity: Identity) -> Actor:
    """The pipeline actor a token stands for; ``roles`` holds the roles its kind implies.

    Those implied roles (``admin``, ``operator``) hold in every environment; roles granted
    by binding are looked up on each check, so a revocation takes effect at once.
    """
    kind = _ACTOR_KIND_OF_TOKEN.get(identity.kind)
    if kind is None:
        raise PermissionDenied(
            identity.label, "(any)", None,
            f"{identity.label}: {identity.kind} credentials cannot act in the change pipeline; "
            "use a user, agent, operator or admin token",
        )
    implied = TOKEN_ROLES.get(identity.kind)
    return Actor(name=identity.name, kind=kind, roles=(implied,) if implied else ())


def parse_principal(principal: Principal, kind: ActorKind | None = None) -> tuple[str, ActorKind]:
    """``(name, kind)`` of an actor, token identity, ``kind:name`` label or plain name.

    A plain name is a human unless ``kind`` says otherwise: granting to the wrong kind then
    grants nothing to the agent (fail closed) rather than something to the wrong principal.
    """
    if isinstance(principal, Actor):
        if principal.kind == "system":
            raise RbacError("roles cannot be granted to Steward itself (system actor)")
        return principal.name, principal.kind
    if isinstance(principal, Identity):
        actor = actor_for(principal)
        return actor.name, actor.kind
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


def _label(principal: Principal) -> str:
    if isinstance(principal, (Actor, Identity)):
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


# -- rbac.yaml --------------------------------------------------------------------------------


def load_roles(config_dir: Path | None) -> dict[str, Role]:
    """The built-in roles plus the custom roles of ``<config_dir>/rbac.yaml`` (if present).

    Format::

        roles:
          release-manager:
            description: approves and deploys
            include: [approver]            # optional: roles whose permissions it adds
            permissions: [change:deploy, "task:*"]
    """
    roles = {name: Role(name, perms, _BUILTIN_DESCRIPTIONS[name], True,
                        includes=_BUILTIN_INCLUDES.get(name, frozenset()))
             for name, perms in BUILTIN_ROLES.items()}
    if config_dir is None:
        return dict(sorted(roles.items()))
    path = Path(config_dir) / RBAC_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(sorted(roles.items()))
    except (OSError, UnicodeDecodeError) as exc:
        raise RbacConfigError(f"cannot read {path}: {exc}") from None
    return dict(sorted(_parse_roles(text, str(path), roles).items()))


def _load(text: str, file: str, error: type[StewardError]) -> tuple[Any, SourceMap]:
    """YAML with line numbers; syntax errors re-raised as ``error``."""
    try:
        return load_yaml(text, file)
    except StewardError as exc:
        raise error(exc.message, location=exc.location) from None


def _parse_roles(text: str, file: str, builtin: dict[str, Role]) -> dict[str, Role]:
    document, source = _load(text, file, RbacConfigError)

    def fail(path: tuple[Any, ...], message: str) -> RbacConfigError:
        return RbacConfigError(message, location=source.where(path))

    if document is None:
        return builtin
    if not isinstance(document, dict):
        raise fail((), f"expected a mapping with a 'roles' key, not {describe_value(document)}")
    unknown = sorted(set(document) - {"roles"}, key=str)
    if unknown:
        raise fail((unknown[0],), f"unknown top-level field {unknown[0]!r}; known: roles")
    defined = document.get("roles") or {}
    if not isinstance(defined, dict):
        raise fail(("roles",), f"roles: expected a mapping of role name to definition, "
                               f"not {describe_value(defined)}")
    raw: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {}
    for name, body in defined.items():
        path = ("roles", name)
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(path, f"roles: role name {name!r} is invalid: lower-case letters, "
                             "digits, '_', '.', '-', starting with a letter")
        if name in builtin:
            raise fail(path, f"roles.{name}: {name!r} is a built-in role and cannot be "
                             "redefined; give the custom role another name")
        if not isinstance(body, dict):
            raise fail(path, f"roles.{name}: expected a mapping with 'permissions', not "
                             f"{describe_value(body)}")
        extra = sorted(set(body) - {"description", "permissions", "include"}, key=str)
        if extra:
            raise fail((*path, extra[0]), f"roles.{name}: unknown field {extra[0]!r}; known: "
                                          "description, include, permissions")
        raw[name] = body, path
    known_roles = sorted({*builtin, *raw})
    resolved: dict[str, Role] = dict(builtin)

    def resolve(name: str, chain: tuple[str, ...]) -> Role:
        if name in resolved:
            return resolved[name]
        body, path = raw[name]
        description = body.get("description", "")
        if not isinstance(description, str):
            raise fail((*path, "description"), f"roles.{name}.description: expected a string, "
                                               f"not {describe_value(description)}")
        permissions: set[str] = set()
        included: set[str] = set()
        perms = body.get("permissions", [])
        if not isinstance(perms, list):
            raise fail((*path, "permissions"), f"roles.{name}.permissions: expected a list of "
                                               f"permissions, not {describe_value(perms)}")
        for index, perm in enumerate(perms):
            permissions |= _expand(perm, lambda m, i=index: fail(
                (*path, "permissions", i), f"roles.{name}.permissions[{i}]: {m}"))
        includes = body.get("include", [])
        if not isinstance(includes, list):
            raise fail((*path, "include"), f"roles.{name}.include: expected a list of role "
                                           f"names, not {describe_value(includes)}")
        for index, other in enumerate(includes):
            where = (*path, "include", index)
            if not isinstance(other, str) or other not in known_roles:
                raise fail(where, f"roles.{name}.include[{index}]: unknown role {other!r}; "
                                  f"known: {', '.join(known_roles)}")
            if other in chain or other == name:
                cycle = " -> ".join([*chain, name, other])
                raise fail(where, f"roles.{name}.include[{index}]: roles include each other "
                                  f"({cycle})")
            base = resolve(other, (*chain, name))
            permissions |= base.permissions
            included |= {other, *base.includes}
        if not permissions:
            raise fail(path, f"roles.{name}: a role needs at least one permission "
                             "(permissions or include)")
        role = Role(name, frozenset(permissions), description, False, source.where(path),
                    frozenset(included))
        resolved[name] = role
        return role

    for name in raw:
        resolve(name, ())
    return resolved


def _expand(permission: Any, fail: Any) -> frozenset[str]:
    """One permission, or a ``prefix:*`` wildcard for every permission with that prefix."""
    if not isinstance(permission, str):
        raise fail(f"expected a permission string, not {describe_value(permission)}")
    if permission.endswith(":*"):
        prefix = permission[:-1]
        matched = frozenset(p for p in PERMISSIONS if p.startswith(prefix))
        if matched:
            return matched
    elif permission in _PERMISSION_SET:
        return frozenset({permission})
    raise fail(f"unknown permission {permission!r}{did_you_mean(permission, PERMISSIONS)}; "
               f"valid permissions: {', '.join(PERMISSIONS)} (or a prefix wildcard such as "
               "'change:*')")


# -- the service ------------------------------------------------------------------------------


class Rbac:
    """Role bindings in the database, roles from built-ins and ``<config_dir>/rbac.yaml``.

    ``environments``, when given, is the configured list: grants to any other environment
    are refused, so a typo cannot create a binding that silently never applies.
    """

    def __init__(self, engine: Engine, config_dir: Path | None,
                 *, environments: Sequence[str] | None = None) -> None:
        self.engine = engine
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

    def grant(self, identity_name: Principal, role: str, environment: str = ALL_ENVIRONMENTS,
              *, kind: ActorKind | None = None, granted_by: str | None = None) -> Binding:
        """Bind ``role`` to the principal in ``environment``; granting twice is a no-op."""
        name, actor_kind = parse_principal(identity_name, kind)
        self.role(role)
        check_environment(environment, self.environments)
        now = utcnow()
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

    def revoke_role(self, identity_name: Principal, role: str,
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

    def bindings(self, identity: Principal | None = None,
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

    def roles_of(self, identity: Principal, *, kind: ActorKind | None = None
                 ) -> list[tuple[str, str]]:
        """``(role, environment)`` pairs, the roles a token kind implies included; sorted."""
        implied = _implied_roles(identity)
        if isinstance(identity, Actor) and identity.kind == "system":
            return sorted({(r, ALL_ENVIRONMENTS) for r in implied})
        if isinstance(identity, Identity) and identity.kind not in _ACTOR_KIND_OF_TOKEN:
            return []
        bound = {(b.role, b.environment) for b in self.bindings(identity, kind=kind)}
        return sorted(bound | {(r, ALL_ENVIRONMENTS) for r in implied})

    # -- checks -----------------------------------------------------------------------------

    def permissions_of(self, identity: Principal, environment: str | None = None
                       ) -> frozenset[str]:
        """What the principal may do in ``environment`` (None: only ``*`` bindings count).

        An identity holding ``admin`` gets every permission listed.
        """
        if isinstance(identity, Actor) and identity.kind == "system":
            return _PERMISSION_SET
        granted: set[str] = set()
        for role_name, scope in self.roles_of(identity):
            if scope not in (ALL_ENVIRONMENTS, environment):
                continue
            role = self.roles.get(role_name)
            if role is not None:  # a role removed from rbac.yaml grants nothing
                granted |= role.permissions
        return _PERMISSION_SET if "admin" in granted else frozenset(granted)

    def has(self, identity: Principal, permission: str, environment: str | None = None) -> bool:
        _known(permission)
        return permission in self.permissions_of(identity, environment)

    def check(self, identity: Principal, permission: str, environment: str | None = None
              ) -> None:
        """Return if allowed, else raise :class:`PermissionDenied` naming what is missing.

        Steward itself (the ``system`` actor, e.g. an automatic rollback) is never refused;
        no token authenticates as it.
        """
        if isinstance(identity, Identity) and identity.kind not in _ACTOR_KIND_OF_TOKEN:
            actor_for(identity)  # raises the explanatory PermissionDenied
        if not self.has(identity, permission, environment):
            raise PermissionDenied(_label(identity), permission, environment)

    def roles_in(self, identity: Principal, environment: str) -> frozenset[str]:
        """Names of the roles the principal holds in ``environment`` (``*`` bindings too)."""
        return frozenset(role for role, scope in self.roles_of(identity)
                         if scope in (ALL_ENVIRONMENTS, environment))

    def counts_as_in(self, identity: Principal, environment: str) -> frozenset[str]:
        """Roles held in ``environment`` plus the roles they include (for approval rules)."""
        names: set[str] = set()
        for name in self.roles_in(identity, environment):
            role = self.roles.get(name)
            if role is not None:
                names |= {name, *role.includes}
        return frozenset(names)

    def check_no_escalation(self, granter: Principal, role: str,
                            environment: str = ALL_ENVIRONMENTS) -> None:
        """Refuse to let ``granter`` hand out (a token for) more power than it holds.

        Whoever grants a role, or mints a token for a principal holding one, must hold every
        permission of that role in that scope; an admin passes.
        """
        wanted = self.role(role).permissions
        scope = None if environment == ALL_ENVIRONMENTS else environment
        held = self.permissions_of(granter, scope)
        missing = sorted((_PERMISSION_SET if "admin" in wanted else wanted) - held)
        if missing:
            raise PermissionDenied(
                _label(granter), missing[0], scope,
                f"{_label(granter)} cannot grant role {role} in {environment}: it lacks "
                f"{', '.join(missing)} there itself",
            )


def _implied_roles(identity: Principal) -> tuple[str, ...]:
    if isinstance(identity, Identity):
        implied = TOKEN_ROLES.get(identity.kind)
        return (implied,) if implied else ()
    if isinstance(identity, Actor):
        return tuple(r for r in identity.roles if r in TOKEN_ROLES.values())
    return ()


def _known(permission: str) -> None:
    if permission not in _PERMISSION_SET:
        raise RbacError(f"unknown permission {permission!r}"
                        f"{did_you_mean(permission, PERMISSIONS)}; valid: {', '.join(PERMISSIONS)}")


#: Token kinds whose permissions come from role bindings alone.
_ROLE_KINDS = frozenset({"user", "agent"})


def rbac_authorizer(rbac: Rbac) -> Authorizer:
    """The server's authoriser with roles: user and agent tokens get what their roles allow.

    Admin and operator tokens keep the server's kind rules (which match the roles their kind
    implies: ``operator`` holds every permission a server endpoint asks but ``admin``); node,
    join and enrollment tokens hold no permission. A role check reads the bindings on every
    request, so a revoked role stops working at once.
    """

    def authorise(identity: Identity, permission: str, environment: str | None) -> None:
        if identity.kind not in _ROLE_KINDS:
            kind_authorizer(identity, permission, environment)
            return
        try:
            rbac.check(identity, permission, environment)
        except PermissionDenied as exc:
            raise Forbidden(str(exc), permission=exc.permission,
                            environment=exc.environment) from None

    return authorise
