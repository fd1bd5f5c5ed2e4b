"""Shared pieces of the benchmark harness: measured subprocess runs, statistics, result rows.

Whole-process figures are taken by a small helper process that runs the measured command and
reports its wall time and ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: with the command as the
helper's only child, the peak RSS is exactly that command's (or its largest descendant's),
never mixed with earlier runs as it would be in the harness itself.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

_HELPER = """
import json, resource, subprocess, sys, time
spec = json.loads(sys.argv[1])
out = open(spec["stdout"], "wb") if spec["stdout"] else subprocess.DEVNULL
err = open(spec["stderr"], "wb")
start = time.perf_counter()
proc = subprocess.run(spec["argv"], stdout=out, stderr=err, cwd=spec["cwd"])
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss, "returncode": proc.returncode}))
"""


class BenchError(Exception):
    """A measured command misbehaved (wrong exit code, missing output); the figure is void."""


@dataclass(frozen=True, slots=True)
class Run:
    wall: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str


def cache_dir() -> Path:
    """Where slow one-time set-up (the Ansible venv, bytecode) is kept between runs."""
    configured = os.environ.get("STEWARD_BENCH_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "steward-bench"
    base.mkdir(parents=True, exist_ok=True)
    return base


def measured_run(
    argv: Sequence[str],
    *,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    keep_stdout: bool = False,
    timeout: float = 3600,
) -> Run:
    """Run ``argv`` under the helper; wall time excludes the helper's own start-up."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / "last-stdout.txt"
    err_path = workdir / "last-stderr.txt"
    spec = {
        "argv": list(argv),
        "stdout": str(out_path) if keep_stdout else "",
        "stderr": str(err_path),
        "cwd": str(cwd) if cwd else None,
    }
    helper = subprocess.run(
        [sys.executable, "-I", "-c", _HELPER, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout,
        check=False,
    )
    if helper.returncode != 0:
        raise BenchError(f"measuring helper failed: {helper.stderr.strip()[-500:]}")
    figures = json.loads(helper.stdout)
    return Run(
        wall=float(figures["wall"]),
        maxrss_kb=int(figures["maxrss_kb"]),
        returncode=int(figures["returncode"]),
        stdout=out_path.read_text(errors="replace") if keep_stdout else "",
        stderr=err_path.read_text(errors="replace"),
    )


def expect_code(run: Run, allowed: Sequence[int], what: str) -> None:
    if run.returncode not in allowed:
        tail = "\n".join(run.stderr.strip().splitlines()[-5:])
        raise BenchError(
            f"{what} exited {run.returncode} (expected {' or '.join(map(str, allowed))})"
            + (f": {tail}" if tail else "")
        )


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def series(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every sample, as stored in the results file."""
    return {
        "median": median(values),
        "min": min(values),
        "max": max(values),
        "samples": [round(v, 6) for v in values],
    }


def python_env() -> dict[str, str]:
    """Environment for measured Python processes: with bytecode caching, as when installed.

    Development shells often set PYTHONDONTWRITEBYTECODE, which would make every measured
    start recompile every module; an installed package has its .pyc files. The cache goes to
    a prefix outside the source tree so the working copy stays clean.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    return env


@dataclass(slots=True)
class Peer:
    name: str
    value: float | None
    unit: str
    #: peer / steward for times: how many times faster Steward is.
    ratio: float | None = None
    note: str = ""


@dataclass(slots=True)
class Row:
    benchmark: str
    figure: str
    value: float | None
    unit: str
    #: Human-readable budget ("<= 0.3 s"); empty when the figure is informational.
    budget: str = ""
    passed: bool | None = None
    peers: list[Peer] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check(value: float, *, at_most: float | None = None, at_least: float | None = None) -> bool:
    if at_most is not None and value > at_most:
        return False
    return not (at_least is not None and value < at_least)


def fmt_seconds(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms" if value >= 0.1 else f"{value * 1000:.1f} ms"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return fmt_seconds(value)
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "catalogs/s":
        return f"{value:,.0f} catalogs/s"
    return f"{value:g} {unit}".strip()


@dataclass(slots=True)
class Context:
    """What every benchmark gets: the parsed options and a scratch directory."""

    options: Any
    scratch: Path
    verbose: bool = True

    def workdir(self, name: str) -> Path:
        """A fresh directory per call, so a retried set-up never finds the last one's files."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))

    def progress(self, message: str) -> None:
        if self.verbose:
            sys.stderr.write(f"  .. {message}\n")
            sys.stderr.flush()
