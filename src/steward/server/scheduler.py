"""The agentless side: push catalogs over SSH to nodes that run no agent.

Every ``scheduler_tick_seconds`` the scheduler looks for SSH nodes that are due (their last
run is older than ``ssh_run_interval_seconds``) or that an operator asked to run now, and
for each one, at most ``MAX_CONCURRENT`` at a time: collects facts over SSH, stores them,
compiles the catalog exactly as for a pull agent, applies it over SSH
(:mod:`steward.transport.ssh`) and stores the report. One unreachable host is logged and
does not hold up the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from steward.errors import StewardError
from steward.server.db import utcnow
from steward.server.runs import RunRequest, RunSignals
from steward.server.services import Services

log = logging.getLogger("steward.server.scheduler")
MAX_CONCURRENT = 8


class SshScheduler:
    """Runs inside the server's event loop; cancelled when the server stops."""

    def __init__(self, services: Services, signals: RunSignals) -> None:
        self.services = services
        self.signals = signals
        self.config = services.config
        self._running: set[str] = set()
        self._gate = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("SSH scheduler tick failed")
                await asyncio.sleep(self.config.scheduler_tick_seconds)
        finally:
            for task in self._tasks:
                task.cancel()

    async def tick(self) -> None:
        nodes = await run_in_threadpool(self.services.enrollment.ssh_nodes)
        now = utcnow()
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
                                        last_run_at=utcnow())


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def ssh_target(config_dir: Path, ssh: dict[str, Any]) -> Any:
    """The transport's target for a node record's ``ssh`` settings."""
    from steward.transport.ssh import SSHTarget

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
    await run_in_threadpool(services.store.replace_facts, certname, environment, facts, utcnow())
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
        await run_in_threadpool(services.store.replace_catalog, document, utcnow())
        await run_in_threadpool(services.enrollment.touch, certname,
                                last_catalog_hash=catalog.hash,
                                last_environment=catalog.environment)
    code, report = await apply_catalog(target, document, values, noop, bundle=bundle)
    await run_in_threadpool(services.store.store_report, report)
    log.info("SSH push to %s: exit code %d, report %s", certname, code,
             report.get("transaction_uuid"))
    return code
