"""The narrow seam between providers and the system: run a command, get its result.

Providers never call :mod:`subprocess` themselves, so tests can swap in a runner that replays
captured real output (see :mod:`steward.engine.testing`) or one that enters a chroot.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line for an error message: the command, its exit code and its stderr's end."""
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        detail = " | ".join(tail)
        suffix = f": {detail}" if detail else ""
        return f"'{' '.join(self.argv)}' exited {self.returncode}{suffix}"


class CommandTimeout(Exception):
    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        super().__init__(f"'{' '.join(argv)}' did not finish within {timeout:g}s and was killed")


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult: ...

    def which(self, program: str) -> str | None: ...


class SubprocessRunner:
    """Runs commands on this host, with a fixed locale so output parses the same everywhere."""

    def __init__(self, base_env: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if base_env is None else base_env)
        env["LC_ALL"] = "C"
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        self._env = env

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        merged = dict(self._env)
        if env:
            merged.update(env)
        try:
            proc = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                env=merged,
                cwd=cwd,
                timeout=timeout,
                check=False,
                errors="replace",
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(argv, timeout or 0) from exc
        except FileNotFoundError:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def which(self, program: str) -> str | None:
        for directory in self._env["PATH"].split(os.pathsep):
            candidate = os.path.join(directory, program)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None
