from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from steward.store import Store
from tests.query.fleet import Fleet, seed
from tests.store.backends import BACKENDS, Clock, open_store


@dataclass
class Seeded:
    store: Store
    fleet: Fleet
    backend: str


@pytest.fixture(scope="session", params=BACKENDS)
def seeded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One seeded fleet per backend for the whole session (queries never write)."""
    clock = Clock()
    backend = str(request.param)
    with open_store(backend, tmp_path_factory.mktemp(f"fleet-{backend}"), clock) as store:
        yield Seeded(store, seed(store, clock), backend)
