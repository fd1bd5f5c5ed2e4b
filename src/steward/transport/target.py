"""Where and how to reach one host: the :class:`SSHTarget` a push is given, checked when
it is made, and where Steward keeps the host keys it learns."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

from steward.errors import UsageError

DEFAULT_PORT = 22


def default_known_hosts_path() -> Path:
    """Steward's own known_hosts: learned state, so under ``$XDG_STATE_HOME``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "steward" / "known_hosts"


@dataclass(frozen=True)
class SSHTarget:
    """How to reach one host and run the engine there.

    ``key_file`` names a private key to use alone; without it the ssh-agent
    (``$SSH_AUTH_SOCK``) and the default ``~/.ssh/id_*`` keys are tried. ``~/.ssh/config``
    is deliberately not read: a push must do what its target says, on every controller.
    """

    host: str
    port: int = DEFAULT_PORT
    user: str | None = None
    key_file: Path | None = None
    sudo: bool = False
    python: str = "python3"
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    steward_known_hosts: Path = field(default_factory=default_known_hosts_path)
    connect_timeout: float = 30.0
    command_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise UsageError(f"SSH target host {self.host!r} is not a host name or address")
        if not 0 < self.port < 65536:
            raise UsageError(f"SSH target {self.host}: port {self.port} is not in 1..65535")
        if not self.python.strip():
            raise UsageError(f"SSH target {self.host}: python must name an interpreter")

    @property
    def login(self) -> str:
        return self.user or getpass.getuser()

    @property
    def label(self) -> str:
        """``user@host:port`` (plus ``via sudo``): how every message names the host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.login}@{host}:{self.port}" + (" (via sudo)" if self.sudo else "")

    @property
    def known_hosts_pattern(self) -> str:
        """The host as OpenSSH writes it in known_hosts: ``[host]:port`` off port 22."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"
