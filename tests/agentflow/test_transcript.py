"""The transcript reaches the audit sink complete, in order, once — whenever the change id
becomes known (the planner's steps come before the proposal exists)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from steward.agentflow import Step, Transcript
from steward.agentflow.flow import EXIT_FAILED, EXIT_NEEDS_APPROVAL, FlowResult, _clip

steps = st.lists(st.builds(Step, st.sampled_from(["planner", "validator"]),
                           st.sampled_from(["p", "v"]), st.sampled_from(["prompt", "message"]),
                           st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
                 max_size=12)


@given(steps, st.integers(min_value=0, max_value=12))
def test_every_step_reaches_the_sink_once_in_order(all_steps: list[Step], at: int) -> None:
    received: list[tuple[str, Step]] = []
    transcript = Transcript(lambda change, step: received.append((change, step)))
    for i, step in enumerate(all_steps):
        if i == at:
            transcript.bind("chg-1")
        transcript.add(step)
    transcript.bind("chg-1")
    transcript.bind("chg-2")  # bound once: a later id changes nothing
    assert received == [("chg-1", s) for s in all_steps]
    assert transcript.steps == all_steps


@given(st.text(max_size=10000))
def test_clipped_results_stay_small(text: str) -> None:
    clipped = _clip({"content": text})
    assert len(str(clipped)) <= 4200 or clipped == {"content": text}


def test_exit_codes() -> None:
    assert FlowResult("succeeded", "chg-1").exit_code == 0
    assert FlowResult("needs_approval", "chg-1").exit_code == EXIT_NEEDS_APPROVAL
    assert FlowResult("failed", "chg-1").exit_code == EXIT_FAILED
    assert FlowResult("validation_failed", "chg-1").exit_code == EXIT_FAILED
