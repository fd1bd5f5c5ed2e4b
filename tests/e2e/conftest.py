"""One real server process per backend per test module, on a free loopback port with TLS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.harness import Server, database_url, free_port, init_data_dir
from tests.transport.conftest import Keys
from tests.transport.sshd import generate_key


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(backend: str, request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"e2e-{backend}")
    label = request.module.__name__.rsplit(".", 1)[-1]
    with database_url(backend, tmp, label) as url:
        port = free_port()
        data, token = init_data_dir(tmp, url, port=port)
        srv = Server(data, token, port=port)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def join_token(server: Server) -> str:
    created = server.api("POST", "/api/v1/tokens",
                         json={"kind": "join", "name": "e2e", "expires_in": 600})
    return str(created["token"])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    work = tmp_path_factory.mktemp("keys")
    return Keys(client=generate_key(work / "client", "steward-server"),
                stranger=generate_key(work / "stranger", "stranger"))
