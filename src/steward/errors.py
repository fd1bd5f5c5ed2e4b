"""The exception tree for user-facing failures.

Every error a user can cause derives from :class:`StewardError` and carries a message that
names the file, line, field or identity at fault. Interfaces print ``str(err)`` and exit
non-zero; they never print a traceback for these. Standard library only, because the
node-side engine raises them too.
"""

from __future__ import annotations

from typing import Any


class StewardError(Exception):
    """A failure whose message is meant for the user, not a programmer."""

    exit_code = 1

    def __init__(self, message: str, *, location: str | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class UsageError(StewardError):
    """A command was called with arguments that cannot work (missing file, bad flag value)."""

    exit_code = 64


class CatalogError(StewardError):
    """A catalog document is malformed or of an unsupported version."""


class SecretError(StewardError):
    """A secret is missing, the secrets store cannot be opened, or its key is wrong."""


def describe_value(value: Any) -> str:
    """A short description of a value's type and, for scalars, the value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


class NotFoundError(StewardError):
    """The named node, token, change or request does not exist."""
