"""Many hosts at once: one call per target under a concurrency limit, each host's error
its own outcome, results in the targets' order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from steward.errors import StewardError, UsageError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What one host's call gave: its value, or the user-facing error that stopped it."""

    target: T
    value: R | None = None
    error: StewardError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def run_many(
    targets: Iterable[T], fn: Callable[[T], Awaitable[R]], limit: int
) -> list[Outcome[T, R]]:
    """Call ``fn`` for every target, at most ``limit`` at a time, in the targets' order.

    One unreachable host must not stop a push to the others, so a StewardError becomes that
    host's outcome; any other exception is a bug and propagates.
    """
    if limit < 1:
        raise UsageError(f"concurrency limit must be at least 1, not {limit}")
    gate = asyncio.Semaphore(limit)

    async def one(target: T) -> Outcome[T, R]:
        async with gate:
            try:
                return Outcome(target, value=await fn(target))
            except StewardError as exc:
                return Outcome(target, error=exc)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(target)) for target in targets]
    return [task.result() for task in tasks]
