"""One agent run, and the daemon that repeats it on a schedule and on request.

A run: deliver queued reports → collect and upload facts → fetch the catalog (cache it) →
enforce it → queue the report durably → deliver. If the server cannot be reached (or fails,
or cannot compile), the run enforces the last cached catalog instead and says so in the
report's logs; the report waits in the spool. A refused credential stops the run: a revoked
node must not keep acting on its own.

Between runs the daemon long-polls the server (``run-wait``), so an operator's "run now"
starts a run within moments rather than at the next interval. A run-now answer may name a
commit (a change's live prediction): that run fetches the catalog of that commit, runs it in
noop, and reports; the catalog is not cached (it is a proposal, never to be enforced), and
when it cannot be fetched nothing is run at all.
"""

from __future__ import annotations

import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from steward.agent.client import ServerClient
from steward.agent.errors import (
    AgentError,
    NotEnrolled,
    Refused,
    RequestFailed,
    ServerUnavailable,
)
from steward.agent.state import AgentState
from steward.clock import iso, utcnow
from steward.engine.tasks import run_task
from steward.errors import StewardError

#: How long one run-now long poll may stay open (the server may answer sooner).
LONG_POLL_SECONDS = 25.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: str
    certname: str
    state_dir: Path
    ca_file: str | None = None
    join_token: str | None = None
    root: Path | None = None
    facts_root: str = "/"
    environment: str | None = None
    noop: bool = False
    interval: float = 1800.0
    splay: float = 0.0
    timeout: float = 60.0
    #: While enrollment awaits approval (or failed), ask again this often.
    retry: float = 15.0


@dataclass(frozen=True, slots=True)
class RunAsk:
    """What a run-now answer asks for: a noop run, or a live prediction of a commit."""

    noop: bool = False
    commit: str | None = None
    change: str | None = None


@dataclass
class RunOutcome:
    exit_code: int
    source: str  # "server" | "cache"
    catalog_hash: str | None = None
    transaction_uuid: str | None = None
    delivered: list[str] = field(default_factory=list)
    queued: int = 0
    warning: str | None = None


class Interrupted(Exception):
    """Raised by the signal handler to end a wait (never a run) at once."""


class Agent:
    """The pull agent for one node and one state directory."""

    def __init__(self, config: AgentConfig, out: TextIO | None = None) -> None:
        self.config = config
        #: True while waiting between runs: a stop signal may then interrupt at once.
        self.interruptible = False
        self.state = AgentState(config.state_dir)
        self.out = out if out is not None else sys.stdout
        self.client = ServerClient(config.server, ca_file=config.ca_file, timeout=config.timeout)
        self._base = f"/api/v1/nodes/{config.certname}"

    def say(self, message: str) -> None:
        self.out.write(f"steward agent: {self.config.certname}: {message}\n")
        self.out.flush()

    # -- enrollment ------------------------------------------------------------------------

    def credential(self, facts: dict[str, Any] | None = None) -> str:
        """The node's token; enrolls (or polls a pending enrollment) when there is none."""
        cfg = self.config
        token = self.state.credential(cfg.certname, cfg.server)
        if token is not None:
            return token
        pending = self.state.enrollment()
        if pending is not None and pending.get("server") == cfg.server:
            try:
                answer = self.client.request(
                    "GET", f"/api/v1/enroll/{pending['request_id']}",
                    token=str(pending.get("poll_token", "")),
                ).document
            except RequestFailed as exc:  # its poll token revoked or expired: ask again
                self.state.clear_enrollment()
                raise NotEnrolled(f"enrollment request {pending['request_id']} is no longer "
                                  f"valid ({exc}); the next run asks again") from None
            status = answer.get("status") if isinstance(answer, dict) else None
            if status == "approved" and isinstance(answer.get("token"), str):
                self.state.save_credential(cfg.certname, cfg.server, answer["token"])
                self.state.clear_enrollment()
                self.say("enrollment approved; credential stored")
                return str(answer["token"])
            if status == "pending":
                raise NotEnrolled(
                    f"enrollment request {pending['request_id']} is waiting for an operator: "
                    f"steward node approve {cfg.certname}"
                )
            self.state.clear_enrollment()
            raise NotEnrolled(f"enrollment request {pending['request_id']} was {status}; "
                              "the next run asks again")
        body = {"certname": cfg.certname, "facts": facts}
        try:
            answer = self.client.request("POST", "/api/v1/enroll", body,
                                         token=cfg.join_token or "").document
        except RequestFailed as exc:
            raise NotEnrolled(f"enrollment refused: {exc}") from None
        if not isinstance(answer, dict):
            raise AgentError("the server's enrollment answer is not a JSON object")
        if answer.get("status") == "approved" and isinstance(answer.get("token"), str):
            self.state.save_credential(cfg.certname, cfg.server, answer["token"])
            self.say("enrolled with the join token; credential stored")
            return str(answer["token"])
        self.state.save_enrollment({"server": cfg.server, "request_id": answer.get("request_id"),
                                    "poll_token": answer.get("poll_token")})
        raise NotEnrolled(
            f"enrollment request {answer.get('request_id')} sent; waiting for an operator: "
            f"steward node approve {cfg.certname}"
        )

    # -- one run ---------------------------------------------------------------------------

    def _send_report(self, report: dict[str, Any]) -> None:
        self.client.request("POST", f"{self._base}/reports", report)

    def deliver(self) -> list[str]:
        delivery = self.state.spool.deliver(self._send_report)
        if delivery.rejected:
            self.say(f"set aside {len(delivery.rejected)} report(s) the server rejected, in "
                     f"{self.state.spool.rejected_dir}")
        return delivery.delivered

    def _facts(self) -> dict[str, Any]:
        from steward.facts import collect_facts

        return collect_facts(self.config.facts_root)

    def run_once(self, *, noop: bool | None = None, commit: str | None = None,
                 change: str | None = None) -> RunOutcome:
        """One run; raises :class:`AgentError` when nothing could be enforced.

        ``commit``: a live prediction — that commit's catalog, in noop, never cached, and
        no fallback to the cached catalog (a prediction of something else would mislead).
        """
        cfg = self.config
        noop = True if commit is not None else (cfg.noop if noop is None else noop)
        facts = self._facts()
        warning: str | None = None
        delivered: list[str] = []
        document: dict[str, Any] | None = None
        values: dict[str, str] = {}
        reachable = True
        try:
            self.client.token = self.credential(facts)
            delivered = self.deliver()
            self.client.request("PUT", f"{self._base}/facts", {
                "values": facts, "environment": cfg.environment,
                "producer_timestamp": iso(utcnow(), timespec="milliseconds"),
            })
            if commit is not None:
                answer = self.client.request(
                    "GET", f"{self._base}/catalog?commit={urllib.parse.quote(commit)}").document
                document, values = self._accept_catalog(answer, cache=False)
            else:
                answer = self.client.request("GET", f"{self._base}/catalog").document
                document, values = self._accept_catalog(answer)
        except Refused as exc:
            if exc.status == 401:
                kept = self.state.discard_credential()
                raise AgentError(
                    f"the server refused this node's credential ({exc}); it was set aside "
                    f"({kept}) and the next run asks to enroll again"
                ) from None
            raise AgentError(f"the server refused the request: {exc}") from None
        except (ServerUnavailable, RequestFailed) as exc:
            if commit is not None:
                raise AgentError(f"live prediction of {change or 'a change'} (commit "
                                 f"{commit[:12]}): no catalog ({exc}); nothing was run") from None
            if isinstance(exc, RequestFailed):
                # The server is there but cannot give a catalog now (a compile error, facts
                # it rejects): keep enforcing the last good one, as Puppet's
                # usecacheonfailure does.
                what = "compile the catalog" if exc.status == 422 else "serve the catalog"
                warning = f"the server could not {what} ({exc})"
            else:
                reachable = False
                warning = f"server unavailable ({exc})"
        source = "server"
        if document is None:
            cached = self.state.cached_catalog()
            if cached is None:
                raise AgentError(f"{warning}; and there is no cached catalog to enforce")
            document, values, source = cached.catalog, cached.sensitive_values, "cache"
            warning = (f"{warning}: enforced the cached catalog {cached.catalog.get('hash')} "
                       f"of {cached.fetched_at}")
        report, code = self._apply(document, values, noop)
        if commit is not None:
            report.setdefault("logs", []).append(
                {"level": "info", "source": "agent",
                 "message": f"live prediction of {change or 'a change'}: noop run of the "
                            f"catalog of commit {commit}"})
        if warning is not None:
            report.setdefault("logs", []).append(
                {"level": "warning", "source": "agent", "message": warning}
            )
        self.state.spool.put(report)
        if reachable:
            delivered += self.deliver()
        return RunOutcome(
            exit_code=code, source=source, catalog_hash=document.get("hash"),
            transaction_uuid=report.get("transaction_uuid"), delivered=delivered,
            queued=len(self.state.spool.pending()), warning=warning,
        )

    def _accept_catalog(self, answer: Any, *,
                        cache: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
        if not isinstance(answer, dict) or not isinstance(answer.get("catalog"), dict):
            raise AgentError("the server's catalog answer is not what this agent understands")
        document: dict[str, Any] = answer["catalog"]
        values = answer.get("sensitive_values") or {}
        if document.get("node") != self.config.certname:
            raise AgentError(f"the server sent the catalog of {document.get('node')!r}, "
                             f"not of {self.config.certname!r}; refusing it")
        if cache:
            self.state.save_catalog(document, values, iso(utcnow(), timespec="milliseconds"))
        return document, values

    def _apply(self, document: dict[str, Any], values: dict[str, str],
               noop: bool) -> tuple[dict[str, Any], int]:
        from steward.catalog.model import Catalog
        from steward.engine.context import Context
        from steward.engine.report import build_report, exit_code
        from steward.engine.runner import SubprocessRunner
        from steward.engine.transaction import apply_catalog

        catalog = Catalog.from_json(document, source="catalog from the server")
        ctx = Context(runner=SubprocessRunner(), noop=noop, root=self.config.root,
                      state_dir=self.config.state_dir)
        run = apply_catalog(catalog, ctx, values)
        return build_report(run), exit_code(run)

    def describe(self, outcome: RunOutcome, number: int) -> str:
        parts = [f"run {number}: catalog {outcome.catalog_hash} ({outcome.source})",
                 f"exit {outcome.exit_code}", f"report {outcome.transaction_uuid}"]
        if outcome.delivered:
            parts.append(f"delivered {len(outcome.delivered)}")
        parts.append(f"queued {outcome.queued}")
        return "; ".join(parts)

    # -- the daemon ------------------------------------------------------------------------

    def wait_for_run(self, seconds: float, stop: threading.Event) -> RunAsk | None:
        """Long-poll until the interval is over; a run-now request ends it early.

        Returns None when the interval passed, else what the request asks for.
        """
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.client.token is None:
                stop.wait(min(remaining, self.config.retry))
                continue
            poll = min(remaining, LONG_POLL_SECONDS)
            try:
                answer = self.client.request(
                    "GET", f"{self._base}/run-wait?timeout={poll:.1f}", timeout=poll + 15,
                ).document
            except (ServerUnavailable, RequestFailed):
                stop.wait(min(max(deadline - time.monotonic(), 0), 2.0))
                continue
            if isinstance(answer, dict) and isinstance(answer.get("task"), dict):
                self._run_task(answer["task"])
                continue
            if isinstance(answer, dict) and answer.get("run"):
                commit = answer.get("commit")
                change = answer.get("change")
                return RunAsk(noop=bool(answer.get("noop", False)),
                              commit=commit if isinstance(commit, str) else None,
                              change=change if isinstance(change, str) else None)
        return None

    def _run_task(self, task: dict[str, Any]) -> None:
        """Run a task job's part and post its result (a stop signal waits for it to end)."""
        job = str(task.get("job", ""))
        self.say(f"running task {task.get('task')!r} for job {job}"
                 f"{' in noop' if task.get('noop') else ''}")
        was = self.interruptible
        self.interruptible = False
        try:
            body = run_task(task, root=self.config.root)
            try:
                self.client.request("POST", f"{self._base}/jobs/{job}/result", body)
            except AgentError as exc:
                self.say(f"could not send the result of job {job}: {exc}")
                return
            self.say(f"task {task.get('task')!r} for job {job}: {body['state']}")
        finally:
            self.interruptible = was

    def daemon(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set (SIGTERM/SIGINT): now, then every interval (+ splay)."""
        cfg = self.config
        number = 0
        requested_noop: bool | None = None
        ask: RunAsk | None = None
        while not stop.is_set():
            number += 1
            wait = cfg.interval + (random.uniform(0, cfg.splay) if cfg.splay > 0 else 0.0)  # noqa: S311
            try:
                if ask is not None and ask.commit is not None:
                    outcome = self.run_once(commit=ask.commit, change=ask.change)
                else:
                    outcome = self.run_once(noop=requested_noop)
                self.say(self.describe(outcome, number))
                if outcome.warning:
                    self.say(f"warning: {outcome.warning}")
            except NotEnrolled as exc:
                self.say(str(exc))
                wait = min(wait, cfg.retry)
            except StewardError as exc:
                self.say(f"run {number} failed: {exc}")
                wait = min(wait, cfg.retry) if self.client.token is None else wait
            requested_noop = None
            ask = None
            self.interruptible = True
            try:
                got = self.wait_for_run(wait, stop)
            except Interrupted:
                break
            finally:
                self.interruptible = False
            if got is not None:
                ask = got
                requested_noop = True if got.noop else None
                if got.commit is not None:
                    self.say(f"live prediction of {got.change or 'a change'} requested "
                             f"(commit {got.commit[:12]})")
                else:
                    self.say("run requested by an operator")
        return 0


def default_certname() -> str:
    return socket.gethostname()


def run_agent(config: AgentConfig, *, once: bool, out: TextIO | None = None,
              install_signals: bool = True) -> int:
    """Run the agent; returns the process exit code."""
    agent = Agent(config, out)
    with agent.state.locked():
        if once:
            try:
                outcome = agent.run_once()
            except NotEnrolled as exc:
                agent.say(str(exc))
                return 1
            agent.say(agent.describe(outcome, 1))
            if outcome.warning:
                agent.say(f"warning: {outcome.warning}")
            return outcome.exit_code
        stop = threading.Event()
        if install_signals:
            _on_signals(agent, stop)
        code = agent.daemon(stop)
        agent.say("stopped")
        return code


def _on_signals(agent: Agent, stop: threading.Event) -> None:
    """SIGTERM/SIGINT: a wait ends at once; a run in progress is finished first."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if agent.interruptible:
            raise Interrupted

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
