"""Agentless push: ship the standard-library node engine to a host and run it there.

``steward.transport.bundle`` packs the node side (``steward.catalog``, ``steward.engine``,
``steward.facts``) into one deterministic zipapp; ``steward.transport.ssh`` uploads it over
SSH, runs ``facts`` or ``apply`` with the host's own ``python3`` and brings the JSON back.
This module stays import-light (no asyncssh) so that building a bundle costs nothing extra.
"""

from __future__ import annotations

from steward.errors import StewardError


class TransportError(StewardError):
    """A host could not be reached, trusted, logged into or run on; the message names it."""
