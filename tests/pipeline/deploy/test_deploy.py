"""Batched rollout: batch planning, the halt rule, the environment lock, on both backends.

The rollout talks to machines through the ``NodeRunner`` seam; here a scripted runner plays
the nodes (like structlog's capture helpers) so the halt semantics are exact. The real
runner (run-now requests and stored reports) is exercised end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from steward.pipeline.deploy.rollout import (
    DeployError,
    Deployments,
    EnvironmentLocked,
    NodeResult,
    Strategy,
)
from steward.pipeline.schema import create_all
from tests.e2e.harness import database_url


@pytest.mark.parametrize(
    ("nodes", "canary", "batch_size", "expected"),
    [
        (5, 1, "2", [[0], [1, 2], [3, 4]]),
        (5, 0, "2", [[0, 1], [2, 3], [4]]),
        (10, 1, "25%", [[0], [1, 2, 3], [4, 5, 6], [7, 8, 9]]),
        (3, 5, "1", [[0, 1, 2]]),
        (1, 1, "50%", [[0]]),
        (0, 1, "1", []),
        (4, 1, "100%", [[0], [1, 2, 3]]),
    ],
)
def test_batches(nodes: int, canary: int, batch_size: str, expected: list[list[int]]) -> None:
    names = [f"n{i}" for i in range(nodes)]
    got = Strategy(canary=canary, batch_size=batch_size).batches(names)
    assert got == [[names[i] for i in batch] for batch in expected]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": "0"}, "positive count"),
        ({"batch_size": "150%"}, "between 0% and 100%"),
        ({"batch_size": "lots"}, "positive count"),
        ({"max_failures": 0}, "max_failures must be at least 1"),
        ({"canary": -1}, "canary must be 0 or more"),
        ({"surge": 1}, "unknown field(s) surge"),
    ],
)
def test_invalid_strategy(fields: dict[str, object], message: str) -> None:
    with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Strategy.from_json(fields)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployments(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployments]:
    with database_url(str(request.param), tmp_path, "deploy") as url:
        engine = create_engine(url)
        create_all(engine)
        try:
            yield Deployments(engine)
        finally:
            engine.dispose()


class ScriptedRunner:
    """Nodes that succeed unless listed as failing; records the order of runs."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.started: list[str] = []

    async def start(self, certname: str, *, requested_by: str) -> datetime:
        assert requested_by.startswith("deployment dep-")
        self.started.append(certname)
        return datetime.now(UTC)

    async def outcome(self, certname: str, *, since: datetime, commit: str,
                      timeout: float) -> NodeResult:
        await asyncio.sleep(0)
        if certname in self.failing:
            return NodeResult(certname, "failed", exit_code=4, detail="run failed")
        return NodeResult(certname, "succeeded", exit_code=2)


def _start(d: Deployments, nodes: list[str], env: str = "production",
           **strategy: object) -> str:
    return d.start(change_id="chg-1", environment=env, commit="a" * 40, nodes=nodes,
                   strategy=Strategy.from_json(strategy), started_by="human:alice").id


def test_rollout_succeeds_and_releases_the_lock(deployments: Deployments) -> None:
    names = [f"web{i}" for i in range(1, 6)]
    dep = _start(deployments, names, batch_size="2")
    runner = ScriptedRunner(set())
    final = asyncio.run(deployments.run(dep, runner))
    assert final.state == "succeeded"
    assert final.counts()["succeeded"] == 5
    assert runner.started[0] == "web1"  # the canary runs first
    assert [n["batch"] for n in final.nodes] == [0, 1, 1, 2, 2]
    # The lock is free again.
    _start(deployments, names)


def test_halt_when_failures_reach_the_threshold(deployments: Deployments) -> None:
    names = [f"web{i}" for i in range(1, 8)]
    dep = _start(deployments, names, batch_size="3", max_failures=1)
    runner = ScriptedRunner({"web3"})
    final = asyncio.run(deployments.run(dep, runner))
    assert final.state == "halted"
    assert "batch 2" in (final.detail or "")
    assert "web3" in (final.detail or "")
    statuses = {n["certname"]: n["status"] for n in final.nodes}
    assert statuses["web1"] == "succeeded"
    assert statuses["web3"] == "failed"
    # Later batches were never asked to run.
    assert {"web5", "web6", "web7"}.isdisjoint(runner.started)
    assert statuses["web5"] == statuses["web7"] == "skipped"
    assert final.failed_nodes == ["web3"]


def test_failures_below_the_threshold_continue(deployments: Deployments) -> None:
    names = [f"web{i}" for i in range(1, 8)]
    dep = _start(deployments, names, batch_size="3", max_failures=2)
    final = asyncio.run(deployments.run(dep, ScriptedRunner({"web2", "web6"})))
    assert final.state == "succeeded"  # one failure per batch, threshold two
    assert final.counts() == {"pending": 0, "running": 0, "succeeded": 5, "failed": 2,
                              "skipped": 0}


def test_canary_failure_halts_everything(deployments: Deployments) -> None:
    dep = _start(deployments, ["a", "b", "c"], batch_size="1")
    runner = ScriptedRunner({"a"})
    final = asyncio.run(deployments.run(dep, runner))
    assert final.state == "halted"
    assert "canary batch" in (final.detail or "")
    assert runner.started == ["a"]


def test_one_deployment_per_environment(deployments: Deployments) -> None:
    first = _start(deployments, ["a"])
    with pytest.raises(EnvironmentLocked, match=f"locked by deployment {first} of chg-1"):
        _start(deployments, ["b"])
    # Another environment is independent.
    _start(deployments, ["b"], env="staging")
    deployments.finish(first, "failed", "test")
    _start(deployments, ["a"])
