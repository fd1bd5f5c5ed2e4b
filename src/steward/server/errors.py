"""User-facing failures of the control plane; each one is a :class:`StewardError`.

What the server says about a failure (a REST error body, a log line) is redacted by the one
rule of :mod:`steward.catalog.redaction`: :func:`public_message` is the text to send.
"""

from __future__ import annotations

from typing import Final

from steward.catalog.redaction import scrub_text
from steward.errors import StewardError

#: uvicorn's loggers, whose handlers get the redacting filter in ``steward server``.
UVICORN_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def public_message(exc: BaseException | str) -> str:
    """The message of ``exc`` as a REST error body or a log line may carry it: without the
    tokens, URL passwords and ``password=...`` values it may spell out (an error often
    quotes what the caller sent)."""
    return scrub_text(exc if isinstance(exc, str) else str(exc))


class ConfigError(StewardError):
    """The data directory, its configuration or the database URL cannot be used."""


class EnrollmentError(StewardError):
    """An enrollment request cannot be accepted (name taken, token expired, bad name)."""


class ApiError(StewardError):
    """The server answered a command-line request with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
