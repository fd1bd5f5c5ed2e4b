"""The provider contract: read current state, compare property by property, change what differs.

A provider's :meth:`Provider.check` is the same code in noop and in a real run, which is why
noop predicts exactly the events a real run performs; :meth:`Provider.sync` only carries out
the changes ``check`` returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from steward.catalog.model import Resource
from steward.catalog.types import TYPES, ResourceType
from steward.engine.context import Context


class ProviderError(Exception):
    """Reading or changing the system failed; the message says what and why."""


class Unresolved(ProviderError):
    """Current state cannot be read because something it needs is missing (a unit, a user).

    In noop this becomes ``pending`` when a dependency of the resource has pending changes:
    the thing will be there after a real run. Otherwise it is a failure.
    """


class Pending(Exception):
    """In noop only: the provider cannot predict without side effects (e.g. unsafe exec guards)."""


@dataclass(slots=True)
class Change:
    """One property out of sync. ``old``/``new`` are the report's display values."""

    property: str
    old: Any
    new: Any
    message: str
    #: Unified diff for content changes; dropped when the content is sensitive.
    diff: str | None = None


class Provider:
    """Base class. Subclasses set ``type_name`` and implement check/sync (and maybe refresh)."""

    type_name: ClassVar[str]

    def __init__(
        self,
        resource: Resource,
        params: dict[str, Any],
        ctx: Context,
        sensitive: frozenset[str] = frozenset(),
    ) -> None:
        self.resource = resource
        #: Parameters with defaults filled in and sensitive values resolved.
        self.params = params
        self.ctx = ctx
        #: Names of parameters whose values must never reach a report or log.
        self.sensitive = sensitive

    @property
    def rtype(self) -> ResourceType:
        return TYPES[self.type_name]

    @property
    def name(self) -> str:
        """The namevar's value (path, package name, ...)."""
        return str(self.params[self.rtype.namevar])

    @classmethod
    def prefetch(cls, ctx: Context, providers: Sequence[Provider]) -> None:
        """Read state for every resource of this type at once (one call per run)."""

    def desired(self) -> dict[str, Any]:
        """Desired values per managed property, in report form; recorded for drift detection."""
        return {p: self.params[p] for p in self.rtype.properties if self.params.get(p) is not None}

    def check(self) -> list[Change]:
        raise NotImplementedError

    def sync(self, changes: list[Change]) -> None:
        raise NotImplementedError

    def refresh(self) -> str | None:
        """React to a notification (restart, re-run). Returns a message, None if not refreshable."""
        return None
