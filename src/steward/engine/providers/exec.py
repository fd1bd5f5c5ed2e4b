"""Commands run by ``/bin/sh -c``, only when their guards say so.

Guards, in order: ``creates`` (a path check, so always evaluated, noop included), then
``onlyif`` and ``unless`` (commands). Guard commands may have side effects, so noop runs them
only when the resource declares ``noop_safe: true``; otherwise the resource is *pending*, not
predicted. A guard that cannot run its command at all (exit 126/127) is an error, not "false":
a typo in ``unless`` must not turn into running the command on every run.

The command (and each guard) runs under coreutils ``timeout``, which signals the whole
process group: the grandchildren of ``sh -c 'a; b'`` would otherwise outlive the kill
(and keep the output pipe open). As another user it runs through ``runuser -u USER --`` (``su``
where util-linux's runuser is missing), which keeps the environment but sets HOME and SHELL.

A command that leaves a background process holding its output open (``daemon &``) keeps
the run waiting for that output until the timeout; such commands must redirect it
(``daemon >/dev/null 2>&1 &``), as with any tool that captures output.

Refresh (notify/subscribe) runs the command again, subject to the same guards, Puppet's
semantics, except that a command already run by this run's sync is not run a second time.
"""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path
from typing import Any

from steward.catalog.sensitive import REDACTED
from steward.engine.provider import Change, Pending, Provider, ProviderError, Unresolved
from steward.engine.runner import CommandResult, CommandTimeout

#: coreutils ``timeout`` exit codes: TERM worked / KILL was needed.
TIMEOUT_CODES = (124, 137)
#: Seconds between timeout's TERM and its KILL.
KILL_AFTER = 5
PENDING_MESSAGE = (
    "would run unless guards say otherwise: onlyif/unless not evaluated in noop (set "
    "noop_safe: true if they have no side effects)"
)


def _tail(result: CommandResult, lines: int = 5) -> str:
    text = "\n".join(part for part in (result.stdout.strip(), result.stderr.strip()) if part)
    return " | ".join(text.splitlines()[-lines:])


class ExecProvider(Provider):
    type_name = "exec"

    #: Set once the command ran in this run, so a refresh does not run it twice.
    _ran: bool = False

    @property
    def _noop(self) -> bool:
        return self.ctx.noop or self.params.get("noop") is True

    @property
    def _display(self) -> str:
        return REDACTED if "command" in self.sensitive else self.name

    def _timeout(self) -> int | None:
        value = self.params.get("timeout")
        return int(value) if value else None

    def _argv(self, command: str) -> list[str]:
        argv = ["/bin/sh", "-c", command]
        user = self.params.get("user")
        if user:
            user = str(user)
            if lookup_name(os.geteuid()) != user:
                if os.geteuid() != 0:
                    raise ProviderError(f"running {self._display!r} as user {user} needs root")
                if self.ctx.runner.which("runuser"):
                    argv = ["runuser", "-u", user, "--", *argv]
                else:
                    argv = ["su", "-s", "/bin/sh", "-c", command, user]
        timeout = self._timeout()
        if timeout and self.ctx.runner.which("timeout"):
            argv = ["timeout", "-k", str(KILL_AFTER), str(timeout), *argv]
        return argv

    def _environment(self) -> dict[str, str] | None:
        env = self.params.get("environment")
        return {str(k): str(v) for k, v in env.items()} if env else None

    def _require_runnable(self) -> None:
        """What must exist before anything can run; may appear through a dependency."""
        user = self.params.get("user")
        if user:
            try:
                pwd.getpwnam(str(user))
            except KeyError:
                raise Unresolved(f"user {user} not found") from None
        cwd = self.params.get("cwd")
        if cwd and not Path(str(cwd)).is_dir():
            raise Unresolved(f"working directory {cwd} does not exist")

    def _execute(self, command: str, what: str) -> CommandResult:
        """Run ``command`` with the resource's user, cwd, environment and timeout."""
        self._require_runnable()
        timeout = self._timeout()
        started = time.monotonic()
        try:
            result = self.ctx.runner.run(
                self._argv(command),
                env=self._environment(),
                cwd=str(self.params["cwd"]) if self.params.get("cwd") else None,
                timeout=timeout + KILL_AFTER + 10 if timeout else None,
            )
        except CommandTimeout:
            raise ProviderError(
                f"{what} did not finish within the timeout of {timeout}s and was killed"
            ) from None
        if (timeout and result.returncode in TIMEOUT_CODES
                and time.monotonic() - started >= timeout):
            raise ProviderError(
                f"{what} did not finish within the timeout of {timeout}s and was killed"
            )
        return result

    def _guard(self, kind: str) -> bool:
        """Evaluate ``onlyif`` or ``unless``: True when its command exits 0."""
        command = str(self.params[kind])
        result = self._execute(command, f"{kind} guard {command!r}")
        if result.returncode in (126, 127):
            raise ProviderError(
                f"{kind} guard {command!r} could not run its command (exit "
                f"{result.returncode}): {_tail(result)}"
            )
        return result.ok

    def _should_run(self) -> bool:
        creates = self.params.get("creates")
        if creates:
            try:
                path = self.ctx.path(str(creates))
            except ValueError:
                raise ProviderError(f"creates {creates!r} must be an absolute path") from None
            if os.path.lexists(path):
                return False
        has_guards = any(self.params.get(k) is not None for k in ("onlyif", "unless"))
        if not has_guards:
            return True
        if self._noop and not self.params.get("noop_safe"):
            raise Pending(PENDING_MESSAGE)
        if self.params.get("onlyif") is not None and not self._guard("onlyif"):
            return False
        return not (self.params.get("unless") is not None and self._guard("unless"))

    def check(self) -> list[Change]:
        if self.params.get("refreshonly"):
            return []
        if not self._should_run():
            return []
        self._require_runnable()
        return [Change("executed", "notrun", self._display, f"executed {self._display!r}")]

    def sync(self, changes: list[Change]) -> None:
        if changes:
            self._run()

    def _run(self) -> None:
        result = self._execute(self.name, repr(self._display))
        returns = self._returns()
        self._ran = True
        if result.returncode not in returns:
            tail = _tail(result, 10)
            raise ProviderError(
                f"{self._display!r} returned {result.returncode} (expected "
                f"{' or '.join(map(str, returns))})" + (f": {tail}" if tail else "")
            )

    def _returns(self) -> list[int]:
        value: Any = self.params.get("returns")
        if value is None:
            return [0]
        return [int(v) for v in value] if isinstance(value, list) else [int(value)]

    def refresh(self) -> str | None:
        if self._noop:
            return None
        if self._ran:
            self.ctx.log("info", self.resource.ref,
                         "not run again on refresh: it already ran in this run")
            return None
        if not self._should_run():
            return None
        self._run()
        return f"executed {self._display!r}"


def lookup_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
