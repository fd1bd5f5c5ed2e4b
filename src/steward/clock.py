"""The one clock: what "now" is, injected where time decides something, and one ISO form.

Token expiry, change and deployment timestamps, the audit log and the store all take a
:class:`Clock` so a test moves time forward instead of sleeping. Standard library only: the
node side uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, overload


class Clock(Protocol):
    """Something that says what time it is, always an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


#: The real clock; stateless, so one instance serves everyone.
SYSTEM_CLOCK: Clock = SystemClock()


@dataclass
class ManualClock:
    """A clock that moves only when told to: tests' and simulations' time."""

    current: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (seconds, or a timedelta); returns the new now."""
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.current


def utcnow() -> datetime:
    """The real time, for code that has no clock of its own to ask."""
    return datetime.now(UTC)


@overload
def iso(value: datetime, *, timespec: str = ...) -> str: ...
@overload
def iso(value: None, *, timespec: str = ...) -> None: ...
@overload
def iso(value: datetime | None, *, timespec: str = ...) -> str | None: ...


def iso(value: datetime | None, *, timespec: str = "auto") -> str | None:
    """``2024-05-01T12:00:00.123456Z``: UTC with a ``Z``, the form every document uses.

    A naive datetime is taken as UTC (SQLite returns them so); ``timespec`` is
    :meth:`datetime.isoformat`'s (``"milliseconds"`` for reports and agent timestamps).
    """
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec=timespec).replace("+00:00", "Z")
