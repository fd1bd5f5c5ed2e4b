"""The report spool: no report is lost, whether or not the server is there.

Every report is written here *before* any delivery is tried: to a temporary file, fsync'd,
renamed into place, and the directory fsync'd, so a crash or power cut leaves either the
whole report or nothing. Names start with a nanosecond timestamp, so sorting them is
delivering oldest first. A report is deleted only after the server answered 2xx (the server
stores reports idempotently by ``transaction_uuid``, so a retry after a lost answer is
harmless). One the server rejects as malformed (400/413/422) would block the queue forever;
it is moved to ``rejected/`` (kept, not lost) and delivery goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steward.agent.errors import AgentError, Refused, RequestFailed, ServerUnavailable

#: HTTP statuses meaning "this report will never be accepted": set aside, carry on.
PERMANENT_REJECTIONS = frozenset({400, 413, 422})


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half."""
    temp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


@dataclass
class Delivery:
    delivered: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    remaining: int = 0
    #: Why delivery stopped early (the server is down, the credential refused), if it did.
    stopped: str | None = None


class Spool:
    """Reports waiting for the server, one JSON file each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rejected_dir = directory / "rejected"

    def _ensure(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AgentError(f"cannot create the report spool {self.directory}: {exc}") from None

    def put(self, report: dict[str, Any]) -> Path:
        """Queue ``report`` durably; returns its file."""
        self._ensure()
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.json"
        path = self.directory / name
        data = json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        write_atomically(path, data)
        return path

    def pending(self) -> list[Path]:
        """Queued reports, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir()
                      if p.is_file() and p.suffix == ".json" and not p.name.startswith("."))

    def _set_aside(self, path: Path) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.replace(self.rejected_dir / path.name)
        fsync_dir(self.rejected_dir)
        fsync_dir(self.directory)

    def deliver(self, send: Callable[[dict[str, Any]], None]) -> Delivery:
        """Send queued reports oldest first, deleting each only after ``send`` returned."""
        outcome = Delivery()
        queue = self.pending()
        for index, path in enumerate(queue):
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(report, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError):
                self._set_aside(path)
                outcome.rejected.append(path.name)
                continue
            try:
                send(report)
            except (ServerUnavailable, Refused) as exc:
                outcome.stopped = str(exc)
                outcome.remaining = len(queue) - index
                return outcome
            except RequestFailed as exc:
                if exc.status not in PERMANENT_REJECTIONS:
                    outcome.stopped = str(exc)
                    outcome.remaining = len(queue) - index
                    return outcome
                self._set_aside(path)
                outcome.rejected.append(path.name)
                continue
            path.unlink()
            fsync_dir(self.directory)
            outcome.delivered.append(str(report.get("transaction_uuid", path.name)))
        return outcome
