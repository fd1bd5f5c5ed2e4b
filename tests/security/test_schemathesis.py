"""Issue 10.3: schemathesis over the server's own OpenAPI document: no input gets a 5xx.

A real ``steward server`` (versioned repository, built-in policies, one enrolled node), its
OpenAPI document read from ``/openapi.json`` with an admin token, and every operation in it
given schemathesis-generated requests, valid ones (positive) and invalid ones (negative), as
the admin: every answer is below 500. Bounded (a few examples per operation, derandomized) so
it stays a suite test; on PostgreSQL the same run over the same operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.harness import Server, database_url, pipeline_server, write_repo

#: Examples per operation and mode: enough to reach every parameter's edge cases that
#: schemathesis's own strategies favour, few enough for the suite's budget.
EXAMPLES = 6


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"schemathesis-{backend}")
    with database_url(backend, tmp, "schemathesis") as url, \
            pipeline_server(tmp, write_repo(tmp / "repo"), url) as srv:
        join = srv.api("POST", "/api/v1/tokens",
                       json={"kind": "join", "name": "st", "expires_in": 600})["token"]
        with srv.client(join) as client:
            assert client.post("/api/v1/enroll", json={"certname": "web1"}).status_code == 200
        yield srv


def _run(operation: Any, mode: GenerationMode, server: Server,
         session: requests.Session) -> list[str]:
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: Any) -> None:
        response = case.call(base_url=server.url, session=session, timeout=60,
                             verify=str(server.ca))
        if response.status_code >= 500:
            failures.append(f"{operation.label} ({mode.value}): {response.status_code} for "
                            f"path {case.path_parameters} query {case.query} body "
                            f"{str(case.body)[:200]}: {response.text[:300]}")

    # Unsatisfiable: schemathesis found no invalid input for this operation (nothing to negate).
    with contextlib.suppress(Unsatisfiable):
        exercise()
    return failures


def test_no_generated_request_gets_a_server_error(server: Server) -> None:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify (psf/requests#3829)
    session.verify = str(server.ca)
    session.headers["Authorization"] = f"Bearer {server.admin_token}"
    document = session.get(f"{server.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_run(operation, mode, server, session))
    assert operations >= 30, operations  # the whole document, not a corner of it
    assert failures == [], "\n".join(failures)
    assert "Traceback" not in server.log()
