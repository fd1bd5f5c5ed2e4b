"""A realistic large node for scale tests and throughput measurements.

Copies the example repository and gives one web node enough sites (each a directory, an index
file and a templated vhost) to reach the requested resource count, so the benchmark exercises
templates, for_each, data lookups, autorequires and relationships like a real fleet member.
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Resources web nodes get besides the per-site ones (base + nginx + monitoring).
_FIXED = 25
_PER_SITE = 3


def large_repo(target: Path, node: str = "web1", resources: int = 300) -> Path:
    """Write a copy of examples/repo where ``node`` compiles to about ``resources`` resources."""
    repo = target / "repo"
    shutil.copytree(EXAMPLES / "repo", repo)
    sites = max(1, (resources - _FIXED) // _PER_SITE)
    lines = [f"base::motd_message: {node} carries {sites} sites", "nginx::sites:"]
    lines += [f"  - site{index:03d}.example.com" for index in range(sites)]
    (repo / "data" / "nodes" / f"{node}.yaml").write_text("\n".join(lines) + "\n")
    return repo
