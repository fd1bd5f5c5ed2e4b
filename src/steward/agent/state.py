"""What the agent keeps between runs, under ``<state-dir>/agent/`` (0700).

``credential.json`` (0600) the node's token, bound to its certname and server;
``enrollment.json`` (0600) a pending enrollment request and its poll token;
``catalog.json`` (0600) the last catalog received, with its sensitive values, which is what
lets the node keep enforcing its desired state while the server is away (the values are the
node's own: they end up on this node's disk in the managed files anyway);
``spool/`` reports not yet acknowledged by the server; ``lock`` one agent per state dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steward.agent.errors import AgentError
from steward.agent.spool import Spool, write_atomically


@dataclass(frozen=True, slots=True)
class CachedCatalog:
    catalog: dict[str, Any]
    sensitive_values: dict[str, str]
    fetched_at: str


class AgentState:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "agent"
        self.credential_path = self.dir / "credential.json"
        self.enrollment_path = self.dir / "enrollment.json"
        self.catalog_path = self.dir / "catalog.json"
        self.spool = Spool(self.dir / "spool")

    def ensure(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AgentError(f"cannot create the agent state directory {self.dir}: {exc}") \
                from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state directory for this process: two agents must not interleave."""
        self.ensure()
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AgentError(
                    f"another steward agent is using {self.state_dir} (lock {self.dir / 'lock'})"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- small JSON files ------------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AgentError(f"cannot read {path}: {exc}; remove it to start over") from None
        if not isinstance(document, dict):
            raise AgentError(f"{path} is not a JSON object; remove it to start over")
        return document

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        self.ensure()
        write_atomically(path, json.dumps(document, sort_keys=True).encode("utf-8"))

    # -- credential and enrollment ---------------------------------------------------------

    def credential(self, certname: str, server: str) -> str | None:
        document = self._read(self.credential_path)
        if document is None:
            return None
        if document.get("certname") != certname:
            raise AgentError(
                f"{self.credential_path} holds the credential of node "
                f"{document.get('certname')!r}, not {certname!r}; use another --state-dir"
            )
        if document.get("server") != server:
            raise AgentError(
                f"{self.credential_path} was issued by {document.get('server')}, not {server}; "
                "use another --state-dir, or remove it to enroll again"
            )
        token = document.get("token")
        return token if isinstance(token, str) and token else None

    def save_credential(self, certname: str, server: str, token: str) -> None:
        self._write(self.credential_path, {"certname": certname, "server": server,
                                           "token": token})

    def discard_credential(self) -> Path | None:
        """Set a refused credential aside (kept for inspection), so the next run re-enrolls."""
        if not self.credential_path.exists():
            return None
        target = self.credential_path.with_name("credential.refused.json")
        self.credential_path.replace(target)
        return target

    def enrollment(self) -> dict[str, Any] | None:
        return self._read(self.enrollment_path)

    def save_enrollment(self, document: dict[str, Any]) -> None:
        self._write(self.enrollment_path, document)

    def clear_enrollment(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.enrollment_path.unlink()

    # -- catalog cache ---------------------------------------------------------------------

    def cached_catalog(self) -> CachedCatalog | None:
        document = self._read(self.catalog_path)
        if document is None:
            return None
        catalog = document.get("catalog")
        values = document.get("sensitive_values") or {}
        if not isinstance(catalog, dict) or not isinstance(values, dict):
            raise AgentError(f"{self.catalog_path} is damaged; remove it")
        return CachedCatalog(catalog, values, str(document.get("fetched_at", "")))

    def save_catalog(self, catalog: dict[str, Any], sensitive_values: dict[str, str],
                     fetched_at: str) -> None:
        self._write(self.catalog_path, {"catalog": catalog, "sensitive_values": sensitive_values,
                                        "fetched_at": fetched_at})
