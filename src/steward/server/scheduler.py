"""The agentless side: push catalogs over SSH to nodes that run no agent.

Every ``scheduler_tick_seconds`` the scheduler looks for SSH nodes that are due (their last
run is older than ``ssh_run_interval_seconds``) or that an operator asked to run now, and
for each one, at most ``MAX_CONCURRENT`` at a time: collects facts over SSH, stores them,
compiles the catalog exactly as for a pull agent, applies it over SSH
(:mod:`steward.transport.ssh`) and stores the report. One unreachable host is logged and
does not hold up the others.

It also runs **task jobs** on those nodes (docs/tasks.md), which have no long poll to take
their part: each tick, for every SSH node not already running a task, it claims the node's
next part through :class:`TaskHooks` (the job store's claim and complete, which a higher
layer provides: this layer does not know the change pipeline), runs it over SSH in the
background under the same concurrency gate, and records the outcome; an unreachable host's
part fails with the transport error. A wake for an SSH node (a new job, a run-now request)
or a finished part starts the next tick at once instead of waiting for the tick interval.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from steward.errors import StewardError
from steward.server.runs import RunRequest, RunSignals
from steward.server.services import Services

log = logging.getLogger("steward.server.scheduler")
MAX_CONCURRENT = 8


@dataclass(frozen=True, slots=True)
class TaskHooks:
    """How the scheduler takes and settles an SSH node's part of a task job.

    ``claim(certname)`` returns the part's task document (marked running) or None;
    ``complete(certname, job, {state, exit_code, result, output})`` records the outcome.
    """

    claim: Callable[[str], dict[str, Any] | None]
    complete: Callable[[str, str, dict[str, Any]], Any]

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> TaskHooks | None:
        """The hooks the task extension put in the app's extras, if it is running."""
        claim, complete = extras.get("task_claim"), extras.get("task_complete")
        if claim is None or complete is None:
            return None
        return cls(claim, complete)


class SshScheduler:
    """Runs inside the server's event loop; cancelled when the server stops.

    ``tasks`` is asked each tick for the :class:`TaskHooks` (None: tasks are not available,
    e.g. the repository is a plain directory, or the task extension has not started yet).
    """

    def __init__(self, services: Services, signals: RunSignals,
                 tasks: Callable[[], TaskHooks | None] | None = None) -> None:
        self.services = services
        self.signals = signals
        self.config = services.config
        self.tasks = tasks
        self._running: set[str] = set()
        self._tasking: set[str] = set()
        self._gate = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()
        self._wakers: list[asyncio.Event] = []

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("SSH scheduler tick failed")
                await self._sleep()
        finally:
            for task in self._tasks:
                task.cancel()

    async def _sleep(self) -> None:
        """Until the next tick: the tick interval, or less when an SSH node is woken."""
        waiters = [asyncio.ensure_future(event.wait()) for event in (self._kick, *self._wakers)]
        try:
            await asyncio.wait(waiters, timeout=self.config.scheduler_tick_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _watch(self, certnames: list[str]) -> None:
        """Listen to these nodes' wake-ups, consuming any already given.

        Only a pull agent's long poll waits on a node's event otherwise, and SSH nodes have
        none, so the scheduler is the only reader of these. Cleared before this tick looks
        at the nodes, so a wake that comes during the tick starts the next one at once.
        """
        self._kick.clear()
        self._wakers = [self.signals.event(certname) for certname in certnames]
        for event in self._wakers:
            event.clear()

    async def tick(self) -> None:
        nodes = await run_in_threadpool(self.services.enrollment.ssh_nodes)
        self._watch([node["certname"] for node in nodes])
        hooks = self.tasks() if self.tasks is not None else None
        if hooks is not None:
            # Claimed before this tick's pushes start, and only while a slot is free: a
            # claimed part's timeout is already counting, so it must not queue behind pushes.
            for node in nodes:
                await self._start_task(node, hooks)
        now = self.services.clock.now()
        interval = timedelta(seconds=self.config.ssh_run_interval_seconds)
        for node in nodes:
            certname = node["certname"]
            if certname in self._running:
                continue
            claimed = await run_in_threadpool(self.signals.claim, certname)
            last = node["last_run_at"]
            due = last is None or now - _parse(last) >= interval
            if claimed is None and not due:
                continue
            self._running.add(certname)
            task = asyncio.create_task(self._push(node, claimed), name=f"ssh-push-{certname}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _push(self, node: dict[str, Any], claimed: RunRequest | None) -> None:
        certname = node["certname"]
        live = claimed is not None and claimed.commit is not None
        try:
            async with self._gate:
                if claimed is not None and claimed.commit is not None:
                    await push(self.services, node, noop=True,
                               live=(claimed.commit, claimed.environment or ""))
                else:
                    await push(self.services, node,
                               noop=claimed.noop if claimed is not None else False)
        except StewardError as exc:
            log.warning("SSH push to %s failed: %s", certname, exc)
            if claimed is not None:
                # The live prediction waiting on this request reads why it got no report.
                await run_in_threadpool(self.signals.fail, claimed.ids, str(exc))
        except Exception as exc:
            log.exception("SSH push to %s failed", certname)
            if claimed is not None:
                await run_in_threadpool(self.signals.fail, claimed.ids,
                                        f"internal error: {type(exc).__name__}")
        finally:
            self._running.discard(certname)
            if not live:
                # A prediction is not the node's run: the schedule stays as it was.
                await run_in_threadpool(self.services.enrollment.touch, certname,
                                        last_run_at=self.services.clock.now())

    async def _start_task(self, node: dict[str, Any], hooks: TaskHooks) -> None:
        """Claim the node's next task part, if it runs none and a slot is free; run it."""
        certname = node["certname"]
        if certname in self._tasking or len(self._tasks) >= MAX_CONCURRENT:
            return
        part = await run_in_threadpool(hooks.claim, certname)
        if part is None:
            return
        self._tasking.add(certname)
        task = asyncio.create_task(self._run_part(node, part, hooks),
                                   name=f"ssh-task-{certname}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_part(self, node: dict[str, Any], part: dict[str, Any],
                        hooks: TaskHooks) -> None:
        certname = node["certname"]
        job = str(part.get("job", ""))
        try:
            try:
                async with self._gate:
                    body = await run_task_part(self.services, node, part)
            except StewardError as exc:
                # Already free of sensitive values (the transport cuts them out).
                log.warning("task job %s on SSH node %s failed: %s", job, certname, exc)
                body = {"state": "failed", "exit_code": None, "result": None,
                        "output": str(exc)}
            except Exception as exc:
                log.exception("task job %s on SSH node %s failed", job, certname)
                body = {"state": "failed", "exit_code": None, "result": None,
                        "output": f"internal error: {type(exc).__name__}"}
            try:
                await run_in_threadpool(hooks.complete, certname, job, body)
            except StewardError as exc:
                log.warning("could not record the result of task job %s on %s: %s", job,
                            certname, exc)
            else:
                log.info("task job %s on SSH node %s: %s", job, certname, body["state"])
        finally:
            self._tasking.discard(certname)
            # The node's next part (or another node's, now a slot is free) need not wait.
            self._kick.set()


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def ssh_target(config_dir: Path, ssh: dict[str, Any]) -> Any:
    """The transport's target for a node record's ``ssh`` settings."""
    from steward.transport.target import SSHTarget

    key = ssh.get("key_file")
    known_hosts = ssh.get("known_hosts")
    return SSHTarget(
        host=str(ssh["host"]),
        port=int(ssh.get("port", 22)),
        user=ssh.get("user"),
        key_file=Path(key) if key else None,
        sudo=bool(ssh.get("sudo", False)),
        python=str(ssh.get("python", "python3")),
        known_hosts=Path(known_hosts) if known_hosts else None,
        trust_on_first_use=bool(ssh.get("trust_on_first_use", False)),
        steward_known_hosts=config_dir / "ssh" / "known_hosts",
    )


async def run_task_part(services: Services, node: dict[str, Any],
                        part: dict[str, Any]) -> dict[str, Any]:
    """One task job's part on an agentless node: the result body for the job store."""
    from steward.transport.bundle import build_bundle
    from steward.transport.ssh import run_task

    target = ssh_target(services.config.data_dir, node["ssh"] or {})
    bundle = await run_in_threadpool(build_bundle, None, services.config.data_dir / "cache")
    return await run_task(target, part, bundle=bundle)


async def push(services: Services, node: dict[str, Any], *, noop: bool = False,
               live: tuple[str, str] | None = None) -> int:
    """One agentless run: facts → store → compile → apply over SSH → report → store.

    ``live`` = (commit, environment): a live prediction — the catalog that commit compiles
    for the node in that environment, applied in noop; it is not stored as the node's
    catalog, and only sensitive values its current catalog already has are sent.
    """
    from steward.transport.bundle import build_bundle
    from steward.transport.ssh import apply_catalog, collect_facts

    certname = node["certname"]
    target = ssh_target(services.config.data_dir, node["ssh"] or {})
    # The engine bundle is cached in the data directory, not the service account's home.
    bundle = await run_in_threadpool(build_bundle, None, services.config.data_dir / "cache")
    facts = await collect_facts(target, bundle=bundle)
    environment = (node["environment"] or node["last_environment"]
                   or await run_in_threadpool(services.catalogs.default_environment))
    await run_in_threadpool(services.store.replace_facts, certname, environment, facts,
                            services.clock.now())
    compiled = await run_in_threadpool(services.catalogs.compile, certname, facts,
                                       node["environment"])
    values = compiled.result.sensitive_values
    if live is not None:
        commit, live_environment = live
        current = set(values.values())
        compiled = await run_in_threadpool(
            functools.partial(services.catalogs.compile_at, certname, facts, live_environment,
                              commit, use_cache=False))
        values = {key: value for key, value in compiled.result.sensitive_values.items()
                  if value in current}
        noop = True
    catalog = compiled.result.catalog
    document = catalog.to_json()
    if live is None and node["last_catalog_hash"] != catalog.hash:
        await run_in_threadpool(services.store.replace_catalog, document,
                                services.clock.now())
        await run_in_threadpool(services.enrollment.touch, certname,
                                last_catalog_hash=catalog.hash,
                                last_environment=catalog.environment)
    code, report = await apply_catalog(target, document, values, noop, bundle=bundle)
    await run_in_threadpool(services.store.store_report, report)
    log.info("SSH push to %s: exit code %d, report %s", certname, code,
             report.get("transaction_uuid"))
    return code
