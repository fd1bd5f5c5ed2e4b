"""MCP: latency of the ``query`` tool over streamable HTTP, against a real server process.

A fresh data directory (SQLite, the example repository) is seeded with a fleet of nodes whose
facts are shaped like the store benchmark's (~140 fact leaves each); ``steward server`` is
started on loopback TLS; one MCP session with an **agent** token (so every query is also
authorised against its roles and audited, the expensive path) calls ``query`` with a mix of
PQL queries, each answered with at most 100 rows. The figure is the p95 wall time of a
``tools/call`` round trip as the client sees it (TLS, bearer-token verification, permission
gate, PQL, audit entry, JSON): budget < 50 ms.

    .venv/bin/python benchmarks/mcp_query.py [--nodes 1000] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO_ROOT, Context, Row, check
from store_bench import certname, node_facts, percentile

BUDGET = 0.050  # s, p95
QUERIES = (
    'nodes[certname] { certname ~ "^web" }',
    'inventory[certname, facts.os.family] { facts.os.family = "Debian" }',
    f'facts[name, value] {{ certname = "{certname(1)}" and name = "os" }}',
    'facts[name, count(value)] { certname ~ "^db" group by name }',
    'fact_contents[certname, value] { path = ["os", "family"] and value = "RedHat" }',
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _progress(ctx: Context | None, message: str) -> None:
    if ctx is None or ctx.verbose:
        sys.stderr.write(f"   {message}\n")


def seed(workdir: Path, nodes: int, port: int) -> tuple[Path, str]:
    """A data directory with ``nodes`` nodes' facts and an agent token (role debugger)."""
    from steward.pipeline.schema import migrate
    from steward.pipeline.service import Pipeline
    from steward.server.config import load_config
    from steward.server.init import init_data_dir
    from steward.server.services import build_services

    result = init_data_dir(workdir / "data", repo=REPO_ROOT / "examples" / "repo", port=port)
    services = build_services(load_config(result.config.data_dir))
    try:
        migrate(services.engine)
        pipeline = Pipeline(services)
        token = str(services.tokens.create("agent", "bench-agent", created_by="bench")["token"])
        pipeline.rbac.grant("agent:bench-agent", "debugger")
        rng = random.Random(5)
        now = datetime.now(UTC)
        for i in range(nodes):
            services.store.replace_facts(certname(i), "production", node_facts(i, rng), now)
    finally:
        services.close()
    return result.config.data_dir, token


async def _measure(url: str, token: str, ca: Path, runs: int) -> dict[str, list[float]]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    tls = ssl.create_default_context(cafile=ca)
    samples: dict[str, list[float]] = {q: [] for q in QUERIES}
    http = httpx2.AsyncClient(verify=tls, headers={"Authorization": f"Bearer {token}"},
                              timeout=httpx2.Timeout(60.0))
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        for query in QUERIES:  # warm-up: connections, caches, the first parse
            result = await client.call_tool("query", {"query": query, "limit": 100})
            if result.is_error:
                raise RuntimeError(f"query {query!r} failed: {result.content}")
        for _ in range(runs):
            for query in QUERIES:
                start = time.perf_counter()
                await client.call_tool("query", {"query": query, "limit": 100})
                samples[query].append(time.perf_counter() - start)
    return samples


def measure(workdir: Path, nodes: int, runs: int, ctx: Context | None = None
            ) -> dict[str, Any]:
    port = _free_port()
    _progress(ctx, f"seeding {nodes} nodes")
    data_dir, token = seed(workdir, nodes, port)
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "steward", "server", "--data-dir", str(data_dir), "--port",
         str(port), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"https://127.0.0.1:{port}"
    ca = data_dir / "tls" / "ca.crt"
    try:
        _wait(url, ca, proc)
        _progress(ctx, f"{runs} rounds of {len(QUERIES)} queries over streamable HTTP")
        samples = asyncio.run(_measure(url, token, ca, runs))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    every = [s for values in samples.values() for s in values]
    return {
        "nodes": nodes, "runs": runs, "calls": len(every),
        "p50": statistics.median(every), "p95": percentile(every, 0.95),
        "per_query": {q: {"p50": statistics.median(v), "p95": percentile(v, 0.95)}
                      for q, v in samples.items()},
    }


def _wait(url: str, ca: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=5) as c:
                if c.get(f"{url}/api/v1/whoami").status_code == 401:
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not start in {timeout} s")


def run(ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    nodes = ctx.options.mcp_nodes
    figures = measure(ctx.workdir("mcp"), nodes, ctx.options.mcp_runs, ctx)
    rows = [
        Row("mcp", f"query tool over streamable HTTP, {nodes} nodes, agent token: p95",
            figures["p95"], "s", budget=f"<= {BUDGET * 1000:.0f} ms",
            passed=check(figures["p95"], at_most=BUDGET),
            note=f"{figures['calls']} calls, {len(QUERIES)} queries; p50 "
                 f"{figures['p50'] * 1000:.1f} ms; TLS, token check, audit included"),
    ]
    return rows, figures


def main(argv: Sequence[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="steward-mcp-bench-") as scratch:
        figures = measure(Path(scratch), options.nodes, options.runs)
    print(f"query tool over streamable HTTP, {figures['nodes']} nodes, {figures['calls']} "
          f"calls: p50 {figures['p50'] * 1000:.1f} ms, p95 {figures['p95'] * 1000:.1f} ms "
          f"(budget {BUDGET * 1000:.0f} ms)")
    for query, figure in figures["per_query"].items():
        print(f"  p95 {figure['p95'] * 1000:6.1f} ms  {query}")
    return 0 if figures["p95"] <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
