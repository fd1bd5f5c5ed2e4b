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

Host keys: the target's ``known_hosts`` and Steward's own file are both trusted. An unknown
host is refused unless ``trust_on_first_use`` is set, in which case its key is recorded in
Steward's file (and logged) once the connection is up. A host whose key differs from a
recorded one is always refused, naming both fingerprints.
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import json
import logging
import os
import shlex
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncssh

from steward.catalog.redaction import cut_secrets, cut_secrets_json
from steward.engine.tasks import sensitive_forms
from steward.errors import StewardError, UsageError
from steward.transport import TransportError
from steward.transport.bundle import MIN_PYTHON, SECRETS_ON_STDIN, Bundle, build_bundle

log = logging.getLogger("steward.transport")

DEFAULT_PORT = 22
#: Exit codes of the probe script, so each failure gets its own message.
_SUDO_FAILED, _PYTHON_FAILED, _UPLOAD_CORRUPT = 90, 91, 92
_PROBE_MARK = "steward-probe"
_PYTHON_MARK = "steward-python"
#: Exit codes ``steward apply`` can end with after printing a report (bit flags 2, 4, 8).
_REPORT_BITS = 0b1110
#: Seconds a task's SSH command may take beyond the task's own timeout: the runner kills the
#: script at that timeout, and this covers starting python and the bundle, and the way back.
TASK_TIMEOUT_MARGIN = 20.0
#: What a task's part may end as on the node (``JobStore.complete`` accepts these).
TASK_STATES = frozenset({"succeeded", "failed", "timeout"})


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


# --- host keys ---------------------------------------------------------------------------


def _fingerprints(keys: Iterable[asyncssh.SSHKey]) -> str:
    return ", ".join(f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in keys)


def _read_known_hosts(path: Path, *, required: bool) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise TransportError(f"known_hosts file {path} does not exist") from None
        return ""
    except OSError as exc:
        raise TransportError(f"cannot read known_hosts file {path}: {exc.strerror}") from exc


#: asyncssh's pre-matched known_hosts form: host keys, CA keys, revoked keys, then four
#: X.509 lists (trusted/revoked certificates and subject names).
_Matched = tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]


def _match_known_hosts(target: SSHTarget, texts: Iterable[tuple[Path, str]]) -> _Matched:
    """Trusted keys for the target from every file (matched by the host name as given)."""
    keys: list[list[Any]] = [[] for _ in range(7)]
    for path, text in texts:
        try:
            entries = asyncssh.import_known_hosts(text)
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise TransportError(f"{path}: not a valid known_hosts file: {exc}") from exc
        # Matched as OpenSSH does without CheckHostIP: by the name as given, as ``[host]:port``
        # off port 22, with no fallback to port-less entries. (asyncssh's own port matching
        # falls back, and then loses a port-specific @revoked line.)
        found = entries.match(target.known_hosts_pattern, "", None)
        for into, more in zip(keys, found, strict=True):
            into.extend(more)
    return (keys[0], keys[1], keys[2], keys[3], keys[4], keys[5], keys[6])


class _HostKeyCheck(asyncssh.SSHClient):
    """Decides about a host key asyncssh found in no trusted list: first seen, or changed."""

    def __init__(self, target: SSHTarget, known: list[asyncssh.SSHKey], has_ca: bool,
                 has_revoked: bool = False) -> None:
        self.target = target
        self.known = known
        self.has_ca = has_ca
        self.has_revoked = has_revoked
        self.offered: asyncssh.SSHKey | None = None
        self.first_seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        if self.known or self.has_ca:
            return False  # a key is on record and this is not it: never accepted
        if self.target.trust_on_first_use:
            # Recorded only after the handshake proved the host holds the private key.
            self.first_seen = key
            return True
        return False

    def refusal(self, reason: str = "") -> TransportError:
        target = self.target
        if self.offered is None:
            # asyncssh refused before asking: a @revoked key, or a certificate it rejected.
            revoked = " (a key marked @revoked)" if self.has_revoked else ""
            return TransportError(
                f"host key of {target.known_hosts_pattern} ({target.label}) was refused"
                f"{revoked}: {reason or 'not verifiable'}; known_hosts files: "
                f"{_known_hosts_files(target)}"
            )
        offered = _fingerprints([self.offered])
        if self.known or self.has_ca:
            recorded = _fingerprints(self.known) if self.known else "a host CA"
            return TransportError(
                f"HOST KEY CHANGED for {target.known_hosts_pattern} ({target.label}): it "
                f"offered {offered} but {recorded} is recorded in "
                f"{_known_hosts_files(target)}. Refusing to connect: this is either a "
                "reinstalled host or someone intercepting the connection. If the change is "
                "expected, remove the old entry and connect again."
            )
        return TransportError(
            f"host key of {target.known_hosts_pattern} ({target.label}) is unknown: it offered "
            f"{offered}, which is in none of {_known_hosts_files(target)}. Add it to a "
            "known_hosts file, or set trust_on_first_use to record it on first contact."
        )


def _known_hosts_files(target: SSHTarget) -> str:
    files = [target.steward_known_hosts]
    if target.known_hosts is not None:
        files.insert(0, target.known_hosts)
    return ", ".join(str(f) for f in files)


def _record_first_seen(target: SSHTarget, key: asyncssh.SSHKey) -> None:
    """Append the key to Steward's known_hosts under a lock, unless another run just did.

    Re-reading under the lock closes the race of two pushes meeting the same new host: the
    second one sees the first one's entry, and a different key there is a changed key.
    """
    path = target.steward_known_hosts
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            known = list(_match_known_hosts(target, [(path, text)])[0])
            if key in known:
                return
            if known:
                check = _HostKeyCheck(target, known, has_ca=False)
                check.offered = key
                raise check.refusal()
            separator = "" if not text or text.endswith("\n") else "\n"
            handle.write(f"{separator}{target.known_hosts_pattern} {algorithm} {blob}\n")
    except OSError as exc:
        raise TransportError(
            f"cannot record the host key of {target.label} in {path}: {exc.strerror or exc}"
        ) from exc
    log.warning(
        "%s: trusting host key seen for the first time: %s; recorded in %s",
        target.label, _fingerprints([key]), path,
    )


# --- connecting --------------------------------------------------------------------------


async def _connect(target: SSHTarget) -> asyncssh.SSHClientConnection:
    texts = [(target.steward_known_hosts,
              _read_known_hosts(target.steward_known_hosts, required=False))]
    if target.known_hosts is not None:
        texts.insert(0, (target.known_hosts, _read_known_hosts(target.known_hosts,
                                                               required=True)))
    trusted = _match_known_hosts(target, texts)
    check = _HostKeyCheck(target, list(trusted[0]), has_ca=bool(trusted[1]),
                          has_revoked=bool(trusted[2]))
    keys: dict[str, Any] = {}
    if target.key_file is not None:
        try:
            keys = {"client_keys": [asyncssh.read_private_key(target.key_file)],
                    "agent_path": None}
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise TransportError(
                f"{target.label}: cannot load SSH key {target.key_file}: {detail}"
            ) from exc
    try:
        connection = await asyncssh.connect(
            target.host, target.port,
            username=target.login,
            known_hosts=trusted,
            client_factory=lambda: check,
            config=None,
            connect_timeout=target.connect_timeout,
            password_auth=False,
            kbdint_auth=False,
            gss_auth=False,
            **keys,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise check.refusal(exc.reason) from exc
    except asyncssh.PermissionDenied as exc:
        how = (f"key {target.key_file}" if target.key_file is not None
               else "the ssh-agent and ~/.ssh keys")
        raise TransportError(
            f"{target.label}: authentication failed: the server accepted no key from {how} "
            f"for user {target.login} ({exc.reason})"
        ) from exc
    except asyncssh.KeyExchangeFailed as exc:
        hint = (" (the recorded host key type is not offered any more: a changed host key?)"
                if check.known else "")
        raise TransportError(f"{target.label}: SSH key exchange failed: {exc.reason}{hint}")\
            from exc
    except asyncssh.Error as exc:
        raise TransportError(f"{target.label}: SSH connection failed: {exc}") from exc
    except TimeoutError as exc:
        raise TransportError(
            f"{target.label}: no SSH connection within {target.connect_timeout:g}s"
        ) from exc
    except socket.gaierror as exc:
        raise TransportError(f"{target.label}: cannot resolve {target.host}: {exc.strerror}")\
            from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)
        raise TransportError(f"{target.label}: cannot connect: {reason}") from exc
    if check.first_seen is not None:
        try:
            _record_first_seen(target, check.first_seen)
        except TransportError:
            connection.close()
            raise
    return connection


# --- the remote side ---------------------------------------------------------------------


def _remote_cache_prelude(target: SSHTarget, bundle: Bundle) -> str:
    """Shell that names the interpreter and the bundle's place in the user's cache."""
    return (
        f"py={shlex.quote(target.python)}\n"
        'd="${XDG_CACHE_HOME:-$HOME/.cache}/steward"\n'
        f'f="$d/{bundle.remote_name}"\n'
        f"run={shlex.quote('sudo -n --' if target.sudo else '')}\n"
    )


def probe_script(target: SSHTarget, bundle: Bundle) -> str:
    sudo_check = (
        'o=$(sudo -n true 2>&1) || { printf "%s\\n" "$o" >&2; exit '
        f"{_SUDO_FAILED}; }}\n" if target.sudo else ""
    )
    # Marked lines, so whatever else a login shell or a python wrapper prints is ignored.
    return (
        _remote_cache_prelude(target, bundle) + sudo_check
        + "v=$($run \"$py\" -c 'import sys; "
        f"print(\"{_PYTHON_MARK} %d.%d\" % sys.version_info[:2])' 2>&1)"
        f' || {{ printf "%s\\n" "$v" >&2; exit {_PYTHON_FAILED}; }}\n'
        'printf "%s\\n" "$v"\n'
        'if [ -f "$f" ]; then s=present; else s=missing; fi\n'
        f'printf "{_PROBE_MARK} %s %s\\n" "$s" "$f"\n'
    )


def upload_script(target: SSHTarget, bundle: Bundle) -> str:
    check = ("import hashlib, sys; data = open(sys.argv[1], 'rb').read(); "
             "sys.exit(hashlib.sha256(data).hexdigest() != sys.argv[2])")
    return (
        "set -e\numask 077\n" + _remote_cache_prelude(target, bundle)
        + 'mkdir -p "$d"\n'
        't=$(mktemp "$d/.upload.XXXXXX")\n'
        "trap 'rm -f \"$t\"' EXIT\n"
        'cat > "$t"\n'
        f'if ! $run "$py" -c {shlex.quote(check)} "$t" {bundle.sha256}; then\n'
        f'  echo "the uploaded bundle does not have sha256 {bundle.sha256}" >&2; '
        f"exit {_UPLOAD_CORRUPT}\nfi\n"
        'mv -f "$t" "$f"\n'
    )


def _sh(script: str) -> str:
    """Run under sh whatever the login shell is: the scripts are POSIX sh."""
    return f"sh -c {shlex.quote(script)}"


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
        probe = await self._run(_sh(probe_script(target, self.bundle)), "the probe")
        if probe.status == _SUDO_FAILED:
            raise TransportError(
                f"{target.label}: sudo -n refused ({_tail(probe.stderr) or 'no message'}); "
                f"user {target.login} needs passwordless sudo (NOPASSWD) for pushes with "
                "sudo, or connect as root"
            )
        if probe.status == _PYTHON_FAILED:
            raise TransportError(
                f"{target.label}: cannot run {target.python!r} on the host "
                f"({_tail(probe.stderr) or 'no message'}); the node engine needs Python "
                f"{'.'.join(map(str, MIN_PYTHON))}+ installed there (or set the target's "
                "python to its path)"
            )
        lines = probe.stdout.decode("utf-8", "replace").splitlines()
        marked = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in lines
                  if ln.startswith((f"{_PROBE_MARK} ", f"{_PYTHON_MARK} "))}
        if probe.status != 0 or set(marked) != {_PROBE_MARK, _PYTHON_MARK}:
            raise TransportError(
                f"{target.label}: the probe failed (exit {probe.status}): "
                f"{_tail(probe.stderr) or _tail(probe.stdout) or 'no output'}"
            )
        version = marked[_PYTHON_MARK]
        state, _, path = marked[_PROBE_MARK].partition(" ")
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
            upload = await self._run(_sh(upload_script(target, self.bundle)),
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
    connection = await _connect(target)
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


# --- many hosts --------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What one host's call gave: its value, or the user-facing error that stopped it."""

    target: T
    value: R | None = None
    error: StewardError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_many(
    targets: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int
) -> list[Outcome[T, R]]:
    """Call ``fn`` for every target, at most ``limit`` at a time, in the targets' order.

    One unreachable host must not stop a push to the others, so a StewardError becomes that
    host's outcome; any other exception is a bug and propagates.
    """
    if limit < 1:
        raise UsageError(f"concurrency limit must be at least 1, not {limit}")
    gate = asyncio.Semaphore(limit)

    async def one(target: T) -> Outcome[T, R]:
        async with gate:
            try:
                return Outcome(target, value=await fn(target))
            except StewardError as exc:
                return Outcome(target, error=exc)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(target)) for target in targets]
    return [task.result() for task in tasks]
