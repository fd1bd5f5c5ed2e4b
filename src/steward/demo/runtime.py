"""The main job's moving parts: ``steward`` as subprocesses, the server process, the output.

Everything goes through the command line (``python -m steward ...`` with this interpreter), as a
user would type it, so the demo exercises the real entry points and is unaffected by internal
API changes. Every byte a subprocess prints is kept, so the secret check at the end covers the
whole run, not only what was shown.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from steward.catalog.redaction import REDACTED, scrub_text
from steward.clock import SYSTEM_CLOCK, Clock
from steward.errors import StewardError

#: The sandboxed nodes: two web servers (web2 is the staging canary) and a database server.
DEMO_NODES = ("web1", "web2", "db1")
#: Generous, for slow or loaded machines; the whole demo normally takes seconds.
COMMAND_TIMEOUT = 180.0
SERVER_START_TIMEOUT = 90.0

_HASH = re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]{52}")


class DemoError(StewardError):
    """A step of the main job did not do what it should; the message says which and why."""


@dataclass(frozen=True)
class Result:
    """One finished ``steward`` subprocess."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        lines = [line for line in (self.stderr + "\n" + self.stdout).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"


@dataclass(frozen=True)
class AgentRun:
    """One ``steward agent --once`` run of one node, as the demo expected and saw it."""

    step: str
    node: str
    exit_code: int
    noop: bool


@dataclass
class Demo:
    """The state the steps share: paths, the server process, every output, what happened."""

    workdir: Path
    repo: Path | None
    out: TextIO
    python: str = sys.executable
    started: float = field(default_factory=time.monotonic)
    #: An ISO 8601 UTC timestamp one hour before the demo began ("the last hour").
    since: str = ""
    port: int = 0
    #: The generated db_password; must end up in db1's managed file and nowhere else.
    secret_value: str = ""
    #: Tokens never to show: replaced in everything printed.
    redactions: list[str] = field(default_factory=list)
    #: Everything printed and everything any subprocess wrote, for the secret check.
    transcript: list[str] = field(default_factory=list)
    server: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[str]] = field(default_factory=list)
    runs: list[AgentRun] = field(default_factory=list)
    #: What was done behind Steward's back, per node.
    tampered: dict[str, list[str]] = field(default_factory=dict)
    #: The change pipeline's part: identities' tokens (never shown).
    pipeline: dict[str, Any] = field(default_factory=dict)
    columns: int = 140
    #: What "now" is to the demo; keep the real one: the server subprocess stamps
    #: reports by its own real clock, and ``since`` is compared with those stamps.
    clock: Clock = SYSTEM_CLOCK

    # -- paths -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def nodes_dir(self) -> Path:
        return self.workdir / "nodes"

    def root(self, node: str) -> Path:
        return self.nodes_dir / node

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    @property
    def server_log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def join_token_file(self) -> Path:
        return self.workdir / "join.token"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def shown(self, path: Path) -> str:
        """A path as the user would type it: relative to the current directory when inside."""
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    # -- output ----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` without the demo's tokens (shown as their kind prefix and the one marker)
        nor any other credential it spells out."""
        for token in self.redactions:
            if token:
                text = text.replace(token, token[:5] + REDACTED)
        return scrub_text(text)

    def say(self, text: str = "", indent: int = 0) -> None:
        text = self.redact(text)
        if indent:
            text = "\n".join((" " * indent + line) if line else line
                             for line in text.splitlines())
        self.transcript.append(text)
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self, text: str) -> None:
        self.say()
        self.say(f"== {text}")

    def command(self, argv: Sequence[str]) -> None:
        """Show a command as the user would type it."""
        self.say("$ steward " + " ".join(shlex.quote(a) for a in argv))

    # -- subprocesses ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """This environment without STEWARD_* settings (the demo names everything itself)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
        env["COLUMNS"] = str(self.columns)
        env.pop("LINES", None)
        return env

    def argv(self, args: Sequence[str]) -> list[str]:
        return [self.python, "-m", "steward", *args]

    def steward(self, *args: str, stdin: str | None = None, check: bool = True,
                what: str | None = None, token: str | None = None) -> Result:
        """Run ``steward ARGS``; with ``check``, a non-zero exit is a :class:`DemoError`.

        ``token`` acts as that identity (``STEWARD_TOKEN``; never on the command line).
        """
        env = self.env()
        if token is not None:
            env["STEWARD_TOKEN"] = token
        try:
            proc = subprocess.run(self.argv(args), input=stdin, capture_output=True, text=True,
                                  env=env, timeout=COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise DemoError(f"'steward {args[0]}' did not finish in {COMMAND_TIMEOUT:.0f}s"
                            ) from None
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        self.transcript += [result.stdout, result.stderr]
        if check and result.returncode != 0:
            raise DemoError(f"{what or 'steward ' + args[0]} failed (exit {result.returncode}): "
                            f"{self.redact(result.last_line())}")
        return result

    def parallel(self, commands: dict[str, list[str]]) -> dict[str, Result]:
        """Run several ``steward`` commands side by side (one per node); wait for all."""
        started: dict[str, subprocess.Popen[str]] = {}
        for key, args in commands.items():
            proc = subprocess.Popen(self.argv(args), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=self.env())
            self.children.append(proc)
            started[key] = proc
        results: dict[str, Result] = {}
        for key, proc in started.items():
            try:
                stdout, stderr = proc.communicate(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.stop_children()
                raise DemoError(f"'steward {commands[key][0]}' for {key} did not finish in "
                                f"{COMMAND_TIMEOUT:.0f}s") from None
            self.children.remove(proc)
            results[key] = Result(tuple(commands[key]), proc.returncode, stdout, stderr)
            self.transcript += [stdout, stderr]
        return results

    def stop_children(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.children.clear()

    # -- the server ------------------------------------------------------------------------

    def start_server(self) -> float:
        """Start ``steward server`` in the background; return seconds until it answered."""
        started = time.monotonic()
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen(
                self.argv(["server", "--data-dir", str(self.data_dir), "--log-level",
                           "warning"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
            )
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        deadline = started + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise DemoError(f"the server exited {self.server.returncode} at start: "
                                f"{self._log_tail()} (log: {self.shown(self.server_log)})")
            if _answers(self.port, context):
                return time.monotonic() - started
            time.sleep(0.1)
        raise DemoError(f"the server did not answer on {self.server_url} within "
                        f"{SERVER_START_TIMEOUT:.0f}s (log: {self.shown(self.server_log)})")

    def stop_server(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call twice."""
        proc, self.server = self.server, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def _log_tail(self) -> str:
        try:
            lines = self.server_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        lines = [line for line in lines if line.strip()]
        return self.redact(lines[-1].strip()) if lines else "(empty log)"


def _answers(port: int, context: ssl.SSLContext) -> bool:
    """Whether the server answers HTTPS (any status: it is up and serving)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
    try:
        conn.request("GET", "/api/v1/whoami")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_hashes(text: str) -> str:
    """``sha256:`` + 64 hex digits shortened to 12 and an ellipsis, so lines fit a terminal."""
    return _HASH.sub(lambda m: f"sha256:{m.group(1)}…", text)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the demo runs, so the server is stopped either way."""
    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
