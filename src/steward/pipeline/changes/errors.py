"""Errors of change records: each names the change, state, commit or file at fault.

``http_status`` lets the REST layer answer with the right code without a table of its own
(404 unknown change, 409 conflict with the current state or branch, 422 invalid proposal).
"""

from __future__ import annotations

from steward.errors import NotFoundError, StewardError


class ChangeError(StewardError):
    """A change cannot be proposed, read or moved as asked."""

    http_status = 400


class ChangeNotFound(ChangeError, NotFoundError):
    """No change has that id ("no change 'chg-9'")."""

    http_status = 404


class InvalidProposal(ChangeError):
    """The proposal is malformed, edits nothing, or its head does not load (file:line)."""

    http_status = 422


class StaleProposal(ChangeError):
    """The environment moved since the proposal's base and touched the same files."""

    http_status = 409


class IllegalTransition(ChangeError):
    """The state machine forbids the move; the message names the allowed next states."""

    http_status = 409


class ChangeConflict(ChangeError):
    """Someone else moved the change (state or head) between our read and our write."""

    http_status = 409
