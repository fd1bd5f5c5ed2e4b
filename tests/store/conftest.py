from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.store import Store
from tests.store.backends import BACKENDS, Clock, open_store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(backend: str, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with open_store(backend, tmp_path, clock) as opened:
        yield opened
