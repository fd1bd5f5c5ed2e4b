"""State store: report ingestion throughput and PQL latency on a 10,000-node fleet.

Ingestion: reports of 300 resources and 10 events each (built by the engine's
``build_report``) go through ``Store.store_report`` one transaction each, on SQLite and on
PostgreSQL, with one writer process and with two (a server's workers: a writer is CPU-bound
in Python, so the second core is what a second process adds).

Latency: the reference's example queries (puppet-ecosystem.md §1) through ``Store.query``
(parse, compile, execute, shape the response) on a generated fleet: 10,000 nodes, 300
resources each (3M resource rows), ~140 fact leaves each, two reports each. The fleet is
generated once with the store's own row builders and loaded in bulk (SQLite executemany in
big transactions, PostgreSQL COPY), then kept: a SQLite file under the benchmark cache and
a PostgreSQL database ``steward_bench``, both keyed by ``GENERATOR_VERSION`` and the sizes.

    .venv/bin/python benchmarks/store_bench.py [--nodes 10000] [--skip-postgresql]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Context, Row, cache_dir, check

from steward.query.examples import REFERENCE_EXAMPLES

GENERATOR_VERSION = 1
INGEST_BUDGET = 300.0  # reports/s
LATENCY_BUDGET = 0.100  # s, p95
PG_URL = os.environ.get("STEWARD_BENCH_PG",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/steward_bench")
PG_INGEST_URL = os.environ.get("STEWARD_BENCH_PG_INGEST",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")

CODE_A = "urn:puppet:code-id:1:519e…;production"
EXAMPLE_QUERIES = REFERENCE_EXAMPLES

ROLES = (("web", 30), ("app", 25), ("db", 15), ("cache", 10), ("build", 10), ("lb", 5),
         ("mon", 5))
PROFILES = {
    "web": ["base", "hardening", "nginx", "tls"],
    "app": ["base", "hardening", "python_app", "logging"],
    "db": ["base", "hardening", "postgresql", "backup"],
    "cache": ["base", "hardening", "redis"],
    "build": ["base", "docker", "ci_runner"],
    "lb": ["base", "hardening", "haproxy", "tls"],
    "mon": ["base", "prometheus", "grafana"],
}
RESOURCE_MIX = (("package", 90), ("file", 120), ("directory", 30), ("service", 20),
                ("user", 15), ("group", 10), ("exec", 5), ("cron", 5), ("host", 5))
EPOCH = datetime(2024, 5, 1, tzinfo=UTC)


def _progress(ctx: Context | None, message: str) -> None:
    if ctx is not None:
        ctx.progress(message)
    else:
        sys.stderr.write(f"  .. {message}\n")


# -- the generated fleet ---------------------------------------------------------------------


def _role(i: int) -> str:
    slot = i % 100
    for role, share in ROLES:
        if slot < share:
            return role
        slot -= share
    return ROLES[-1][0]


def certname(i: int) -> str:
    return f"{_role(i)}{i:05d}.dc{i % 3 + 1}.example.com"


def node_facts(i: int, rng: random.Random) -> dict[str, Any]:
    """~140 leaves, shaped like Steward's collector output plus the legacy top-level facts
    the reference's queries use (operatingsystem, puppetversion)."""
    os_name = ("CentOS", "Debian", "Debian", "Ubuntu", "Debian")[i % 5]
    family = "RedHat" if os_name == "CentOS" else "Debian"
    cpus = 2 ** (i % 4 + 1)
    name = certname(i)
    interfaces = {
        f"eth{n}": {
            "mac": f"52:54:{n:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            "mtu": 1500,
            "bindings": [{"address": f"10.{n}.{i >> 8 & 255}.{i & 255}",
                          "netmask": "255.255.0.0", "network": f"10.{n}.0.0"}],
            "ip": f"10.{n}.{i >> 8 & 255}.{i & 255}",
            "netmask": "255.255.0.0",
            "network": f"10.{n}.0.0",
        }
        for n in range(2)
    }
    interfaces["lo"] = {"mtu": 65536, "ip": "127.0.0.1", "netmask": "255.0.0.0",
                        "network": "127.0.0.0",
                        "bindings": [{"address": "127.0.0.1", "netmask": "255.0.0.0",
                                      "network": "127.0.0.0"}]}
    mounts = {
        path: {"device": device, "filesystem": fs, "options": ["rw", "relatime"],
               "size_bytes": size, "available_bytes": size // 3 + rng.randrange(1 << 20),
               "used_bytes": size - size // 3}
        for path, device, fs, size in (("/", "/dev/vda1", "ext4", 50 << 30),
                                       ("/var", "/dev/vdb1", "xfs", 200 << 30),
                                       ("/boot", "/dev/vda2", "ext4", 1 << 30))
    }
    return {
        "os": {"family": family, "name": os_name, "hardware": "x86_64",
               "architecture": "amd64",
               "release": {"full": "9.3" if family == "RedHat" else "12.5",
                           "major": "9" if family == "RedHat" else "12"},
               "codename": "bookworm" if family == "Debian" else "Plow"},
        "operatingsystem": os_name,
        "puppetversion": ("7.28.0", "8.4.0", "8.6.0")[i % 3],
        "kernel": {"name": "Linux", "release": f"6.1.0-{i % 20}-amd64", "major": "6.1"},
        "hostname": name.split(".")[0],
        "fqdn": name,
        "networking": {"hostname": name.split(".")[0], "fqdn": name,
                       "interfaces": interfaces, "primary": "eth0",
                       "ip": interfaces["eth0"]["ip"], "mac": interfaces["eth0"]["mac"]},
        "memory": {"system": {"total_bytes": cpus << 31,
                              "available_bytes": rng.randrange(1 << 30, cpus << 31),
                              "capacity": f"{rng.randrange(10, 90)}.00%"}},
        "processors": {"count": cpus, "physicalcount": 1,
                       "models": ["Intel(R) Xeon(R) Gold 6230"] * cpus,
                       "speed": "2.10 GHz"},
        "disks": {"vda": {"size_bytes": 51 << 30, "vendor": "0x1af4", "type": "ssd"},
                  "vdb": {"size_bytes": 200 << 30, "vendor": "0x1af4", "type": "hdd"}},
        "mountpoints": mounts,
        "uptime": {"seconds": rng.randrange(3600, 10**7)},
        "timezone": "UTC",
        "virtual": "kvm",
        "is_virtual": True,
        "datacenter": f"dc{i % 3 + 1}",
        "role": _role(i),
        "identity": {"user": "root", "uid": 0, "gid": 0},
        "python": {"version": "3.11.2"},
        "steward": {"version": "0.1.0"},
    }


def node_catalog(i: int) -> dict[str, Any]:
    """300 resources: the role's profiles' classes, packages, files, services, ...; ~100
    edges. Web nodes on CentOS run httpd; one node in ten has Profile::Remote_mgmt."""
    from steward.catalog.model import Catalog, Edge, Resource

    role = _role(i)
    profiles = list(PROFILES[role]) + (["remote_mgmt"] if i % 10 == 3 else [])
    centos = i % 5 == 0
    resources: list[Resource] = []
    for type_name, count in RESOURCE_MIX:
        for k in range(count - (len(profiles) + 1 if type_name == "package" else 0)):
            if type_name in ("service", "package") and k == 0 and role == "web":
                title = "httpd" if centos else "nginx"
            elif type_name in ("file", "directory"):
                title = f"/etc/{role}/{type_name}-{k:03d}.conf"
            else:
                title = f"{role}-{type_name}-{k:03d}"
            params: dict[str, Any] = {"ensure": "present"}
            if type_name == "file":
                params = {"path": title, "content": f"# {certname(i)} {k}\n", "mode": "0644"}
            elif type_name == "service":
                params = {"ensure": "running", "enable": True}
            profile = profiles[k % len(profiles)]
            resources.append(Resource(type_name, title, params,
                                      (f"profile:{profile}", f"role:{role}"),
                                      f"profiles/{profile}.yaml", k + 1))
    files = [r for r in resources if r.type == "file"]
    dirs = [r for r in resources if r.type == "directory"]
    edges = [Edge(dirs[k % len(dirs)].ref, files[k].ref, "autorequire")
             for k in range(len(files))][:100]
    catalog = Catalog(node=certname(i), environment="production", resources=resources,
                      edges=edges, code_id=CODE_A if i % 2 else f"urn:steward:code:{i % 7}",
                      classification={"roles": [role], "profiles": profiles,
                                      "rules": [f"{role} nodes"]})
    return catalog.seal().to_json()


def run_report(document: dict[str, Any], *, status: str, events: int, noop: bool,
               start: datetime, transaction: str) -> dict[str, Any]:
    """A report from the engine's own ``build_report`` over a synthetic run."""
    from steward.catalog.model import Catalog
    from steward.engine.report import build_report
    from steward.engine.transaction import Event, ResourceResult, RunResult

    catalog = Catalog.from_json(document)
    results = []
    for position, resource in enumerate(catalog.resources):
        result = ResourceResult(resource, evaluation_time=0.0004)
        if position < events:
            if status == "failed" and position == 0:
                result.status = "failed"
                result.events.append(Event("ensure", "absent", "present", "failure",
                                           "install failed"))
            else:
                result.status = "noop" if noop else "changed"
                result.events.append(Event("mode", "0600", "0644",
                                           "noop" if noop else "success", "mode changed",
                                           corrective_change=position % 2 == 0))
        results.append(result)
    begin = start.timestamp()
    report = build_report(RunResult(catalog, noop, results, begin, begin + 12.5, frozenset(),
                                    []))
    report["transaction_uuid"] = transaction
    return report


# -- bulk loading ---------------------------------------------------------------------------------

def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


JSON_COLUMNS = {"value", "path", "facts", "trusted", "tags", "parameters", "classification",
                "inputs", "metrics", "logs", "old_value", "new_value"}


class Loader:
    """Appends rows per table and flushes them in bulk to SQLite or PostgreSQL."""

    def __init__(self, url: str, tables: dict[str, Any]) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.tables = tables
        self.postgresql = url.startswith("postgresql")
        self.pending: dict[str, list[dict[str, Any]]] = {}
        if self.postgresql:
            import psycopg
            from sqlalchemy.engine import make_url

            parsed = make_url(url)
            self.pg = psycopg.connect(host=parsed.host, port=parsed.port or 5432,
                                      user=parsed.username, dbname=parsed.database)
        else:
            engine = create_engine(url)
            self.sqlite = sqlite3.connect(engine.url.database or "")
            self.sqlite.execute("PRAGMA journal_mode=WAL")
            self.sqlite.execute("PRAGMA synchronous=OFF")
            self.sqlite.execute("PRAGMA cache_size=-1000000")
            self.sqlite.execute("BEGIN")

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        self.pending.setdefault(table, []).extend(rows)
        if len(self.pending[table]) >= 50_000:
            self.flush()

    def _value(self, column: str, value: Any) -> Any:
        if column in JSON_COLUMNS:
            return _dumps(value)
        if isinstance(value, datetime):
            if self.postgresql:
                return value
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                        timespec="microseconds")
        return value

    def flush(self) -> None:
        """Everything pending, parents before children (PostgreSQL checks foreign keys)."""
        for name in [t for t in self.tables if t in self.pending]:
            rows = self.pending.pop(name, [])
            if not rows:
                continue
            columns = list(rows[0])
            tuples = [tuple(self._value(c, row[c]) for c in columns) for row in rows]
            if self.postgresql:
                with self.pg.cursor() as cursor, cursor.copy(
                        f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for values in tuples:
                        copy.write_row(values)
            else:
                marks = ", ".join("?" * len(columns))
                self.sqlite.executemany(
                    f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", tuples)

    def finish(self) -> None:
        self.flush()
        if self.postgresql:
            for table in ("nodes", "resources", "edges", "reports", "events"):
                self.pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")
            self.pg.commit()
            self.pg.autocommit = True
            self.pg.execute("VACUUM ANALYZE")
            self.pg.close()
        else:
            self.sqlite.execute("COMMIT")
            self.sqlite.execute("ANALYZE")
            self.sqlite.close()


def generate_fleet(url: str, nodes: int, ctx: Context | None) -> None:
    """Fill a freshly migrated store with ``nodes`` nodes, through the ingest row builders."""
    from steward.store.models import Base
    from steward.store.rows import catalog_rows, fact_rows, facts_hash, report_rows

    loader = Loader(url, {t.name: t for t in Base.metadata.sorted_tables})
    rng = random.Random(GENERATOR_VERSION)
    produced = EPOCH + timedelta(days=6)
    paths: dict[tuple[str, str], dict[str, Any]] = {}
    started = time.perf_counter()
    templates: dict[tuple[str, str, int], dict[str, Any]] = {}
    for i in range(nodes):
        node_id = i + 1
        name = certname(i)
        facts = node_facts(i, rng)
        rows = fact_rows(node_id, facts)
        for path in rows.paths:
            paths.setdefault((path["path_key"], path["type"]), path)
        document = node_catalog(i)
        catalog = catalog_rows(node_id, document, produced)
        reports = []
        for n in range(2):
            roll = rng.random()
            status = "failed" if roll < 0.05 else ("changed" if roll < 0.25 else "unchanged")
            events = {"failed": 3, "changed": 10, "unchanged": 0}[status]
            start = EPOCH + timedelta(days=n * 3 + rng.randrange(4), minutes=rng.randrange(1440))
            key = (_role(i), status, n)
            if key not in templates or i % 50 == 0:
                templates[key] = run_report(document, status=status, events=events,
                                            noop=False, start=start, transaction="")
            report = dict(templates[key], node=name, start_time=_iso(start),
                          end_time=_iso(start + timedelta(seconds=12)),
                          catalog_hash=document["hash"], code_id=document["code_id"],
                          transaction_uuid=str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                          f"{name}/{n}")))
            reports.append(report_rows(report, start + timedelta(seconds=20)))
        latest = max(reports, key=lambda r: r.report["producer_timestamp"]).report
        loader.add("nodes", [{
            "id": node_id, "certname": name, "deactivated": None, "expired": None,
            "facts_timestamp": produced, "catalog_timestamp": produced,
            "report_timestamp": latest["producer_timestamp"],
            "facts_environment": "production", "catalog_environment": "production",
            "report_environment": "production", "latest_report_hash": latest["hash"],
            "latest_report_status": latest["status"], "latest_report_noop": latest["noop"],
            "latest_report_noop_pending": latest["noop_pending"],
            "latest_report_corrective_change": latest["corrective_change"],
        }])
        loader.add("factsets", [{
            "certname_id": node_id, "environment": "production", "timestamp": produced,
            "producer_timestamp": produced, "hash": facts_hash("production", facts),
            "facts": facts, "trusted": {"certname": name}}])
        loader.add("facts", rows.facts)
        loader.add("fact_contents", rows.contents)
        loader.add("catalogs", [catalog.catalog])
        loader.add("resources", catalog.resources)
        loader.add("edges", catalog.edges)
        for report in reports:
            loader.add("reports", [report.report])
            loader.add("report_resources", [report.resources])
            loader.add("events", report.events)
        if (i + 1) % 1000 == 0:
            _progress(ctx, f"generated {i + 1}/{nodes} nodes "
                      f"({time.perf_counter() - started:.0f} s)")
    loader.add("fact_paths", [paths[k] for k in sorted(paths)])
    loader.add("environments", [{"name": "production"}])
    _progress(ctx, "flushing and analysing")
    loader.finish()
    _progress(ctx, f"fleet generated in {time.perf_counter() - started:.0f} s")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the cached fleets ----------------------------------------------------------------------------


def fleet_key(nodes: int) -> str:
    """Generator version, size and schema (the migration scripts' digest)."""
    import hashlib
    from importlib import resources

    versions = resources.files("steward.store") / "migrations" / "versions"
    digest = hashlib.sha1(usedforsecurity=False)
    for script in sorted(versions.iterdir(), key=lambda p: p.name):
        if script.name.endswith(".py"):
            digest.update(script.read_bytes())
    return f"v{GENERATOR_VERSION}-{nodes}n-{digest.hexdigest()[:8]}"


def sqlite_fleet(nodes: int, ctx: Context | None) -> str:
    path = cache_dir() / f"store-fleet-{fleet_key(nodes)}.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        partial = path.with_suffix(".partial")
        for leftover in path.parent.glob(partial.name + "*"):
            leftover.unlink()
        partial_url = f"sqlite:///{partial}"
        _migrate(partial_url)
        _progress(ctx, f"generating the SQLite fleet in {partial}")
        generate_fleet(partial_url, nodes, ctx)
        partial.rename(path)
    return url


def postgresql_fleet(nodes: int, ctx: Context | None) -> str | None:
    """The cached PostgreSQL fleet's URL, generating it when missing or stale; None (with a
    message) when PostgreSQL cannot be reached."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(PG_URL)
    params = {"host": parsed.host, "port": parsed.port or 5432, "user": parsed.username}
    key = fleet_key(nodes)
    try:
        with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5,
                             **params) as admin:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                   (parsed.database,)).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{parsed.database}"')
    except psycopg.OperationalError as exc:
        _progress(ctx, f"PostgreSQL skipped: {exc}")
        return None
    with psycopg.connect(dbname=parsed.database, autocommit=True, **params) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY)")
        ready = conn.execute("SELECT 1 FROM bench_meta WHERE key = %s", (key,)).fetchone()
        if ready:
            return PG_URL
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    _migrate(PG_URL)
    _progress(ctx, "generating the PostgreSQL fleet")
    generate_fleet(PG_URL, nodes, ctx)
    with psycopg.connect(dbname=parsed.database, autocommit=True, **params) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY)")
        conn.execute("INSERT INTO bench_meta VALUES (%s)", (key,))
    return PG_URL


def _migrate(url: str) -> None:
    from steward.store import Store

    store = Store(url)
    store.migrate()
    store.close()


# -- measurements ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure_queries(url: str, runs: int, ctx: Context | None) -> list[dict[str, Any]]:
    from steward.store import Store

    store = Store(url)
    figures = []
    try:
        for query in EXAMPLE_QUERIES:
            start = time.perf_counter()
            rows = store.query(query)  # warm caches and the compiled-statement cache
            warm = time.perf_counter() - start
            samples = []
            # Fleet-sized answers take seconds: a few samples tell as much.
            for _ in range(runs if warm < 0.5 else min(runs, 5)):
                start = time.perf_counter()
                store.query(query)
                samples.append(time.perf_counter() - start)
            figures.append({"query": query, "rows": len(rows),
                            "p50": statistics.median(samples),
                            "p95": percentile(samples, 0.95), "samples": samples})
            _progress(ctx, f"{figures[-1]['p50'] * 1000:8.1f} ms p50 "
                      f"{figures[-1]['p95'] * 1000:8.1f} ms p95 {len(rows):7d} rows  {query}")
    finally:
        store.close()
    return figures


def ingest_reports(count: int) -> list[dict[str, Any]]:
    """``count`` reports of 300 resources and 10 events each, over 100 distinct nodes."""
    documents = [node_catalog(i) for i in range(100)]
    return [
        run_report(documents[n % 100], status="changed", events=10, noop=False,
                   start=EPOCH + timedelta(minutes=n), transaction=str(uuid.uuid4()))
        for n in range(count)
    ]


def _ingest_worker(args: tuple[str, list[dict[str, Any]], bool]) -> tuple[int, float]:
    """One writer process: store its share of the reports, timed after a warm-up."""
    from steward.store import Store

    url, reports, durable = args
    store = Store(url, durable_reports=durable)
    try:
        for report in reports[:10]:  # statement caches, connections
            store.store_report(report)
        start = time.perf_counter()
        for report in reports[10:]:
            store.store_report(report)
        return len(reports) - 10, time.perf_counter() - start
    finally:
        store.close()


def measure_ingestion(url: str, reports: list[dict[str, Any]], writers: int,
                      durable: bool = True) -> float:
    """Reports per second with ``writers`` processes (a server's workers), each storing
    its share one transaction per report. Processes, not threads: a writer is CPU-bound in
    Python (serialising the resource list), so threads would share one core."""
    from steward.store import Store

    store = Store(url)
    store.migrate()
    store.close()
    shares = [(url, reports[i::writers], durable) for i in range(writers)]
    if writers == 1:
        results = [_ingest_worker(shares[0])]
    else:
        with multiprocessing.get_context("fork").Pool(writers) as pool:
            results = pool.map(_ingest_worker, shares)
    # Writers start together; the slowest one bounds the rate.
    return sum(n for n, _ in results) / max(elapsed for _, elapsed in results)


def _pg_schema_url(base: str) -> tuple[str, Callable[[], None]] | None:
    """A fresh schema in ``base``'s database for one ingestion run, and its cleanup."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(base)
    schema = f"steward_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(host=parsed.host, port=parsed.port or 5432,
                                user=parsed.username, dbname=parsed.database,
                                autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return None
    admin.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()

    url = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


# -- entry points ---------------------------------------------------------------------------------


def measure_ingestion_rates(ctx: Context, count: int, skip_pg: bool, rows: list[Row],
                            details: dict[str, Any]) -> None:
    """The ingestion rows. Its reports live only here: a server does not keep a thousand
    reports in memory, and neither should the process whose queries are timed next."""
    ctx.progress(f"building {count} reports of 300 resources and 10 events")
    reports = ingest_reports(count)
    workdir = ctx.workdir("store-ingest")
    for writers in (1, 2):
        path = workdir / f"ingest-{writers}.db"
        rate = measure_ingestion(f"sqlite:///{path}", reports, writers)
        ctx.progress(f"SQLite, {writers} writer process(es): {rate:.0f} reports/s")
        rows.append(Row("store", f"report ingestion, SQLite, {writers} writer process(es) "
                        "(300 resources, 10 events each)", rate, "reports/s",
                        budget=f">= {INGEST_BUDGET:.0f}/s",
                        passed=check(rate, at_least=INGEST_BUDGET),
                        note="one transaction per report"))
        details[f"ingest_sqlite_{writers}"] = rate
    if not skip_pg:
        for writers, durable in ((1, True), (2, True), (1, False)):
            target = _pg_schema_url(PG_INGEST_URL)
            if target is None:
                rows.append(Row("store", "report ingestion, PostgreSQL", None, "reports/s",
                                note="skipped: PostgreSQL unreachable"))
                break
            url, drop = target
            try:
                pg_rate = measure_ingestion(url, [dict(r, transaction_uuid=str(uuid.uuid4()))
                                                  for r in reports], writers, durable)
            finally:
                drop()
            mode = "durable commits" if durable else "durable_reports=False"
            ctx.progress(f"PostgreSQL, {writers} writer process(es), {mode}: "
                         f"{pg_rate:.0f} reports/s")
            rows.append(Row(
                "store", f"report ingestion, PostgreSQL, {writers} writer process(es), {mode}",
                pg_rate, "reports/s", budget=f">= {INGEST_BUDGET:.0f}/s",
                passed=check(pg_rate, at_least=INGEST_BUDGET),
                note="one statement (one transaction, one round trip) per report" + (
                    "; commit waits for the WAL flush" if durable
                    else "; synchronous_commit=off for reports")))
            details[f"ingest_postgresql_{writers}_{'durable' if durable else 'async'}"] = (
                pg_rate)


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    options = ctx.options
    nodes = getattr(options, "store_nodes", 10_000)
    runs = getattr(options, "store_query_runs", 20)
    count = getattr(options, "store_reports", 1000)
    skip_pg = getattr(options, "store_skip_postgresql", False)
    rows: list[Row] = []
    details: dict[str, Any] = {"nodes": nodes, "query_runs": runs, "reports": count}
    measure_ingestion_rates(ctx, count, skip_pg, rows, details)
    # The ingestion's 1,000 reports (over a million Python objects) are garbage now;
    # collected here, not by a full collection in the middle of a timed query.
    gc.collect()

    fleets = [("SQLite", sqlite_fleet(nodes, ctx))]
    if not skip_pg:
        pg = postgresql_fleet(nodes, ctx)
        if pg is not None:
            fleets.append(("PostgreSQL", pg))
    for label, url in fleets:
        ctx.progress(f"{label}: example queries on {nodes} nodes, {runs} runs each")
        figures = measure_queries(url, runs, ctx)
        details[f"queries_{label.lower()}"] = figures
        for n, figure in enumerate(figures, start=1):
            rows.append(Row(
                "store", f"PQL example {n}, {label}, {nodes} nodes: p95", figure["p95"], "s",
                budget=f"<= {LATENCY_BUDGET * 1000:.0f} ms",
                passed=check(figure["p95"], at_most=LATENCY_BUDGET),
                note=f"p50 {figure['p50'] * 1000:.1f} ms, {figure['rows']} rows: "
                     f"{figure['query']}"))
    return rows, details


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", dest="store_nodes", type=int, default=10_000)
    parser.add_argument("--runs", dest="store_query_runs", type=int, default=20)
    parser.add_argument("--reports", dest="store_reports", type=int, default=1000)
    parser.add_argument("--skip-postgresql", dest="store_skip_postgresql",
                        action="store_true")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="store-bench-") as scratch:
        rows, _details = run(Context(options=options, scratch=Path(scratch)))
    for row in rows:
        value = "-" if row.value is None else (
            f"{row.value * 1000:.1f} ms" if row.unit == "s" else f"{row.value:,.0f} {row.unit}")
        verdict = "" if row.passed is None else ("ok" if row.passed else "MISS")
        print(f"{verdict:4} {value:>16}  {row.figure}  {row.budget}  {row.note}")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
