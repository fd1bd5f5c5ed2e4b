"""Agentless push over SSH: run the node engine on hosts that have only ``python3`` and sshd.

One session per host, three kinds of remote command, all plain ``exec`` requests (no SFTP,
so any sshd works, including ``ChrootDirectory`` and ``sudo`` setups without an sftp-server):

1. a **probe** checks that ``sudo -n`` works (when asked for), that ``python3`` runs and is new
   enough, and whether ``~/.cache/steward/bundle-<sha>.pyz`` is already there;
2. only when it is not, an **upload** streams the bundle through ``cat`` into a temp file,
   checks its sha256 with the remote ``python3`` and renames it into place, so a host never
   runs a partial or corrupted bundle and receives each code version once;
3. ``facts``, ``apply`` or ``task`` runs the bundle and its JSON comes back on stdout.

Secrets: the catalog and the secrets bundle both travel on stdin (first line the secrets
JSON, then the catalog). The bundle's ``__main__`` hands the secrets line to the engine
through an in-memory pipe (``--secrets /dev/fd/N``), so a secret is never in an argv, an
environment, or a file on the target. (SSH offers only one input stream per command, which
rules out a second fd. A 0600 temp file in a ``mktemp -d`` dir removed by a ``trap`` was the
alternative; it was not needed, and a host with neither ``/dev/fd`` nor ``/proc/self/fd``
gets a clear refusal instead of secrets on its disk.) A task job's part travels the same
way: the whole task document, sensitive parameter values included, is the ``task`` command's
stdin; the runner on the host cuts those values out of what it prints, and
:meth:`NodeSession.run_task` cuts them once more out of the result and out of any error.

Host keys: the target's ``known_hosts`` and Steward's own file are both trusted; an unknown
host is refused unless ``trust_on_first_use`` is set (``steward.transport.hostkeys``).

This module holds the session and the entry points; beside it are ``target`` (SSHTarget),
``hostkeys``, ``connection`` (connecting), ``remote_scripts`` (probe and upload) and
``fanout`` (many hosts at once).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncssh

from steward.catalog.redaction import cut_secrets, cut_secrets_json
from steward.engine.tasks import sensitive_forms
from steward.transport import TransportError
from steward.transport.bundle import MIN_PYTHON, SECRETS_ON_STDIN, Bundle, build_bundle
from steward.transport.connection import connect
from steward.transport.remote_scripts import (
    PROBE_MARK,
    PYTHON_FAILED,
    PYTHON_MARK,
    SUDO_FAILED,
    probe_script,
    sh,
    upload_script,
)
from steward.transport.target import SSHTarget

log = logging.getLogger("steward.transport")

#: Exit codes ``steward apply`` can end with after printing a report (bit flags 2, 4, 8).
_REPORT_BITS = 0b1110
#: Seconds a task's SSH command may take beyond the task's own timeout: the runner kills the
#: script at that timeout, and this covers starting python and the bundle, and the way back.
TASK_TIMEOUT_MARGIN = 20.0
#: What a task's part may end as on the node (``JobStore.complete`` accepts these).
TASK_STATES = frozenset({"succeeded", "failed", "timeout"})


def _tail(data: bytes, limit: int = 1500) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _head(data: bytes, limit: int = 300) -> str:
    """The start of unexpected stdout: where a banner or a stray print shows."""
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class _Completed:
    status: int
    stdout: bytes
    stderr: bytes


class NodeSession:
    """One SSH connection to a host with the bundle on it; ``commands`` lists what was sent.

    Nothing secret is ever part of a command (tests check ``commands``); secrets go to stdin.
    """

    def __init__(self, target: SSHTarget, connection: asyncssh.SSHClientConnection,
                 bundle: Bundle) -> None:
        self.target = target
        self.connection = connection
        self.bundle = bundle
        self.commands: list[str] = []
        self.uploaded = False
        self._remote_path: str | None = None

    async def _run(self, command: str, what: str, stdin: bytes | None = None, *,
                   timeout: float | None = None) -> _Completed:
        """Exec one command; ``timeout`` overrides the target's ``command_timeout``."""
        self.commands.append(command)
        log.debug("%s: exec %s", self.target.label, command)
        limit = timeout if timeout is not None else self.target.command_timeout
        try:
            result = await self.connection.run(
                command, input=stdin, encoding=None, check=False, timeout=limit,
            )
        except asyncssh.TimeoutError as exc:
            raise TransportError(
                f"{self.target.label}: {what} did not finish within "
                f"{limit or 0:g}s; the connection is closed, but the command "
                "may still be running on the host"
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise TransportError(f"{self.target.label}: {what} failed: {exc}") from exc
        if result.exit_status is None or result.exit_status < 0:
            raise TransportError(
                f"{self.target.label}: {what} was killed by signal {result.exit_signal}"
            )
        stdout = result.stdout if isinstance(result.stdout, bytes) else b""
        stderr = result.stderr if isinstance(result.stderr, bytes) else b""
        return _Completed(result.exit_status, stdout, stderr)

    async def ensure_bundle(self) -> str:
        """The bundle's path on the host, uploading it first if this version is not there."""
        if self._remote_path is not None:
            return self._remote_path
        target = self.target
        probe = await self._run(sh(probe_script(target, self.bundle)), "the probe")
        if probe.status == SUDO_FAILED:
            raise TransportError(
                f"{target.label}: sudo -n refused ({_tail(probe.stderr) or 'no message'}); "
                f"user {target.login} needs passwordless sudo (NOPASSWD) for pushes with "
                "sudo, or connect as root"
            )
        if probe.status == PYTHON_FAILED:
            raise TransportError(
                f"{target.label}: cannot run {target.python!r} on the host "
                f"({_tail(probe.stderr) or 'no message'}); the node engine needs Python "
                f"{'.'.join(map(str, MIN_PYTHON))}+ installed there (or set the target's "
                "python to its path)"
            )
        lines = probe.stdout.decode("utf-8", "replace").splitlines()
        marked = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in lines
                  if ln.startswith((f"{PROBE_MARK} ", f"{PYTHON_MARK} "))}
        if probe.status != 0 or set(marked) != {PROBE_MARK, PYTHON_MARK}:
            raise TransportError(
                f"{target.label}: the probe failed (exit {probe.status}): "
                f"{_tail(probe.stderr) or _tail(probe.stdout) or 'no output'}"
            )
        version = marked[PYTHON_MARK]
        state, _, path = marked[PROBE_MARK].partition(" ")
        try:
            found = tuple(int(p) for p in version.split("."))
        except ValueError:
            found = ()
        if found < MIN_PYTHON:
            raise TransportError(
                f"{target.label}: {target.python} is Python {version}; the node engine needs "
                f"{'.'.join(map(str, MIN_PYTHON))} or newer"
            )
        if state != "present":
            upload = await self._run(sh(upload_script(target, self.bundle)),
                                     "uploading the bundle", stdin=self.bundle.data)
            if upload.status != 0:
                raise TransportError(
                    f"{target.label}: uploading the node bundle failed (exit "
                    f"{upload.status}): {_tail(upload.stderr) or 'no message'}"
                )
            self.uploaded = True
            log.info("%s: uploaded %s (%d bytes)", target.label, self.bundle.remote_name,
                     self.bundle.size)
        self._remote_path = path
        return path

    def _engine_command(self, path: str, *args: str) -> str:
        prefix = ["sudo", "-n", "--"] if self.target.sudo else []
        return shlex.join([*prefix, self.target.python, path, *args])

    def _parse(self, done: _Completed, what: str) -> dict[str, Any]:
        try:
            document = json.loads(done.stdout.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            document = None
        if not isinstance(document, dict):
            raise TransportError(
                f"{self.target.label}: {what} did not print a JSON object (exit "
                f"{done.status}): stdout: {_head(done.stdout) or '(empty)'}; stderr: "
                f"{_tail(done.stderr, 1000) or '(empty)'}"
            )
        return document

    async def facts(self) -> dict[str, Any]:
        path = await self.ensure_bundle()
        done = await self._run(self._engine_command(path, "facts"), "steward facts")
        if done.status != 0:
            raise TransportError(
                f"{self.target.label}: steward facts failed (exit {done.status}): "
                f"{_tail(done.stderr) or 'no message'}"
            )
        return self._parse(done, "steward facts")

    async def apply(
        self,
        catalog: Mapping[str, Any],
        sensitive_values: Mapping[str, str] | None = None,
        *,
        noop: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """(exit code, report) of ``steward apply`` on the host; codes as the node CLI's."""
        path = await self.ensure_bundle()
        args = ["apply", "--catalog", "-", SECRETS_ON_STDIN, *(["--noop"] if noop else [])]
        # ensure_ascii: one line for the secrets whatever they contain, and no dependence on
        # the remote locale.
        secrets_line = json.dumps(dict(sensitive_values or {}), ensure_ascii=True)
        stdin = (secrets_line + "\n" + json.dumps(catalog, ensure_ascii=True)).encode("ascii")
        done = await self._run(self._engine_command(path, *args), "steward apply", stdin)
        if done.status == 1:
            raise TransportError(
                f"{self.target.label}: steward apply could not start: "
                f"{_tail(done.stderr) or 'no message'}"
            )
        report = self._parse(done, "steward apply")
        if done.status & ~_REPORT_BITS:
            raise TransportError(
                f"{self.target.label}: steward apply ended with exit {done.status}: "
                f"{_tail(done.stderr) or 'no message'}"
            )
        if done.stderr.strip():
            log.info("%s: steward apply stderr: %s", self.target.label, _tail(done.stderr))
        return done.status, report

    async def run_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Run one claimed part of a task job on the host: {state, exit_code, result, output}.

        ``task`` is the claim's document (task, noop, timeout, script_name, script, params,
        sensitive). It goes on stdin, never in the command; with ``sudo`` the runner runs as
        root. The SSH command may take the task's timeout plus :data:`TASK_TIMEOUT_MARGIN`,
        whatever the target's ``command_timeout``. A transport failure, or a runner that
        prints no result, is a :class:`TransportError` naming the host; sensitive values are
        cut out of it and of the result.
        """
        secrets = sensitive_forms(task)
        name = str(task.get("task") or "?")
        try:
            timeout = float(task.get("timeout") or 60) + TASK_TIMEOUT_MARGIN
            path = await self.ensure_bundle()
            stdin = json.dumps(dict(task), ensure_ascii=True, sort_keys=True).encode("ascii")
            done = await self._run(self._engine_command(path, "task"), f"task {name!r}",
                                   stdin, timeout=timeout)
            if done.status != 0:
                raise TransportError(
                    f"{self.target.label}: the task runner for {name!r} failed (exit "
                    f"{done.status}): {_tail(done.stderr) or 'no message'}"
                )
            document = self._parse(done, f"the task runner for {name!r}")
        except TransportError as exc:
            # Not chained: the original message could hold a value the redaction removed.
            raise TransportError(cut_secrets(str(exc), secrets)) from None
        state = document.get("state")
        exit_code = document.get("exit_code")
        output = document.get("output")
        if state not in TASK_STATES or not isinstance(output, str) or not (
                exit_code is None or (isinstance(exit_code, int)
                                      and not isinstance(exit_code, bool))):
            raise TransportError(
                f"{self.target.label}: the task runner for {name!r} printed no result "
                "(state, exit_code, output)"
            )
        result = document.get("result")
        return {"state": state, "exit_code": exit_code, "result": cut_secrets_json(result, secrets),
                "output": cut_secrets(output, secrets)}


@asynccontextmanager
async def open_session(
    target: SSHTarget, bundle: Bundle | None = None
) -> AsyncIterator[NodeSession]:
    """A connected session; several facts/apply calls then share one connection."""
    shipped = bundle if bundle is not None else build_bundle()
    connection = await connect(target)
    try:
        yield NodeSession(target, connection, shipped)
    finally:
        connection.close()
        await connection.wait_closed()


async def collect_facts(target: SSHTarget, *, bundle: Bundle | None = None) -> dict[str, Any]:
    """The host's facts, as ``steward facts`` prints them there."""
    async with open_session(target, bundle) as session:
        return await session.facts()


async def run_task(
    target: SSHTarget, task: Mapping[str, Any], *, bundle: Bundle | None = None
) -> dict[str, Any]:
    """Run one task job's part on the host (see :meth:`NodeSession.run_task`)."""
    async with open_session(target, bundle) as session:
        return await session.run_task(task)


async def apply_catalog(
    target: SSHTarget,
    catalog: Mapping[str, Any],
    sensitive_values: Mapping[str, str] | None = None,
    noop: bool = False,
    *,
    bundle: Bundle | None = None,
) -> tuple[int, dict[str, Any]]:
    """Enforce (or with ``noop`` only check) a catalog on the host: (exit code, report)."""
    async with open_session(target, bundle) as session:
        return await session.apply(catalog, sensitive_values, noop=noop)
