"""Authorisation by permission: the refusal, the authoriser hook and the server's own rules.

Every operator endpoint names the permission it needs (``query``, ``node:manage``,
``token:manage``, ``audit:read``, ``admin``, and for some PuppetDB entities more, see
:data:`ENTITY_PERMISSIONS`) and asks :func:`steward.access.rbac.authorize`, which answers
user and agent tokens by their role bindings and every other credential by
:func:`kind_authorizer` (by token kind). The server and the pipeline call the same function;
nothing is installed at start-up. Every refusal is a :class:`Forbidden`, which the
application audits and answers with HTTP 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from steward.access.principal import Principal
from steward.errors import StewardError


class Forbidden(StewardError):
    """A principal lacks a permission (HTTP 403); audited before the answer goes out.

    The one refusal of Steward, whichever layer decides it: the message names the principal,
    the permission and the environment (None: a global action); the answer carries
    ``permission`` and ``environment`` as fields too.
    """

    def __init__(self, message: str, *, permission: str, environment: str | None = None,
                 principal: str | None = None) -> None:
        super().__init__(message)
        self.permission = permission
        self.environment = environment
        #: The refused principal's label (None: not known where the refusal was raised).
        self.principal = principal

    @classmethod
    def lacking(cls, principal: str, permission: str, environment: str | None) -> Forbidden:
        """``alice lacks permission X in environment E`` (or: needs a ``*`` binding)."""
        where = (f"in environment {environment}" if environment
                 else "(it needs a role bound in every environment, '*')")
        return cls(f"{principal} lacks permission {permission} {where}", permission=permission,
                   environment=environment, principal=principal)


#: Returns if ``identity`` holds ``permission`` in the environment (None: a global action),
#: else raises :class:`Forbidden`. Higher layers install their own on the application state.
Authorizer = Callable[[Principal, str, "str | None"], None]

#: PuppetDB entities that need more than ``query``: the audit log is ``audit:read``'s, run
#: reports and their events ``report:read``'s, the pipeline's records ``desired_state:read``'s
#: — a query must not read around the permission that guards the same data elsewhere.
ENTITY_PERMISSIONS: Final[dict[str, str]] = {
    "audit": "audit:read",
    "changes": "desired_state:read",
    "deployments": "desired_state:read",
    "job_results": "report:read",
    "jobs": "report:read",
    "events": "report:read",
    "reports": "report:read",
}

_KIND_LIMITS: Final = {
    "node": "a node credential reaches only its own catalog, facts, reports and run requests",
    "join": "a join token can only enroll a node (POST /api/v1/enroll)",
    "enrollment": "an enrollment poll token can only read its own enrollment request",
}
_NO_ROLES: Final = ("user and agent tokens act through role bindings, which only the change "
                    "pipeline grants (this server has none)")


def kind_authorizer(identity: Principal, permission: str, environment: str | None) -> None:
    """The rules by token kind alone, for a server without the change pipeline.

    Admin tokens hold every permission; operator tokens every one but ``admin`` (which is
    what minting operator tokens needs); every other kind none.
    """
    if identity.credential == "admin" or (
            identity.credential == "operator" and permission != "admin"):
        return
    if identity.credential == "operator":
        why = "only an admin token holds it"
    else:
        why = _KIND_LIMITS.get(identity.label_kind, _NO_ROLES)
    where = f" in environment {environment}" if environment else ""
    raise Forbidden(f"{identity.label} lacks permission {permission}{where}: {why}",
                    permission=permission, environment=environment, principal=identity.label)


def query_entities(query: Any) -> Iterator[str]:
    """Every entity a PuppetDB AST names: its own, subqueries' and legacy ``select_*``'s.

    Conservative on purpose: a literal that looks like ``["from", "audit"]`` counts too, which
    can only ask for a permission more, never one less.
    """
    if not isinstance(query, list) or not query:
        return
    head = query[0]
    if head in ("from", "subquery") and len(query) > 1 and isinstance(query[1], str):
        yield query[1].replace("-", "_")
    elif isinstance(head, str) and head.startswith("select_"):
        yield head.removeprefix("select_").replace("-", "_")
    for item in query:
        yield from query_entities(item)


def entity_permissions(query: Any, entity: str | None = None) -> list[tuple[str, str]]:
    """``(entity, permission)`` pairs a query needs beyond ``query``, sorted."""
    names = set(query_entities(query))
    if entity is not None:
        names.add(entity.replace("-", "_"))
    return sorted((name, ENTITY_PERMISSIONS[name]) for name in names
                  if name in ENTITY_PERMISSIONS)
