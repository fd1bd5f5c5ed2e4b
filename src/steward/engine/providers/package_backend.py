"""What every package manager backend shares: the package state it reports, the per-run
cache of the installed list and candidates, and the operations each manager implements.

Standard library only: this runs on the node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from steward.engine.context import Context
from steward.engine.provider import ProviderError
from steward.engine.runner import CommandResult


@dataclass(frozen=True, slots=True)
class PackageState:
    """One package as the manager's database sees it."""

    #: Installed version, or None when the package is not installed.
    version: str | None = None
    #: dpkg's "config-files" state: removed, configuration files left behind.
    config_files: bool = False
    #: A dpkg state between unpacked and installed ("half-configured", ...), if any.
    broken: str | None = None
    #: Every installed version, oldest first, when the database holds several side by side
    #: (rpm's install-only packages, such as kernels); empty when ``version`` is the only
    #: one. ``version`` is then the newest.
    versions: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        return self.version is not None and self.broken is None

    @property
    def all_versions(self) -> tuple[str, ...]:
        """The installed versions (none when absent)."""
        if self.versions:
            return self.versions
        return () if self.version is None else (self.version,)

    def display(self) -> str:
        if self.version is None:
            return "absent"
        if self.broken:
            return f"{self.version} ({self.broken})"
        return ", ".join(self.all_versions)


ABSENT = PackageState()


def _failure(result: CommandResult, doing: str, lines: int = 6) -> ProviderError:
    """An error naming the command, its exit code and the end of what it printed."""
    # stderr last: apt and dpkg put the reason ("E: ...") there, after stdout's progress.
    text = (result.stdout.strip() + "\n" + result.stderr.strip()).strip()
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    detail = " | ".join(tail)
    return ProviderError(
        f"{doing}: '{' '.join(result.argv)}' exited {result.returncode}"
        + (f": {detail}" if detail else "")
    )


class Backend(ABC):
    """One package manager: how to list, query candidates, install and remove."""

    name: ClassVar[str]
    #: Programs that must all be present for this backend to be usable.
    programs: ClassVar[tuple[str, ...]]
    env: ClassVar[dict[str, str]] = {}
    #: Whether "purged" differs from "absent" (configuration files kept on removal).
    supports_purge: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def available(self) -> bool:
        return all(self.ctx.runner.which(p) is not None for p in self.programs)

    def _run(self, argv: Sequence[str], doing: str) -> CommandResult:
        result = self.ctx.runner.run(argv, env=self.env or None)
        if not result.ok:
            raise _failure(result, doing)
        return result

    # -- cache -----------------------------------------------------------------------------

    @property
    def _key(self) -> str:
        return f"package:{self.name}"

    def installed(self) -> dict[str, PackageState]:
        """The installed list, read once per run (and again after a change)."""
        key = f"{self._key}:installed"
        cached: dict[str, PackageState] | None = self.ctx.cache.get(key)
        if cached is None:
            cached = self.list_installed()
            self.ctx.cache[key] = cached
        return cached

    def invalidate(self) -> None:
        self.ctx.cache.pop(f"{self._key}:installed", None)

    def state(self, name: str) -> PackageState:
        return self.installed().get(name, ABSENT)

    def candidates(self, names: Iterable[str]) -> dict[str, str | None]:
        """Candidate versions, fetched in one call for every name not yet known."""
        key = f"{self._key}:candidates"
        cached: dict[str, str | None] = self.ctx.cache.setdefault(key, {})
        missing = sorted({n for n in names if n not in cached})
        if missing:
            found = self.query_candidates(missing)
            for name in missing:
                cached[name] = found.get(name)
        return cached

    def candidate(self, name: str) -> str | None:
        """The candidate; a name without one is asked again, once, before giving up: a
        resource earlier in this run may have added the repository that has it."""
        cached = self.candidates([name])
        if cached[name] is None and name not in self.ctx.cache.setdefault(
            f"{self._key}:requeried", set()
        ):
            self.ctx.cache[f"{self._key}:requeried"].add(name)
            cached[name] = self.query_candidates([name]).get(name)
        return cached[name]

    # -- what each manager implements ------------------------------------------------------

    @abstractmethod
    def list_installed(self) -> dict[str, PackageState]: ...

    @abstractmethod
    def query_candidates(self, names: Sequence[str]) -> dict[str, str | None]: ...

    def is_newer(self, candidate: str, installed: str) -> bool:
        """Whether ``candidate`` would be an upgrade over ``installed``."""
        return candidate != installed

    def version_matches(self, installed: str, wanted: str) -> bool:
        return installed == wanted

    @abstractmethod
    def install(self, name: str, version: str | None, state: PackageState) -> None: ...

    def upgrade(self, name: str, version: str, state: PackageState) -> None:
        self.install(name, version, state)

    @abstractmethod
    def remove(self, name: str, purge: bool) -> None: ...
