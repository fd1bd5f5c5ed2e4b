"""Steward's performance budgets, measured side by side with Puppet and Ansible.

    .venv/bin/python benchmarks/run.py                 # everything, default sizes (~3 min)
    .venv/bin/python benchmarks/run.py --only apply memory --no-peers
    .venv/bin/python benchmarks/run.py --ansible-files 1000   # the real thing, ~15 min more

Prints a table (benchmark, figure, budget, pass/fail, peers and ratios) and writes every
sample to benchmarks/results/latest.json. Exits 1 when a budget is missed, 2 when a
benchmark could not run. What each benchmark measures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import compile_bench
import facts_bench
import impact as impact_bench
import mcp_query
import store_bench
from apply_bench import interleaved, remember_steward_series, steward_series, steward_tool
from common import (
    RESULTS_DIR,
    BenchError,
    Context,
    Peer,
    Row,
    check,
    fmt_value,
    median,
    series,
)
from peers import Skip, ansible_series, find_puppet, puppet_tool, puppet_version

import steward
from steward.facts import collect_facts

APPLY_BUDGET_SECONDS = 0.3
PUPPET_RATIO_BUDGET = 20.0
MEMORY_BUDGET_MB = 60.0

BENCHMARKS = ("compile", "apply", "memory", "facts", "store", "impact", "mcp")


def bench_apply(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    options = ctx.options
    files = options.files
    peers: list[Peer] = []
    tools = [(steward_tool(ctx, files), options.runs)]
    if options.no_peers or options.no_puppet:
        peers.append(Peer("puppet apply", None, "s", note="skipped: disabled by option"))
    else:
        try:
            tools.append((puppet_tool(ctx, files), options.puppet_runs))
        except Skip as skip:
            ctx.progress(f"puppet skipped: {skip}")
            peers.append(Peer("puppet apply", None, "s", note=f"skipped: {skip}"))
    ctx.progress(f"{' and '.join(t.name for t, _ in tools)} apply, {files} files, taking turns")
    try:
        by_tool = interleaved(tools, ctx.progress)
    except BenchError as exc:
        if len(tools) == 1 or "puppet" not in str(exc):
            raise
        ctx.progress(f"puppet failed: {exc}; measuring steward alone")
        peers.append(Peer("puppet apply", None, "s", note=f"failed: {exc}"))
        by_tool = interleaved([(steward_tool(ctx, files), options.runs)], ctx.progress)
    mine = by_tool["steward"]
    remember_steward_series(files, options.runs, mine)
    steward_median = median(mine.nochange_walls)
    steward_min = min(mine.nochange_walls)
    details: dict[str, Any] = {
        "files": files,
        "steward": {"first": mine.first.wall, "nochange": series(mine.nochange_walls),
                    "max_rss_mb": mine.max_rss_mb},
    }
    puppet_row: Row | None = None
    theirs = by_tool.get("puppet")
    if theirs is not None:
        puppet_median = median(theirs.nochange_walls)
        ratio = puppet_median / steward_median
        min_ratio = min(theirs.nochange_walls) / steward_min
        peers.append(Peer("puppet apply", puppet_median, "s", ratio=ratio))
        details["puppet"] = {
            "version": puppet_version(find_puppet(ctx)),
            "first": theirs.first.wall,
            "nochange": series(theirs.nochange_walls),
            "max_rss_mb": theirs.max_rss_mb,
            "ratio_of_medians": ratio,
            "ratio_of_minimums": min_ratio,
        }
        puppet_row = Row(
            "apply",
            f"puppet apply / steward apply, no-change {files} files",
            ratio,
            "x",
            budget=f">= {PUPPET_RATIO_BUDGET:.0f}x",
            passed=check(ratio, at_least=PUPPET_RATIO_BUDGET),
            note=f"medians: puppet {puppet_median:.2f} s ({options.puppet_runs} runs) vs "
            f"steward {steward_median * 1000:.0f} ms, taking turns; ratio of minimums "
            f"{min_ratio:.1f}x",
        )
    if options.no_peers or options.no_ansible:
        peers.append(Peer("ansible-playbook", None, "s", note="skipped: disabled by option"))
    else:
        try:
            count = options.ansible_files
            ctx.progress(f"ansible-playbook, {count} files")
            ansible = ansible_series(ctx, count, options.ansible_runs)
        except (Skip, BenchError) as skip:
            reason = f"{'skipped' if isinstance(skip, Skip) else 'failed'}: {skip}"
            ctx.progress(f"ansible {reason}")
            peers.append(Peer("ansible-playbook", None, "s", note=reason))
        else:
            measured = median(ansible.series.nochange_walls)
            details["ansible"] = {
                "version": ansible.version,
                "files": count,
                "first": ansible.series.first.wall,
                "nochange": series(ansible.series.nochange_walls),
                "empty_play": ansible.empty.wall,
                "per_resource": ansible.per_resource,
                "max_rss_mb": ansible.series.max_rss_mb,
            }
            if count == files:
                peers.append(Peer("ansible-playbook", measured, "s",
                                  ratio=measured / steward_median))
            else:
                projected = ansible.extrapolate(files)
                details["ansible"]["extrapolated"] = projected
                peers.append(
                    Peer(
                        f"ansible-playbook (extrapolated from {count} files)",
                        projected,
                        "s",
                        ratio=projected / steward_median,
                        note=f"measured {measured:.2f} s for {count} files; "
                        f"{ansible.per_resource * 1000:.0f} ms per file + "
                        f"{ansible.empty.wall:.2f} s start-up",
                    )
                )
    rows = [
        Row(
            "apply",
            f"steward apply, no-change {files} files, whole process "
            f"(median of {options.runs}; min {min(mine.nochange_walls) * 1000:.0f} ms)",
            steward_median,
            "s",
            budget=f"<= {APPLY_BUDGET_SECONDS * 1000:.0f} ms",
            passed=check(steward_median, at_most=APPLY_BUDGET_SECONDS),
            peers=peers,
        ),
        Row("apply", f"steward apply, first run creating {files} files", mine.first.wall, "s",
            peers=_first_run_peers(details)),
    ]
    if puppet_row is not None:
        rows.append(puppet_row)
    return rows, details


def _first_run_peers(details: dict[str, Any]) -> list[Peer]:
    peers = []
    mine = details["steward"]["first"]
    if "puppet" in details:
        theirs = details["puppet"]["first"]
        peers.append(Peer("puppet apply", theirs, "s", ratio=theirs / mine))
    if "ansible" in details and "extrapolated" not in details["ansible"]:
        theirs = details["ansible"]["first"]
        peers.append(Peer("ansible-playbook", theirs, "s", ratio=theirs / mine))
    return peers


def bench_memory(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    options = ctx.options
    mine = steward_series(ctx, options.files, options.runs)
    first_mb = mine.first.maxrss_kb / 1024
    nochange_mb = max(r.maxrss_kb for r in mine.nochange) / 1024
    peak = max(first_mb, nochange_mb)
    ctx.progress(f"steward apply max RSS {peak:.1f} MB")
    return [
        Row(
            "memory",
            f"steward apply max RSS, {options.files} files (first and no-change runs)",
            peak,
            "MB",
            budget=f"< {MEMORY_BUDGET_MB:.0f} MB",
            passed=check(peak, at_most=MEMORY_BUDGET_MB - 1e-9),
            note=f"first run {first_mb:.1f} MB, no-change {nochange_mb:.1f} MB",
        )
    ], {"first_mb": first_mb, "nochange_mb": nochange_mb}


RUNNERS: dict[str, Callable[[Context], tuple[list[Row], dict[str, Any]]]] = {
    "compile": compile_bench.run,
    "apply": bench_apply,
    "memory": bench_memory,
    "facts": facts_bench.run,
    "store": store_bench.run,
    "impact": impact_bench.run,
    "mcp": mcp_query.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure Steward against its performance budgets (see docs/benchmarks.md)."
    )
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")
    parser.add_argument("--files", type=int, default=1000,
                        help="file resources in the apply/memory benchmarks (default 1000)")
    parser.add_argument("--runs", type=int, default=7,
                        help="no-change steward apply runs (default 7, at least 5)")
    parser.add_argument("--compile-nodes", type=int, default=600,
                        help="nodes compiled in the throughput benchmark (default 600)")
    parser.add_argument("--compile-resources", type=int, default=300,
                        help="approximate resources per benchmark node (default 300)")
    parser.add_argument("--facts-runs", type=int, default=20,
                        help="collect_facts() calls timed (default 20)")
    parser.add_argument("--store-nodes", type=int, default=10_000,
                        help="nodes in the generated fleet for PQL latency (default 10000; "
                        "generated once and cached, ~7 minutes the first time)")
    parser.add_argument("--store-query-runs", type=int, default=20,
                        help="runs of each example query (default 20)")
    parser.add_argument("--store-reports", type=int, default=1000,
                        help="reports ingested per backend (default 1000)")
    parser.add_argument("--store-skip-postgresql", action="store_true",
                        help="measure the store on SQLite only")
    parser.add_argument("--impact-nodes", type=int, default=10_000,
                        help="nodes in the generated fleet for impact analysis (default 10000; "
                        "generated once and cached)")
    parser.add_argument("--impact-runs", type=int, default=3,
                        help="runs of the role-level key analysis (default 3)")
    parser.add_argument("--mcp-nodes", type=int, default=1000,
                        help="nodes seeded for the MCP query-tool latency (default 1000)")
    parser.add_argument("--mcp-runs", type=int, default=30,
                        help="rounds of the MCP benchmark's queries (default 30)")
    parser.add_argument("--no-peers", action="store_true", help="skip Puppet, Ansible, Facter")
    parser.add_argument("--no-puppet", action="store_true", help="skip puppet apply")
    parser.add_argument("--no-ansible", action="store_true", help="skip ansible-playbook")
    parser.add_argument("--puppet", help="puppet executable (default: 'puppet' on PATH)")
    parser.add_argument("--puppet-runs", type=int, default=5,
                        help="no-change puppet apply runs, taking turns with steward's "
                        "(default 5, at least 3)")
    parser.add_argument("--ansible-files", type=int, default=50,
                        help="files Ansible manages; below --files the time is extrapolated "
                        "(default 50: 1000 takes ~15 minutes per run)")
    parser.add_argument("--ansible-runs", type=int, default=2,
                        help="no-change ansible-playbook runs (default 2)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json",
                        help="results file (default benchmarks/results/latest.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def machine() -> dict[str, Any]:
    """The host the figures belong to; they mean little without it."""
    facts = collect_facts(only=["os", "kernel", "processors", "memory", "virtual"])
    processors = facts.get("processors", {})
    return {
        "os": facts.get("os", {}).get("pretty_name"),
        "kernel": facts.get("kernel", {}).get("release"),
        "cpu": (processors.get("models") or ["unknown"])[0],
        "cpus": processors.get("count"),
        "memory_gb": round(facts.get("memory", {}).get("system", {}).get("total_bytes", 0)
                           / 2**30, 1),
        "virtual": facts.get("virtual"),
        "python": platform.python_version(),
        "steward": steward.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _peer_text(peer: Peer) -> str:
    if peer.value is None:
        return f"{peer.name}: {peer.note or 'skipped'}"
    text = f"{peer.name}: {fmt_value(peer.value, peer.unit)}"
    if peer.ratio is not None:
        text += f" ({peer.ratio:.1f}x steward)"
    return text


def render(rows: list[Row]) -> str:
    header = ("Benchmark", "Figure", "Value", "Budget", "Result")
    table = [header]
    for row in rows:
        result = "-" if row.passed is None else ("PASS" if row.passed else "FAIL")
        table.append((row.benchmark, row.figure, fmt_value(row.value, row.unit),
                      row.budget or "-", result))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
        else:
            row = rows[index - 1]
            indent = " " * (widths[0] + 2)
            lines.extend(f"{indent}  vs {_peer_text(peer)}" for peer in row.peers)
            if row.note:
                lines.append(f"{indent}  ({row.note})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    # A median of fewer runs is noise on a busy machine.
    options.runs = max(options.runs, 5)
    options.puppet_runs = max(options.puppet_runs, 3)
    selected = options.only or list(BENCHMARKS)
    started = time.perf_counter()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as scratch:
        ctx = Context(options=options, scratch=Path(scratch), verbose=not options.quiet)
        for name in BENCHMARKS:
            if name not in selected:
                continue
            if not options.quiet:
                sys.stderr.write(f"== {name}\n")
            try:
                found, detail = RUNNERS[name](ctx)
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                errors[name] = f"{type(exc).__name__}: {exc}"
                sys.stderr.write(f"!! {name} could not run: {errors[name]}\n")
                if not isinstance(exc, BenchError):
                    traceback.print_exc()
                rows.append(Row(name, f"could not run: {exc}", None, "", passed=False))
                continue
            rows.extend(found)
            details[name] = detail
    elapsed = time.perf_counter() - started
    info = machine()
    document = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
        "elapsed_seconds": round(elapsed, 1),
        "rows": [row.to_json() for row in rows],
        "details": details,
        "errors": errors,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(render(rows))
    print(
        f"\n{info['cpu']} x{info['cpus']}, {info['os']}, Python {info['python']}; "
        f"load {info['load_average']}; {elapsed:.0f} s; results in {options.output}"
    )
    if errors:
        return 2
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
