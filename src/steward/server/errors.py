"""User-facing failures of the control plane; each one is a :class:`StewardError`."""

from __future__ import annotations

from steward.errors import StewardError


class ConfigError(StewardError):
    """The data directory, its configuration or the database URL cannot be used."""


class EnrollmentError(StewardError):
    """An enrollment request cannot be accepted (name taken, token expired, bad name)."""


class NotFoundError(StewardError):
    """The named node, token or request does not exist."""


class ApiError(StewardError):
    """The server answered a command-line request with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
