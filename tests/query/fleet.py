"""The seeded fleet of the query tests: the same one the assistant's evaluation asks about.

It lives in ``steward.assistant.fleet`` (``steward eval assistant`` builds it without the test
suite); the tests compute their expected answers from its ``NodeSpec``s, not from the store.
"""

from __future__ import annotations

from steward.assistant.fleet import (
    CODE_A,
    CODE_B,
    DEACTIVATED,
    FAILED,
    FIRST_RUN,
    MONDAY,
    SUNDAY,
    Fleet,
    NodeSpec,
    seed,
)

__all__ = ["CODE_A", "CODE_B", "DEACTIVATED", "FAILED", "FIRST_RUN", "MONDAY", "SUNDAY", "Fleet",
           "NodeSpec", "seed"]
