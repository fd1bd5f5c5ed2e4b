"""The audit log's witness: where checkpoints are written outside the database.

A checkpoint only proves something if whoever can rewrite the database cannot also rewrite
where it was recorded: an append-only file in the data directory, and optionally a command
or a URL (docs/audit.md, "The witness").
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from steward.access.audit_entries import AuditError
from steward.access.checkpoints import Checkpoint
from steward.catalog.canonical import canonical_json

#: The audit log's logger, which its operators watch (docs/audit.md).
log = logging.getLogger("steward.access.audit")

WITNESS_FILE = "audit-witness.jsonl"
#: How long an external witness (command or URL) may take to accept a checkpoint.
WITNESS_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class WitnessLine:
    """One line of the witness file: its checkpoint, or why it is not one."""

    line: int
    checkpoint: Checkpoint | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Witness:
    """Where checkpoints are written outside the database (docs/audit.md, "The witness").

    ``path`` is an append-only JSON-lines file: each checkpoint is appended under an exclusive
    lock and fsynced *before* its database row commits, so every committed checkpoint is in
    the file (which is what lets verification notice a file cut back to an older line).
    ``command`` (an argv, the checkpoint's JSON on stdin) and ``url`` (POSTed the JSON) are
    external witnesses, told after the commit, best effort: a failure is logged.
    """

    path: Path | None = None
    command: tuple[str, ...] = ()
    url: str | None = None
    timeout: float = WITNESS_TIMEOUT

    def write(self, checkpoint: Checkpoint) -> None:
        """Append ``checkpoint`` to the file (created 0600); :class:`AuditError` if it fails."""
        if self.path is None:
            return
        line = (canonical_json(checkpoint.to_json()) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit witness {self.path}: {exc.strerror}") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # an interrupted write: keep this checkpoint on its own line
            os.write(fd, line)
            os.fsync(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit witness {self.path}: {exc.strerror}") \
                from None
        finally:
            os.close(fd)

    def publish(self, checkpoint: Checkpoint) -> None:
        """Hand ``checkpoint`` to the external witnesses; failures are logged, not raised."""
        body = (canonical_json(checkpoint.to_json()) + "\n").encode("utf-8")
        if self.command:
            try:
                done = subprocess.run(  # the operator's configured command
                    list(self.command), input=body, capture_output=True, timeout=self.timeout,
                    check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("audit witness command %s failed: %s", self.command[0], exc)
            else:
                if done.returncode != 0:
                    log.warning("audit witness command %s exited %d: %s", self.command[0],
                                done.returncode,
                                done.stderr.decode("utf-8", "replace").strip()[:500])
        if self.url:
            request = urllib.request.Request(  # noqa: S310 (http(s) checked by the config)
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):  # noqa: S310
                    pass
            except (OSError, ValueError) as exc:
                log.warning("audit witness %s refused checkpoint %d: %s", self.url,
                            checkpoint.id, exc)

    def read(self) -> list[WitnessLine] | None:
        """Every line of the file, parsed (None when there is no file)."""
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit witness {self.path}: {exc.strerror}") \
                from None
        lines: list[WitnessLine] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                lines.append(WitnessLine(number, Checkpoint.from_json(json.loads(raw))))
            except (ValueError, UnicodeDecodeError) as exc:
                lines.append(WitnessLine(number, None, f"not a checkpoint: {exc}"))
        return lines
