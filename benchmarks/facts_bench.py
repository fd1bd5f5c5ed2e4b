"""Facts collection: ``collect_facts()`` in-process and ``steward facts`` as a whole process."""

from __future__ import annotations

import json
import shutil
import time

from apply_bench import steward_command
from common import (
    BenchError,
    Context,
    Peer,
    Row,
    check,
    expect_code,
    measured_run,
    median,
    python_env,
    series,
)

from steward.facts import collect_facts

BUDGET_SECONDS = 0.2


def run(ctx: Context) -> tuple[list[Row], dict[str, object]]:
    runs = ctx.options.facts_runs
    collect_facts()  # first call pays for lazy imports inside the collectors
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        facts = collect_facts()
        samples.append(time.perf_counter() - start)
    ctx.progress(f"collect_facts() median {median(samples) * 1000:.1f} ms over {runs} runs")

    work = ctx.workdir("facts")
    env = python_env()
    argv = [*steward_command(), "facts"]
    measured_run(argv, workdir=work, env=env)  # writes the bytecode cache
    process_runs = max(5, runs // 2)
    walls = []
    for _ in range(process_runs):
        result = measured_run(argv, workdir=work, env=env, keep_stdout=True)
        expect_code(result, [0], "steward facts")
        if "os" not in json.loads(result.stdout):
            raise BenchError("steward facts printed no 'os' fact")
        walls.append(result.wall)
    ctx.progress(f"steward facts process median {median(walls) * 1000:.1f} ms")

    peers: list[Peer] = []
    details: dict[str, object] = {
        "in_process": series(samples),
        "process": series(walls),
        "fact_count": len(facts),
    }
    facter = shutil.which("facter")
    if facter is None or ctx.options.no_peers:
        reason = "peers disabled" if ctx.options.no_peers else "facter is not installed"
        peers.append(Peer("facter --json", None, "s", note=f"skipped: {reason}"))
    else:
        facter_walls = []
        for _ in range(3):
            result = measured_run([facter, "--json"], workdir=work, keep_stdout=True)
            # Facter exits 1 when one resolver fails (e.g. /proc/1/environ unreadable) but
            # still prints every other fact; that is the work being compared.
            expect_code(result, [0, 1], "facter --json")
            json.loads(result.stdout)
            facter_walls.append(result.wall)
        peers.append(
            Peer("facter --json", median(facter_walls), "s",
                 ratio=median(facter_walls) / median(walls))
        )
        details["facter"] = series(facter_walls)
    rows = [
        Row(
            "facts",
            f"collect_facts() in-process (median of {runs})",
            median(samples),
            "s",
            budget=f"< {BUDGET_SECONDS * 1000:.0f} ms",
            passed=check(median(samples), at_most=BUDGET_SECONDS),
        ),
        Row(
            "facts",
            f"`steward facts` whole process (median of {process_runs})",
            median(walls),
            "s",
            budget=f"< {BUDGET_SECONDS * 1000:.0f} ms",
            passed=check(median(walls), at_most=BUDGET_SECONDS),
            peers=peers,
        ),
    ]
    return rows, details
