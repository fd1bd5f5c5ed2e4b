"""What impact analysis takes in: the change, the fleet's nodes, and its typed error.

Kept apart from the analysis so the fleet reader, the selection, the per-node compile
(which also runs in worker processes) and the rendering share one vocabulary without
importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steward.access.principal import Principal
from steward.catalog.redaction import REDACTED
from steward.errors import StewardError

#: Version of the impact report document (``format``); see schemas/impact-report.schema.json.
REPORT_FORMAT = 1
#: What stands in for a sensitive value anywhere in a report: the one marker.
SENSITIVE_TEXT = REDACTED


class ImpactError(StewardError):
    """Impact analysis cannot run at all (a repository or the fleet cannot be read).

    A node whose compile fails is *not* such an error: it becomes that node's ``failed``
    entry, and the analysis goes on.
    """


@dataclass(frozen=True, slots=True)
class ChangeInfo:
    """The change being analysed, as the report's ``change`` object names it."""

    environment: str
    #: Base and head commits; None when the sides are plain directories.
    base: str | None = None
    head: str | None = None
    id: str | None = None
    proposer: Principal | None = None
    #: Repository paths the change touches (added, modified, deleted or renamed).
    changed_files: tuple[str, ...] = ()
    #: The environment whose branch classification is evaluated on (the server's default
    #: environment); only a change to it can move nodes between environments. None: the
    #: base repository's ``default_environment``.
    default_environment: str | None = None


@dataclass(frozen=True, slots=True)
class FleetNode:
    """A node as the state store knows it: where it is and what its last compile read."""

    certname: str
    #: Its current catalog's environment (its facts' when it has no catalog yet).
    environment: str
    #: The ``inputs`` recorded in its current catalog; None when there is none to trust.
    inputs: Mapping[str, Any] | None = None
    catalog_hash: str | None = None
    code_id: str | None = None


@dataclass(frozen=True, slots=True)
class NodeTask:
    """One node's work for the compile stage (picklable: it crosses to worker processes)."""

    certname: str
    facts: dict[str, Any]
    #: ``member``: a node of the environment; ``outsider``: a node of another environment
    #: that classification at head may move in.
    kind: str = "member"
    stored_hash: str | None = None
    #: Whether to look for a move between environments (classification changed, unpinned).
    check_moves: bool = False


@dataclass(slots=True)
class Timings:
    """Where the time of one analysis went (seconds); reported by the benchmark."""

    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process per phase (worker processes are not included).
    cpu: dict[str, float] = field(default_factory=dict)
    workers: int = 1
