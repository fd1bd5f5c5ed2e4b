"""The report spool: durable, oldest first, deleted only after the server took a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steward.agent.errors import Refused, RequestFailed, ServerUnavailable
from steward.agent.spool import Spool


def _report(n: int) -> dict[str, Any]:
    return {"transaction_uuid": f"uuid-{n}", "node": "n1"}


def test_reports_queue_in_order_and_leave_no_temporary_files(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for n in range(5):
        spool.put(_report(n))
    pending = spool.pending()
    assert [json.loads(p.read_text())["transaction_uuid"] for p in pending] == \
        [f"uuid-{n}" for n in range(5)]
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [p.name for p in pending]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pending)


def test_delivery_is_oldest_first_and_deletes_only_what_was_taken(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for n in range(4):
        spool.put(_report(n))
    sent: list[str] = []

    def send(report: dict[str, Any]) -> None:
        if len(sent) == 2:
            raise ServerUnavailable("connection refused")
        sent.append(report["transaction_uuid"])

    first = spool.deliver(send)
    assert first.delivered == ["uuid-0", "uuid-1"]
    assert first.remaining == 2
    assert first.stopped == "connection refused"
    assert [json.loads(p.read_text())["transaction_uuid"] for p in spool.pending()] == \
        ["uuid-2", "uuid-3"]
    second = spool.deliver(lambda report: sent.append(report["transaction_uuid"]))
    assert second.delivered == ["uuid-2", "uuid-3"]
    assert spool.pending() == []


def test_a_refused_credential_keeps_every_report(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(_report(0))

    def send(_report: dict[str, Any]) -> None:
        raise Refused("401 token revoked", status=401)

    outcome = spool.deliver(send)
    assert outcome.delivered == []
    assert len(spool.pending()) == 1


@pytest.mark.parametrize("status", [400, 422])
def test_a_report_the_server_will_never_take_is_set_aside_not_lost(
    tmp_path: Path, status: int
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(_report(0))
    spool.put(_report(1))
    (tmp_path / "spool" / "00000000000000000001-garbage.json").write_text("{not json")

    def send(report: dict[str, Any]) -> None:
        if report["transaction_uuid"] == "uuid-0":
            raise RequestFailed("malformed", status=status)

    outcome = spool.deliver(send)
    assert outcome.delivered == ["uuid-1"]
    assert len(outcome.rejected) == 2
    assert spool.pending() == []
    assert len(list(spool.rejected_dir.iterdir())) == 2


def test_other_client_errors_stop_delivery(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.put(_report(0))

    def send(_report: dict[str, Any]) -> None:
        raise RequestFailed("409 conflict", status=409)

    assert spool.deliver(send).remaining == 1
    assert len(spool.pending()) == 1
