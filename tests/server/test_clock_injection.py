"""The server takes "now" from the clock it is given, not from the system.

A server built on a :class:`ManualClock` stopped at an instant no real clock shows is driven
through enrollment, a facts upload, token creation and a run-now request; every time it
records is that instant, so each one came from the injected clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from steward.clock import ManualClock
from steward.server import db
from steward.server.app import create_app
from steward.server.services import Services, build_services
from steward.store import db as store_db
from tests.e2e.harness import free_port
from tests.server.conftest import Env
from tests.server.serving import serving

#: Odd on purpose: no field of it is zero, and it is years away from the test's real time.
INSTANT = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


def _at(stamp: Any) -> datetime:
    """A recorded time as an aware UTC datetime (SQLite hands back naive ones)."""
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert isinstance(stamp, datetime), stamp
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


@pytest.fixture
def frozen(env: Env) -> Iterator[tuple[Env, Services]]:
    """The module's data directory and database, served again on a stopped ManualClock."""
    config = env.config.with_overrides(port=free_port())
    services = build_services(config, migrate_schema=False, clock=ManualClock(INSTANT))
    try:
        with serving(create_app(config, services=services), config) as client:
            yield Env(config, client, env.admin_token), services
    finally:
        services.close()


def test_recorded_times_come_from_the_injected_clock(frozen: tuple[Env, Services]) -> None:
    served, services = frozen
    certname = "clock-injected.example.com"

    join = served.client.post("/api/v1/tokens", headers=served.headers(),
                              json={"kind": "join", "name": "clock-join"})
    assert join.status_code == 201, join.text
    assert _at(join.json()["created_at"]) == INSTANT
    assert _at(join.json()["expires_at"]) == INSTANT.replace(day=3)  # the default 24 h

    enrolled = served.client.post("/api/v1/enroll", json={"certname": certname},
                                  headers=served.headers(str(join.json()["token"])))
    assert enrolled.status_code == 200, enrolled.text
    node_token = str(enrolled.json()["token"])
    served.upload_facts(certname, node_token)

    ran = served.client.post(f"/api/v1/nodes/{certname}/run", headers=served.headers())
    assert ran.status_code == 202, ran.text

    node = served.client.get(f"/api/v1/nodes/{certname}", headers=served.headers())
    assert node.status_code == 200, node.text
    for key in ("requested_at", "approved_at", "last_seen_at"):
        assert _at(node.json()[key]) == INSTANT, key

    tokens = served.client.get("/api/v1/tokens", headers=served.headers()).json()
    minted = [t for t in tokens if t["certname"] == certname and t["kind"] == "node"]
    assert [_at(t["created_at"]) for t in minted] == [INSTANT]
    used = [t for t in tokens if t["id"] == join.json()["id"]]
    assert [_at(t["last_used_at"]) for t in used] == [INSTANT]

    r = db.run_requests.c
    with store_db.reading(services.engine) as conn:
        requested = conn.execute(select(r.requested_at).where(
            r.id == int(ran.json()["request_id"]))).scalar_one()
    assert _at(requested) == INSTANT

    audit = served.client.get("/api/v1/audit", headers=served.headers(),
                              params={"limit": 1000}).json()
    mine = [a for a in audit if a["action"] in ("token.create", "node.run")
            and a["target"] in ("join:clock-join", certname)]
    assert {a["action"] for a in mine} == {"token.create", "node.run"}
    assert {_at(a["at"]) for a in mine} == {INSTANT}
