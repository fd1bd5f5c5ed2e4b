"""What can stop an agent run; each is a :class:`StewardError` with a message for people."""

from __future__ import annotations

from steward.errors import StewardError


class AgentError(StewardError):
    """The agent cannot do what it was asked (bad flags, unreadable state, no catalog)."""


class ServerUnavailable(AgentError):
    """The server cannot be reached, or answered 5xx: the agent falls back to its cache."""


class ServerUntrusted(ServerUnavailable):
    """The server's certificate does not verify against the CA: never trust, use the cache."""


class RequestFailed(AgentError):
    """The server answered with a 4xx error; ``status`` says which."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class Refused(RequestFailed):
    """401/403: the credential is unknown, expired, revoked, or not allowed to do this."""


class NotEnrolled(AgentError):
    """The node has no credential yet (its enrollment request awaits an operator)."""
