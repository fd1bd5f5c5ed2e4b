"""The application served for real (uvicorn, TLS, loopback) in a thread of the test process.

One data directory, one fresh database and one server per backend per test module; tests
use distinct node names, so they share it without interfering. In-process keeps these API
tests quick; tests/e2e runs the server as its own process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from steward.secrets.store import SecretStore
from steward.server.app import create_app
from steward.server.config import ServerConfig, load_config
from steward.server.init import init_data_dir
from tests.e2e.harness import SECRET_VALUE, database_url, free_port, write_repo
from tests.server.serving import serving


@dataclass
class Env:
    config: ServerConfig
    client: httpx.Client
    admin_token: str

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def join_token(self, **body: object) -> str:
        response = self.client.post("/api/v1/tokens", headers=self.headers(),
                                    json={"kind": "join", "name": "t", **body})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def enroll(self, certname: str) -> str:
        """A node credential, by join token."""
        response = self.client.post("/api/v1/enroll", json={"certname": certname},
                                    headers=self.headers(self.join_token()))
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def upload_facts(self, certname: str, token: str, **facts: object) -> None:
        response = self.client.put(f"/api/v1/nodes/{certname}/facts", headers=self.headers(token),
                                   json={"values": {"os": {"family": "Debian"}, **facts}})
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    label = request.module.__name__.rsplit(".", 1)[-1]
    with database_url(backend, tmp, label) as url:
        result = init_data_dir(tmp / "data", database_url=url, repo=write_repo(tmp / "repo"),
                               versioned=False, port=free_port())
        SecretStore(result.config.data_dir).set("app_token", SECRET_VALUE)
        # Short long-polls keep the tests quick; the behaviour is the same.
        config = load_config(tmp / "data").with_overrides(long_poll_seconds=2.0)
        with serving(create_app(config), config) as client:
            yield Env(config, client, result.admin_token)


@pytest.fixture
def repo(env: Env) -> Path:
    return env.config.repo_path
