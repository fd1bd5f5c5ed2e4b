"""The change state machine: which state may follow which, and under what name.

Pure data and functions, so the rules are stated once and property-tested apart from the
database. The contract is the diagram in ``docs/pipeline.md``; this table is its exact form::

    proposed  --analyse-->  analysed          (impact report recorded)
    analysed  --analyse-->  analysed          (re-analysed, e.g. with --live)
    approved  --analyse-->  analysed          (re-analysed: approvals must be checked again)
    analysed  --approve-->  approved          (approval rules met)
    approved  --deploy--->  deploying
    deploying --succeed-->  deployed
    deploying --fail----->  failed
    deploying --rollback->  rolled_back       (automatic rollback on halt)
    failed    --rollback->  rolled_back
    deployed  --rollback->  rolled_back       (a deployed change found bad later)
    proposed | analysed | approved --reject--> rejected
    proposed | analysed | approved --amend---> proposed   (head changed: impact and
                                                           approvals void; only update_head)

``rejected`` and ``rolled_back`` are terminal: nothing follows them. Two additions to the
diagram are deliberate: a *deployed* change can still be rolled back (the common case of a
change found bad after it succeeded), and an *approved* change can still be rejected before
it deploys (withdrawn).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from steward.pipeline.changes.errors import ChangeError

ChangeState = Literal[
    "proposed", "analysed", "approved", "deploying", "deployed", "failed", "rolled_back",
    "rejected",
]
ChangeKind = Literal["normal", "rollback", "promotion"]

STATES: Final[tuple[ChangeState, ...]] = get_args(ChangeState)
KINDS: Final[tuple[ChangeKind, ...]] = get_args(ChangeKind)

#: (from, to) -> the action recorded in the change's history.
TRANSITIONS: Final[dict[tuple[ChangeState, ChangeState], str]] = {
    ("proposed", "analysed"): "analyse",
    ("analysed", "analysed"): "analyse",
    ("approved", "analysed"): "analyse",
    ("analysed", "approved"): "approve",
    ("approved", "deploying"): "deploy",
    ("deploying", "deployed"): "succeed",
    ("deploying", "failed"): "fail",
    ("deploying", "rolled_back"): "rollback",
    ("failed", "rolled_back"): "rollback",
    ("deployed", "rolled_back"): "rollback",
    ("proposed", "rejected"): "reject",
    ("analysed", "rejected"): "reject",
    ("approved", "rejected"): "reject",
    ("proposed", "proposed"): "amend",
    ("analysed", "proposed"): "amend",
    ("approved", "proposed"): "amend",
}

#: States from which a change may be amended (a new head) or rejected.
OPEN_STATES: Final[frozenset[ChangeState]] = frozenset({"proposed", "analysed", "approved"})
#: States that nothing follows.
TERMINAL_STATES: Final[frozenset[ChangeState]] = frozenset(
    s for s in STATES if not any(frm == s for frm, _to in TRANSITIONS)
)
#: States of a change whose commits may be in its environment's branch (deploy merged them).
MERGED_STATES: Final[frozenset[ChangeState]] = frozenset({"deploying", "deployed", "failed"})


def next_states(state: ChangeState) -> tuple[ChangeState, ...]:
    """The states that may follow ``state``, in the order of :data:`STATES`."""
    return tuple(s for s in STATES if (state, s) in TRANSITIONS)


def transition_targets(state: ChangeState) -> tuple[ChangeState, ...]:
    """What a state change may ask for: :func:`next_states` without the amendment edge
    (a change goes back to ``proposed`` only by getting a new head)."""
    return tuple(s for s in next_states(state) if s != "proposed")


def action_for(current: ChangeState, target: ChangeState) -> str | None:
    """The history action of the move, or None when the state machine forbids it."""
    return TRANSITIONS.get((current, target))


def parse_state(value: str, *, field: str = "state") -> ChangeState:
    """Check a state name coming from a user (CLI flag, query parameter)."""
    if value not in STATES:
        raise ChangeError(
            f"{field}: unknown change state {value!r}; known: {', '.join(STATES)}")
    return value


def describe_next(state: ChangeState) -> str:
    """Words for an error message: what may follow ``state``."""
    if state in TERMINAL_STATES:
        return f"'{state}' is final: nothing follows it"
    return "allowed next: " + ", ".join(transition_targets(state))
