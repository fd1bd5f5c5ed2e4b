"""The store's one error: a document given to it is malformed."""

from __future__ import annotations

from steward.errors import StewardError


class StoreError(StewardError):
    """A document given to the store is malformed; the message names the field."""
