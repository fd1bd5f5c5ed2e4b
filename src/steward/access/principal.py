"""Who acts: one type for a token's holder, a pipeline actor and Steward itself.

A :class:`Principal` says *what* acts (``kind``: a human, an agent, a node, or Steward) and,
when it came from a request, *how it proved it* (``credential``: the token kind, and the
token's id). The server decides by credential (a node token reaches only its own node); the
change pipeline decides by kind and roles, because separation of duties is about people and
agents, not token kinds (an AI agent is always an author, never its own approver).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

PrincipalKind = Literal["human", "agent", "node", "system"]
#: What acts in the change pipeline (nodes never do).
ActorKind = Literal["human", "agent", "system"]

#: What each token kind stands for.
KIND_OF_CREDENTIAL: Final[Mapping[str, PrincipalKind]] = {
    "admin": "human", "operator": "human", "user": "human", "agent": "agent",
    "node": "node", "join": "node", "enrollment": "node",
}
#: Roles a token kind implies in every environment (others get only roles bound to them).
CREDENTIAL_ROLES: Final[Mapping[str, str]] = {"admin": "admin", "operator": "operator"}
#: Credentials that may act on any node and read the store.
OPERATOR_CREDENTIALS: Final = frozenset({"admin", "operator"})


@dataclass(frozen=True, slots=True)
class Principal:
    """A named human, agent, node or Steward itself; ``credential`` set when authenticated."""

    name: str
    kind: PrincipalKind
    roles: tuple[str, ...] = ()
    #: The token kind it authenticated with (None: an actor made in-process).
    credential: str | None = None
    token_id: str | None = None
    #: A node credential's certname: the one node it may speak for.
    certname: str | None = None

    @classmethod
    def authenticated(cls, credential: str, token_id: str, name: str,
                      certname: str | None = None) -> Principal:
        """The holder of a token of kind ``credential``, with the roles that kind implies."""
        implied = CREDENTIAL_ROLES.get(credential)
        return cls(name=name, kind=KIND_OF_CREDENTIAL.get(credential, "node"),
                   roles=(implied,) if implied else (), credential=credential,
                   token_id=token_id, certname=certname)

    @property
    def label_kind(self) -> str:
        """The first half of :attr:`label`: the credential if any, else the kind."""
        return self.credential or self.kind

    @property
    def label(self) -> str:
        """``admin:root`` for a token's holder, ``human:alice`` for a pipeline actor."""
        return f"{self.label_kind}:{self.name}"

    @property
    def is_operator(self) -> bool:
        return self.credential in OPERATOR_CREDENTIALS

    @property
    def git_email(self) -> str:
        return f"{self.name}@{self.kind}.steward.invalid"

    def acting(self) -> Principal:
        """The same principal as the pipeline records it: by kind and roles, no credential."""
        return Principal(name=self.name, kind=self.kind, roles=self.roles)


#: Steward itself: the author of automatic records (a deployment's own state changes).
SYSTEM: Final = Principal("steward", "system")
