"""What a provider may use during a run: the runner, the path mapping, the run's caches."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.engine.runner import Runner


@dataclass(frozen=True, slots=True)
class LogEntry:
    level: str
    source: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "source": self.source, "message": self.message}


@dataclass
class Context:
    runner: Runner
    noop: bool = False
    #: Confines path-based resources to this directory: no write or read through a symlink
    #: out of it (pathutil.real_path); owners and groups resolve against its etc/passwd|group.
    root: Path | None = None
    #: Where the engine keeps its own state (drift history, backups) for this node.
    state_dir: Path = Path("/var/lib/steward")
    #: Per-run caches filled by prefetches (e.g. the installed package list).
    cache: dict[str, Any] = field(default_factory=dict)
    logs: list[LogEntry] = field(default_factory=list)
    #: Paths managed by path-based resources in this catalog (for directory purge).
    managed_paths: frozenset[str] = frozenset()

    def path(self, path: str) -> Path:
        """Map an absolute path of the catalog to the real path under ``root``."""
        if not os.path.isabs(path):
            raise ValueError(f"path {path!r} is not absolute")
        if self.root is None:
            return Path(path)
        normalised = os.path.normpath(path).lstrip("/")
        return self.root / normalised

    def log(self, level: str, source: str, message: str) -> None:
        self.logs.append(LogEntry(level, source, message))
