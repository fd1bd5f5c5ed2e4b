"""Who acts in the pipeline: a named human or agent (or Steward itself), with its roles.

The server authenticates tokens into :class:`steward.access.tokens.Identity`; the pipeline
reasons about *actors*, because separation of duties is about people and agents, not
about token kinds (an AI agent is always an author, never its own approver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["human", "agent", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    kind: ActorKind
    roles: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def git_email(self) -> str:
        return f"{self.name}@{self.kind}.steward.invalid"
