"""The job store across processes, on SQLite and PostgreSQL.

Two :class:`JobStore` instances on one database stand for a server restart, or for the server
and another process sharing the database (``steward mcp`` over stdio): a job's script must
come from the database, the values of its sensitive parameters only from the creator's
memory, and those values must never reach any table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, insert, inspect, select, text

from steward.clock import utcnow
from steward.pipeline.schema import MIGRATIONS, VERSION_TABLE, create_all
from steward.server.db import SERVER_ENGINE
from steward.store.db import make_engine
from steward.tasks.jobs import JobError, JobStore, NodePart, job_results, job_scripts, jobs
from tests.e2e.harness import database_url

SECRET = "pa55-never-stored-7f3c"
SCRIPT = "#!/bin/sh\necho \"checking $PT_name\"\n"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One database per backend for the module; each test uses its own certnames."""
    tmp = tmp_path_factory.mktemp(f"jobstore-{request.param}")
    with database_url(str(request.param), tmp, "job_store") as url:
        eng = make_engine(url, **SERVER_ENGINE)
        create_all(eng)
        try:
            yield eng
        finally:
            eng.dispose()


def _nodes(*envs: str) -> list[NodePart]:
    tag = uuid.uuid4().hex[:8]
    return [NodePart(f"n{i}-{tag}", env, f"commit-{env}", "check.sh", f"{SCRIPT}# {env}\n")
            for i, env in enumerate(envs)]


def _create(store: JobStore, parts: list[NodePart], *, secret: dict[str, Any] | None = None,
            concurrency: int = 10) -> str:
    secret = secret or {}
    stored: dict[str, Any] = {"name": "nginx",
                              **dict.fromkeys(secret, "[redacted]")}
    return store.create(task="check", environment=",".join(sorted({p.environment
                                                                   for p in parts})),
                        noop=False, stored_params=stored, secret_params=secret,
                        query="nodes[certname] {}", requested_by="user:alice",
                        concurrency=concurrency, timeout=60, parts=parts, skipped={})


def _result(store: JobStore, job_id: str, certname: str) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {
        r["certname"]: r for r in store.get(job_id)["results"]}
    return results[certname]


def _scripts(engine: Engine, job_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(row.environment, row.script_name) for row in conn.execute(
            select(job_scripts).where(job_scripts.c.job_id == job_id)
            .order_by(job_scripts.c.environment))]


def _dump(engine: Engine) -> str:
    """Every row of every table in the database, as text."""
    lines: list[str] = []
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                lines.append(f"{table}: {tuple(row)!r}")
    return "\n".join(lines)


def test_a_job_without_secrets_is_served_by_another_process(engine: Engine) -> None:
    creator, other = JobStore(engine), JobStore(engine)
    parts = _nodes("production", "production", "staging")
    job_id = _create(creator, parts)
    # One script row per environment, not per node.
    assert _scripts(engine, job_id) == [("production", "check.sh"), ("staging", "check.sh")]
    assert creator.holds_secrets_for(job_id)
    assert other.holds_secrets_for(job_id)

    for part in parts:
        claimed = other.claim(part.certname)
        assert claimed is not None
        assert claimed == {"job": job_id, "task": "check", "noop": False, "timeout": 60,
                           "script_name": "check.sh", "script": part.script,
                           "params": {"name": "nginx"}, "sensitive": []}
        assert other.claim(part.certname) is None  # running: not handed out twice
        other.complete(part.certname, job_id, exit_code=0, result={"ok": True},
                       output="checking nginx\n", state="succeeded")

    job = creator.get(job_id)
    assert job["state"] == "finished"
    assert job["counts"] == {"succeeded": 3}
    assert _scripts(engine, job_id) == []  # only claims needed them


def test_concurrency_holds_across_processes(engine: Engine) -> None:
    first, second = JobStore(engine), JobStore(engine)
    a, b = _nodes("production", "production")
    job_id = _create(first, [a, b], concurrency=1)
    assert first.claim(a.certname) is not None
    assert second.claim(b.certname) is None  # a is running: b waits for a later poll
    first.complete(a.certname, job_id, exit_code=0, result=None, output="", state="succeeded")
    claimed = second.claim(b.certname)
    assert claimed is not None
    assert claimed["job"] == job_id


def test_a_sensitive_part_is_served_only_by_the_process_holding_the_values(
        engine: Engine) -> None:
    creator, other = JobStore(engine), JobStore(engine)
    a, b = _nodes("production", "production")
    job_id = _create(creator, [a, b], secret={"password": SECRET})
    assert creator.holds_secrets_for(job_id)
    assert not other.holds_secrets_for(job_id)
    assert not other.holds_secrets_for("job-unknown")

    assert other.claim(a.certname) is None  # failed, nothing to run
    failed = _result(creator, job_id, a.certname)
    assert failed["state"] == "failed"
    assert failed["output"] == (
        f"the values of sensitive parameters password are held only in memory by the process "
        f"that started job {job_id}; it restarted (or the job was started by another process, "
        "such as `steward mcp` over stdio): run the task again")

    claimed = creator.claim(b.certname)
    assert claimed is not None
    assert claimed["params"] == {"name": "nginx", "password": SECRET}
    assert claimed["sensitive"] == ["password"]
    assert claimed["script"] == b.script
    creator.complete(b.certname, job_id, exit_code=0, result=None, output="checked\n",
                     state="succeeded")
    job = creator.get(job_id)
    assert job["state"] == "finished"
    assert job["counts"] == {"failed": 1, "succeeded": 1}
    assert job["parameters"] == {"name": "nginx", "password": "[redacted]"}
    assert not creator.holds_secrets_for(job_id)  # dropped once the job finished


def test_values_of_a_job_another_process_finished_are_dropped(engine: Engine) -> None:
    creator, server = JobStore(engine), JobStore(engine)
    (a,) = _nodes("production")
    job_id = _create(creator, [a], secret={"password": SECRET})
    assert server.claim(a.certname) is None
    assert creator.get(job_id)["state"] == "finished"
    assert creator.holds_secrets_for(job_id)  # not yet noticed ...
    _create(creator, _nodes("production"))
    assert not creator.holds_secrets_for(job_id)  # ... dropped at the next create


def test_secret_values_never_reach_any_table(engine: Engine) -> None:
    creator, other = JobStore(engine), JobStore(engine)
    a, b = _nodes("production", "staging")
    job_id = _create(creator, [a, b], secret={"password": SECRET, "token": SECRET + "-tok"})
    with engine.connect() as conn:
        names = conn.execute(select(jobs.c.sensitive).where(jobs.c.id == job_id)).scalar_one()
    assert names == ["password", "token"]
    assert SECRET not in _dump(engine)

    claimed = creator.claim(a.certname)
    assert claimed is not None
    assert claimed["params"]["token"] == SECRET + "-tok"
    assert other.claim(b.certname) is None
    creator.complete(a.certname, job_id, exit_code=0, result={"fine": True}, output="ok\n",
                     state="succeeded")
    dump = _dump(engine)
    assert job_id in dump
    assert "password" in dump
    assert SECRET not in dump


def test_parts_of_one_environment_share_one_script(engine: Engine) -> None:
    a, b = _nodes("production", "production")
    b = NodePart(b.certname, b.environment, b.commit, b.script_name, "echo other\n")
    with pytest.raises(JobError, match="environment 'production' were given different"):
        _create(JobStore(engine), [a, b])


# -- migrations -------------------------------------------------------------------------------


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0003_upgrade_and_downgrade(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path, "job_store_mig") as url:
        eng = make_engine(url, **SERVER_ENGINE)
        try:
            _alembic(eng, "upgrade", "0002")
            # A job started by a Steward before 0003: its script was only in that memory.
            with eng.begin() as conn:
                conn.execute(text(
                    "INSERT INTO steward_jobs (id, task, environment, noop, parameters, query, "
                    "requested_by, state, concurrency, timeout, created_at) VALUES ('job-old', "
                    "'check', 'production', 0, '{}', 'q', 'user:alice', 'running', 10, 60, "
                    ":now)"), {"now": utcnow()})
                conn.execute(insert(job_results).values(
                    job_id="job-old", certname="old1", environment="production",
                    commit="c0", state="pending"))
            create_all(eng)  # upgrade to head with data in place
            store = JobStore(eng)
            assert store.claim("old1") is None
            old = store.get("job-old")
            assert old["state"] == "finished"
            assert old["results"][0]["state"] == "failed"
            assert old["results"][0]["output"] == (
                "job job-old was started before its scripts were stored in the database (by a "
                "Steward before this upgrade): run the task again")
            (part,) = _nodes("production")
            job_id = _create(store, [part])

            _alembic(eng, "downgrade", "0002")
            with eng.connect() as conn:
                tables = inspect(conn).get_table_names()
                columns = {c["name"] for c in inspect(conn).get_columns("steward_jobs")}
                kept = conn.execute(select(job_results.c.job_id).where(
                    job_results.c.certname == part.certname)).scalar_one()
            assert "steward_job_scripts" not in tables
            assert "steward_jobs" in tables
            assert "sensitive" not in columns
            assert kept == job_id  # the jobs and their results survive the downgrade

            create_all(eng)  # and upgrade again
            with eng.connect() as conn:
                assert "steward_job_scripts" in inspect(conn).get_table_names()
        finally:
            eng.dispose()
