"""Compile throughput: catalogs per second on one core for ~300-resource nodes.

The repository is loaded once (timed separately), then N nodes with distinct names and
facts are compiled one after another in this process, each catalog serialised with
``dumps()`` as it would be to be shipped. One process is one core, so the figure is
per-core throughput; a compile server scales it by its cores.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from common import BenchError, Context, Row, check, median, series
from repo_gen import expected_resources, node_facts, node_name, write_repository

from steward.facts import collect_facts

BUDGET_PER_SECOND = 300.0
WARMUP_NODES = 10


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    from steward.compiler import compile_catalog
    from steward.language import load_repository

    options = ctx.options
    nodes = options.compile_nodes
    repo_dir = ctx.workdir("compile-repo")
    write_repository(repo_dir, options.compile_resources)

    load_times = []
    for _ in range(3):
        start = time.perf_counter()
        repo = load_repository(repo_dir)
        load_times.append(time.perf_counter() - start)
    ctx.progress(f"repository loaded in {median(load_times) * 1000:.0f} ms (median of 3)")

    base = collect_facts()
    fact_sets = [(node_name(i), node_facts(base, i)) for i in range(nodes + WARMUP_NODES)]
    expected = expected_resources(options.compile_resources)
    sizes: list[int] = []
    for name, facts in fact_sets[:WARMUP_NODES]:
        catalog = compile_catalog(repo, node=name, facts=facts).catalog
        catalog.dumps()
        sizes.append(len(catalog.resources))
    if any(size != expected for size in sizes):
        raise BenchError(f"benchmark catalogs hold {sorted(set(sizes))} resources, "
                         f"expected {expected}: the benchmark repository is off")

    per_catalog = []
    total_bytes = 0
    gc.collect()
    started = time.perf_counter()
    cpu_started = time.process_time()
    for name, facts in fact_sets[WARMUP_NODES:]:
        start = time.perf_counter()
        # The wire form: compact canonical JSON, as a server ships it.
        text = compile_catalog(repo, node=name, facts=facts).catalog.dumps(indent=None)
        per_catalog.append(time.perf_counter() - start)
        total_bytes += len(text)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rate = nodes / elapsed
    # Per core means per CPU-second of this process: on a shared machine the wall clock also
    # counts time the scheduler gave to other processes, the CPU time does not.
    cpu_rate = nodes / cpu
    ctx.progress(f"{nodes} catalogs in {elapsed:.2f} s wall ({rate:.0f}/s), {cpu:.2f} s CPU "
                 f"({cpu_rate:.0f}/s)")

    # What the human-readable form (dumps()'s default indent=2) would add per catalog: the
    # json module's C encoder only serves compact output, indenting runs in pure Python.
    sample = compile_catalog(repo, node=fact_sets[0][0], facts=fact_sets[0][1]).catalog
    pretty = []
    for _ in range(10):
        start = time.perf_counter()
        sample.dumps()
        pretty.append(time.perf_counter() - start)
    rows = [
        Row(
            "compile",
            f"catalogs per CPU-second, {expected}-resource nodes ({nodes} nodes, compile + "
            "compact dumps)",
            cpu_rate,
            "catalogs/s",
            budget=f">= {BUDGET_PER_SECOND:.0f}/s",
            passed=check(cpu_rate, at_least=BUDGET_PER_SECOND),
            note=f"wall clock {rate:.0f}/s; median {median(per_catalog) * 1000:.2f} ms per "
            "catalog, "
            f"{total_bytes / nodes / 1024:.0f} KiB each; an indented dumps() would add "
            f"{median(pretty) * 1000:.1f} ms",
        ),
        Row("compile", "load the benchmark repository once (median of 3)",
            median(load_times), "s"),
    ]
    details = {
        "nodes": nodes,
        "resources_per_catalog": expected,
        "elapsed": elapsed,
        "cpu_seconds": cpu,
        "rate_wall": rate,
        "rate_cpu": cpu_rate,
        "per_catalog": {k: v for k, v in series(per_catalog).items() if k != "samples"},
        "load": series(load_times),
        "catalog_bytes_mean": total_bytes / nodes,
        "indented_dumps": series(pretty),
    }
    return rows, details
