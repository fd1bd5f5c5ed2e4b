"""The one clock: a manual clock moves only when told to, and every timestamp has one form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from steward.clock import SYSTEM_CLOCK, ManualClock, iso, utcnow

START = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_the_system_clock_is_aware_utc() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is UTC
    assert before <= now <= utcnow()


def test_a_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock(START)
    assert clock.now() == clock.now() == START
    assert clock.advance(1.5) == START + timedelta(seconds=1.5) == clock.now()
    assert clock.advance(timedelta(hours=1)) == START + timedelta(hours=1, seconds=1.5)


def test_iso_is_utc_with_a_z() -> None:
    assert iso(START) == "2024-05-01T12:00:00.123456Z"
    assert iso(START, timespec="milliseconds") == "2024-05-01T12:00:00.123Z"
    assert iso(START.replace(microsecond=0)) == "2024-05-01T12:00:00Z"
    # Another offset is converted; a naive time is taken as UTC (SQLite returns them so).
    assert iso(START.astimezone(timezone(timedelta(hours=2)))) == "2024-05-01T12:00:00.123456Z"
    assert iso(START.replace(tzinfo=None)) == "2024-05-01T12:00:00.123456Z"
    assert iso(None) is None
