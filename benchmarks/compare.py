"""Old against new, in the same run: the benchmarks of two commits, taking turns.

    .venv/bin/python benchmarks/compare.py --base HEAD~1 -- --only store impact --no-peers
    .venv/bin/python benchmarks/compare.py --base 999a33d --rounds 3 -- --only compile

Checks the base commit out into a worktree under the benchmark cache (with its own
``scripts/bootstrap.sh`` environment), then runs ``benchmarks/run.py`` of the base and of
this working copy alternately, ``--rounds`` times each, with the options after ``--``. Both
measure the same machine in the same minutes, so their ratio is what a change cost or won,
not the machine's noise of another day. Prints, per figure: the base's and this copy's
medians, their ratio, and the worst round's ratio (judge that one); writes every sample to
``benchmarks/results/compare.json``. Exits 1 when any figure's worst ratio is past
``--tolerance`` in the bad direction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, cache_dir

ROOT = Path(__file__).resolve().parents[1]
#: Units where more is better; every other figure is a time or a size (less is better).
HIGHER_IS_BETTER = ("/s", "per", "x")


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def base_tree(rev: str) -> Path:
    """A worktree of ``rev`` with its own environment, made once per commit and kept."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = cache_dir() / "compare" / sha[:12]
    if not (tree / ".venv" / "bin" / "python").exists():
        if not tree.exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            _git("worktree", "add", "--detach", str(tree), sha)
        subprocess.run(["bash", "scripts/bootstrap.sh"], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
    return tree


def run_once(tree: Path, args: list[str], output: Path) -> list[dict[str, Any]]:
    """One ``benchmarks/run.py`` of ``tree``; its rows (exit 1, a missed budget, is data)."""
    python = tree / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python), "benchmarks/run.py", *args, "--quiet",
                           "--output", str(output)], cwd=tree, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"compare: {tree}: benchmarks/run.py exited {proc.returncode}")
    rows: list[dict[str, Any]] = json.loads(output.read_text(encoding="utf-8"))["rows"]
    return rows


def _better_when_higher(unit: str) -> bool:
    return any(marker in unit for marker in HIGHER_IS_BETTER)


def compare(samples: dict[str, list[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per (benchmark, figure): medians, ratio new/base and the worst round's ratio."""
    figures: dict[tuple[str, str], dict[str, list[float]]] = {}
    units: dict[tuple[str, str], str] = {}
    for side, rounds in samples.items():
        for rows in rounds:
            for row in rows:
                if row["value"] is None:
                    continue
                key = (row["benchmark"], row["figure"])
                units[key] = row["unit"]
                figures.setdefault(key, {"base": [], "new": []})[side].append(row["value"])
    result = []
    for key, sides in sorted(figures.items()):
        base, new = sides["base"], sides["new"]
        if not base or not new or min(base) <= 0 or min(new) <= 0:
            continue
        higher = _better_when_higher(units[key])
        ratios = [n / b for b, n in zip(base, new, strict=False)]
        worst = min(ratios) if higher else max(ratios)
        result.append({"benchmark": key[0], "figure": key[1], "unit": units[key],
                       "base": statistics.median(base), "new": statistics.median(new),
                       "ratio": statistics.median(new) / statistics.median(base),
                       "worst_ratio": worst, "higher_is_better": higher})
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (default 2)")
    parser.add_argument("--tolerance", type=float, default=1.25,
                        help="worst acceptable ratio in the bad direction (default 1.25)")
    options = parser.parse_args(argv)
    trees = {"base": base_tree(options.base), "new": ROOT}
    samples: dict[str, list[list[dict[str, Any]]]] = {"base": [], "new": []}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for turn in range(options.rounds):
        for side in ("base", "new") if turn % 2 == 0 else ("new", "base"):
            print(f"compare: round {turn + 1}, {side} ({trees[side]})", file=sys.stderr)
            output = RESULTS_DIR / f"compare-{side}-{turn}.json"
            samples[side].append(run_once(trees[side], passthrough, output))
    figures = compare(samples)
    bad = []
    print(f"{'benchmark':<10} {'figure':<58} {'base':>12} {'new':>12} {'ratio':>7} "
          f"{'worst':>7}")
    for f in figures:
        print(f"{f['benchmark']:<10} {f['figure'][:58]:<58} {f['base']:>12.4g} "
              f"{f['new']:>12.4g} {f['ratio']:>7.3f} {f['worst_ratio']:>7.3f}")
        worse = (1 / f["worst_ratio"]) if f["higher_is_better"] else f["worst_ratio"]
        if worse > options.tolerance:
            bad.append(f)
    document = {"base": _git("rev-parse", options.base), "new": _git("rev-parse", "HEAD"),
                "dirty": bool(_git("status", "--porcelain")), "options": passthrough,
                "rounds": options.rounds, "figures": figures, "samples": samples}
    (RESULTS_DIR / "compare.json").write_text(json.dumps(document, indent=2, sort_keys=True)
                                              + "\n", encoding="utf-8")
    for f in bad:
        print(f"compare: {f['benchmark']} {f['figure']}: worst ratio {f['worst_ratio']:.3f} "
              f"is past the tolerance {options.tolerance}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
