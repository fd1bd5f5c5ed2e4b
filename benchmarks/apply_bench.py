"""Whole-process ``steward apply`` of N ``file`` resources, and the same work by the peers.

Every tool manages the same N files (same content, mode 0644) in a directory of its own under
a temporary tree: a first run creates them, then no-change runs find them in sync. Each run is
a whole process, start-up included, because that is what a scheduled agent run costs.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    REPO_ROOT,
    BenchError,
    Context,
    Run,
    expect_code,
    measured_run,
    python_env,
)

from steward.catalog.model import Catalog, Edge, Resource

BENCH_DIR_NAME = "bench"


def file_content(index: int) -> str:
    """Content of benchmark file ``index``: small, distinct, the same for every tool."""
    return f"# managed by the benchmark\nname = file{index:04d}\nvalue = {index * 7919 % 10007}\n"


def file_name(index: int) -> str:
    return f"f{index:04d}.conf"


def steward_command() -> list[str]:
    """The installed console script, as users run it; else the module."""
    script = REPO_ROOT / ".venv" / "bin" / "steward"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "steward"]


def build_catalog(count: int, directory: str = f"/{BENCH_DIR_NAME}") -> Catalog:
    """A directory and ``count`` files in it, with the autorequire edges the compiler adds."""
    parent = Resource("directory", directory, {"mode": "0755"})
    files = [
        Resource(
            "file",
            f"{directory}/{file_name(i)}",
            {"content": file_content(i), "mode": "0644"},
        )
        for i in range(count)
    ]
    edges = [Edge(parent.ref, f.ref, "autorequire") for f in files]
    return Catalog(
        node="bench.example.com",
        environment="production",
        resources=[parent, *files],
        edges=edges,
    ).seal()


def verify_files(directory: Path, count: int) -> None:
    """Every tool must really have done the work: all files, exact content, mode 0644."""
    for index in range(count):
        path = directory / file_name(index)
        try:
            content = path.read_text()
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            raise BenchError(f"{path} was not created: {exc.strerror}") from exc
        if content != file_content(index) or mode != 0o644:
            raise BenchError(f"{path} has wrong content or mode {oct(mode)}")


@dataclass(frozen=True, slots=True)
class ApplySeries:
    """One tool's first run and its no-change reruns."""

    first: Run
    nochange: tuple[Run, ...]

    @property
    def nochange_walls(self) -> list[float]:
        return [r.wall for r in self.nochange]

    @property
    def max_rss_mb(self) -> float:
        return max(r.maxrss_kb for r in (self.first, *self.nochange)) / 1024


@dataclass(frozen=True, slots=True)
class Tool:
    """A prepared tool: its first run and a no-change rerun, each checking its own outcome."""

    name: str
    first: Callable[[], Run]
    again: Callable[[], Run]


def run_series(tool: Tool, runs: int, progress: Callable[[str], None]) -> ApplySeries:
    """First run, then ``runs`` no-change runs, one after another."""
    return interleaved([(tool, runs)], progress)[tool.name]


def interleaved(
    tools: list[tuple[Tool, int]], progress: Callable[[str], None]
) -> dict[str, ApplySeries]:
    """Each tool's first run, then rounds of one no-change run per tool.

    Taking turns spreads the machine's load changes over every tool alike, so a busy
    minute cannot land on one side of a ratio only.
    """
    firsts: dict[str, Run] = {}
    for tool, _ in tools:
        firsts[tool.name] = tool.first()
        progress(f"{tool.name}: first run {firsts[tool.name].wall:.2f}s")
    reruns: dict[str, list[Run]] = {tool.name: [] for tool, _ in tools}
    for index in range(max(count for _, count in tools)):
        for tool, count in tools:
            if index < count:
                run = tool.again()
                reruns[tool.name].append(run)
                progress(f"{tool.name}: no-change run {index + 1}/{count} {run.wall:.3f}s")
    return {name: ApplySeries(firsts[name], tuple(reruns[name])) for name in firsts}


_SERIES: dict[tuple[int, int], ApplySeries] = {}


def remember_steward_series(files: int, runs: int, series: ApplySeries) -> None:
    """Keep the apply benchmark's runs for the memory benchmark: one full run applies once."""
    _SERIES[(files, runs)] = series


def steward_series(ctx: Context, files: int, runs: int) -> ApplySeries:
    key = (files, runs)
    if key not in _SERIES:
        _SERIES[key] = run_series(steward_tool(ctx, files), runs, ctx.progress)
    return _SERIES[key]


def steward_tool(ctx: Context, files: int) -> Tool:
    """``steward apply`` of the N-file catalog under a fresh --root, bytecode cache warm."""
    work = ctx.workdir(f"steward-apply-{files}")
    env = python_env()
    command = steward_command()

    # Warm-up on a separate small tree: writes the bytecode cache, as an installed package has.
    warm = work / "warmup"
    (warm / "root").mkdir(parents=True)
    (warm / "catalog.json").write_text(build_catalog(10).dumps())
    for _ in range(2):
        measured_run(
            [*command, "apply", "--catalog", str(warm / "catalog.json"), "--root",
             str(warm / "root")],
            workdir=warm,
            env=env,
        )

    (work / "root").mkdir()
    catalog = work / "catalog.json"
    catalog.write_text(build_catalog(files).dumps())
    argv = [*command, "apply", "--catalog", str(catalog), "--root", str(work / "root")]

    def first() -> Run:
        run = measured_run(argv, workdir=work, env=env)
        expect_code(run, [2], "steward apply (first run)")
        verify_files(work / "root" / BENCH_DIR_NAME, files)
        return run

    def again() -> Run:
        run = measured_run(argv, workdir=work, env=env)
        expect_code(run, [0], "steward apply (no-change run)")
        return run

    return Tool("steward", first, again)
