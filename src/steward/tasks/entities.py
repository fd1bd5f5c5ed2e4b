"""Jobs and their per-node results as PQL entities: ``jobs`` and ``job_results``.

Like the pipeline's, registered by the application always, their tables once the pipeline
(which tasks need) runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Table

from steward.pipeline.entities import needs_pipeline
from steward.query.entities import Entity, EntityRegistry, col, number, string, timestamp
from steward.tasks.jobs import job_results, jobs

if TYPE_CHECKING:
    from steward.store import Store

JOBS_TABLE = jobs.name
JOB_RESULTS_TABLE = job_results.name
#: The tables the entities read, by the names they read them under.
QUERY_TABLES: dict[str, Table] = {JOBS_TABLE: jobs, JOB_RESULTS_TABLE: job_results}

JOBS = Entity(
    name="jobs",
    base=JOBS_TABLE,
    fields={f.name: f for f in (
        string("id", JOBS_TABLE, nullable=False),
        string("task", JOBS_TABLE, nullable=False),
        string("environment", JOBS_TABLE, nullable=False),
        number("noop", JOBS_TABLE, nullable=False),
        string("query", JOBS_TABLE, nullable=False),
        string("requested_by", JOBS_TABLE, nullable=False),
        string("state", JOBS_TABLE, nullable=False),
        timestamp("created_at", JOBS_TABLE, nullable=False),
        timestamp("finished_at", JOBS_TABLE),
    )},
    default_fields=("id", "task", "environment", "noop", "query", "requested_by", "state",
                    "created_at", "finished_at"),
    natural_order=(col(JOBS_TABLE, "created_at"), col(JOBS_TABLE, "id")),
    where=needs_pipeline(JOBS_TABLE, "jobs"),
)
JOB_RESULTS = Entity(
    name="job_results",
    base=JOB_RESULTS_TABLE,
    fields={f.name: f for f in (
        string("job", JOB_RESULTS_TABLE, "job_id", nullable=False),
        string("certname", JOB_RESULTS_TABLE, nullable=False),
        string("environment", JOB_RESULTS_TABLE, nullable=False),
        string("state", JOB_RESULTS_TABLE, nullable=False),
        number("exit_code", JOB_RESULTS_TABLE),
        string("output", JOB_RESULTS_TABLE),
        timestamp("started_at", JOB_RESULTS_TABLE),
        timestamp("finished_at", JOB_RESULTS_TABLE),
    )},
    default_fields=("job", "certname", "environment", "state", "exit_code", "output",
                    "started_at", "finished_at"),
    natural_order=(col(JOB_RESULTS_TABLE, "job_id"), col(JOB_RESULTS_TABLE, "certname")),
    where=needs_pipeline(JOB_RESULTS_TABLE, "job_results"),
)


def register(registry: EntityRegistry) -> None:
    """Add ``jobs`` and ``job_results``; their tables are :data:`QUERY_TABLES`."""
    registry.register(JOBS)
    registry.register(JOB_RESULTS)


def install(store: Store, *, tables: bool = True) -> None:
    """Register jobs and job results in ``store``'s PQL and, with ``tables``, let it read
    their tables; without (no pipeline), naming them is an error saying the server lacks them."""
    register(store.entities)
    if tables:
        store.add_query_tables(QUERY_TABLES)
