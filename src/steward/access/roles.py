"""Permissions, the roles that bundle them, and the custom roles of ``<data>/rbac.yaml``.

A *permission* names one kind of action (``change:approve``); a *role* is a named set of
permissions. The built-in roles cannot be redefined; ``rbac.yaml`` adds roles, which may
include others and name permissions by prefix wildcard (``change:*``). Every error names the
file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from steward.errors import StewardError, describe_value
from steward.language.errors import did_you_mean
from steward.language.yamlsource import SourceMap, load_yaml

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
PERMISSION_SET: Final = frozenset(PERMISSIONS)

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

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
RBAC_FILE: Final = "rbac.yaml"


class RbacError(StewardError):
    """A role, binding or environment named in a request does not exist or is invalid."""


class RbacConfigError(RbacError):
    """``rbac.yaml`` is invalid; the message names the file, line and field."""


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
    elif permission in PERMISSION_SET:
        return frozenset({permission})
    raise fail(f"unknown permission {permission!r}{did_you_mean(permission, PERMISSIONS)}; "
               f"valid permissions: {', '.join(PERMISSIONS)} (or a prefix wildcard such as "
               "'change:*')")



def known_permission(permission: str) -> None:
    """Refuse a permission name that does not exist (a typo must not check nothing)."""
    if permission not in PERMISSION_SET:
        raise RbacError(f"unknown permission {permission!r}"
                        f"{did_you_mean(permission, PERMISSIONS)}; valid: {', '.join(PERMISSIONS)}")
