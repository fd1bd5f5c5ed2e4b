"""Running tasks: the one place their rules live (RBAC, noop, parameters, audit).

Every interface (REST, CLI through REST, MCP) calls :class:`TaskService`; nothing runs until
the task's metadata, the parameters, the node selection and the caller's permission in
*every* targeted environment have been checked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from steward.access.principal import Principal
from steward.catalog.redaction import REDACTED
from steward.errors import StewardError
from steward.pipeline.service import Pipeline
from steward.tasks.definitions import TaskCatalog, TaskError, TaskSpec
from steward.tasks.jobs import JobStore, NodePart

#: How many nodes run one job's task at the same time, unless the caller asks fewer.
DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 100


class TaskService:
    """Lists, validates and starts tasks; reads jobs."""

    def __init__(self, pipeline: Pipeline, jobs: JobStore | None = None) -> None:
        self.pipeline = pipeline
        self.catalog = TaskCatalog(pipeline.repo)
        self.jobs = jobs if jobs is not None else JobStore(pipeline.services.engine,
                                                            clock=pipeline.services.clock)

    def _default_environment(self) -> str:
        environments = self.pipeline.environments
        return "production" if "production" in environments or not environments \
            else environments[0]

    def tasks(self, identity: Principal, environment: str | None = None) -> list[TaskSpec]:
        env = environment or self._default_environment()
        self.pipeline.authorise(identity, "desired_state:read", env, action="task.list",
                                target=env)
        return self.catalog.list(env)

    def show(self, identity: Principal, name: str, environment: str | None = None) -> TaskSpec:
        env = environment or self._default_environment()
        self.pipeline.authorise(identity, "desired_state:read", env, action="task.show",
                                target=name)
        return self.catalog.get(env, name)

    def select(self, nodes_pql: str) -> list[str]:
        """Certnames the PQL selects; a bare filter means ``nodes[certname] { filter }``."""
        store = self.pipeline.services.store
        try:
            rows = store.query(nodes_pql)
        except StewardError as first:
            try:
                rows = store.query(f"nodes[certname] {{ {nodes_pql} }}")
            except StewardError:
                raise TaskError(f"--nodes {nodes_pql!r}: {first}") from None
        names = sorted({str(row["certname"]) for row in rows if row.get("certname")})
        if not names and rows:
            raise TaskError(f"--nodes {nodes_pql!r} returned rows without a certname field")
        return names

    def run(self, identity: Principal, name: str, nodes_pql: str, params: Mapping[str, Any],
            *, noop: bool = False, concurrency: int = DEFAULT_CONCURRENCY) -> dict[str, Any]:
        """Start a job; returns it (its parts wait for the nodes to take them: a pull agent's
        long poll, or the SSH scheduler for agentless nodes)."""
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise TaskError(f"concurrency must be in 1..{MAX_CONCURRENCY}, not {concurrency}")
        services = self.pipeline.services
        certnames = self.select(nodes_pql)
        if not certnames:
            raise TaskError(f"--nodes {nodes_pql!r} selects no node: nothing to run")
        by_env: dict[str, list[str]] = {}
        skipped: dict[str, str] = {}
        for certname in certnames:
            try:
                node = services.enrollment.get(certname)
            except StewardError:
                skipped[certname] = "not an enrolled node"
                continue
            if node["status"] != "approved":
                skipped[certname] = f"node is {node['status']}, not approved"
                continue
            facts = services.store.latest_facts(certname) or {}
            environment = services.catalogs.node_environment(certname, facts,
                                                             node.get("environment"))
            by_env.setdefault(environment, []).append(certname)
        specs: dict[str, TaskSpec] = {}
        checked: dict[str, Any] = {}
        for environment in sorted(by_env):
            spec = self.catalog.get(environment, name)
            # The permission the task needs, in every environment it would touch.
            self.pipeline.authorise(identity, spec.permission, environment, action="task.run",
                                    target=name)
            if noop and not spec.supports_noop:
                raise TaskError(f"task {name!r} does not support noop (supports_noop is not "
                                f"true in tasks/{name}.yaml of {environment!r}): refusing to "
                                "run it in noop")
            checked[environment] = spec.validate(params)
            specs[environment] = spec
        if not specs:
            raise TaskError(f"--nodes {nodes_pql!r}: none of the selected nodes can run tasks "
                            f"({'; '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})")
        first_env = sorted(specs)[0]
        sensitive = frozenset().union(*(s.sensitive() for s in specs.values()))
        values = checked[first_env]
        stored = {k: (REDACTED if k in sensitive else v)
                  for k, v in sorted(values.items())}
        secret = {k: v for k, v in values.items() if k in sensitive}
        parts = [NodePart(certname, env, specs[env].commit, specs[env].script_name,
                          specs[env].script)
                 for env in sorted(by_env) for certname in by_env[env]]
        actor = self.pipeline.actor(identity)
        job_id = self.jobs.create(
            task=name, environment=",".join(sorted(specs)), noop=noop, stored_params=stored,
            secret_params=secret, query=nodes_pql, requested_by=actor.label,
            concurrency=concurrency,
            timeout=max(s.timeout for s in specs.values()), parts=parts, skipped=skipped)
        self.pipeline._audit(identity, "task.run", name, parameters={
            "job": job_id, "nodes": len(parts), "noop": noop, "query": nodes_pql,
            "parameters": stored})
        return self.jobs.get(job_id)

    def job(self, identity: Principal, job_id: str) -> dict[str, Any]:
        self.jobs.expire(job_id)
        job = self.jobs.get(job_id)
        for environment in job["environment"].split(","):
            if environment:
                self.pipeline.authorise(identity, "report:read", environment,
                                        action="job.show", target=job_id)
        return job

    def wait(self, identity: Principal, job_id: str, timeout: float) -> dict[str, Any]:
        """Poll until the job finishes or ``timeout`` passes (then it is returned as is)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(identity, job_id)
            if job["state"] == "finished" or time.monotonic() >= deadline:
                return job
            time.sleep(0.2)
