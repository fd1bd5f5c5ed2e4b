"""What stands between a change and its next state, and the view of a change the
interfaces show: its record, its current analysis and those gates, in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steward.errors import StewardError
from steward.pipeline.approvals import Approvals
from steward.pipeline.changes import Analyses, Analysis, Change


class GateError(StewardError):
    """The change cannot move on yet; the message says what it is waiting for (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class ChangeView:
    """A change with what the interfaces show next to it."""

    change: Change
    analysis: Analysis | None
    gates: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        document = self.change.to_json()
        document["gates"] = self.gates
        if self.analysis is not None:
            document["impact"] = {"digest": self.analysis.digest,
                                  "summary": self.analysis.summary,
                                  "selection": self.analysis.report.selection.to_json()}
            document["policy"] = self.analysis.policy
        return document


def change_gates(change: Change, analysis: Analysis | None, analyses: Analyses,
                 approvals: Approvals) -> dict[str, Any]:
    """Everything between this change and its next state, in words: a missing or failed
    analysis, failing policies not overridden, approvals still missing."""
    waiting: list[str] = []
    approval: dict[str, Any] | None = None
    if analysis is None:
        waiting.append(f"an impact analysis of head {change.head[:12]}")
    else:
        failed = analysis.summary.get("nodes_failed", 0)
        if failed:
            names = [n.certname for n in analysis.report.nodes if n.status == "failed"][:5]
            waiting.append(f"the proposed catalog fails to compile on {failed} node(s) "
                           f"({', '.join(names)}): fix the change")
        policy = analysis.policy
        overridden = analyses.overrides(change.id, analysis.digest)
        for name in policy.get("blocking", []):
            waiting.append(f"hard-mandatory policy {name} fails: the change must be fixed")
        for result in policy.get("results", []):
            if result["name"] in policy.get("needs_override", []) \
                    and result["name"] not in overridden:
                waiting.append(
                    f"soft-mandatory policy {result['name']} fails: an override by role "
                    f"{' or '.join(result['overridable_by'])} "
                    f"(steward change override {change.id} {result['name']} -m REASON)")
        status = approvals.status(change, analysis.summary)
        approval = {
            "satisfied": status.satisfied,
            "requirement": status.requirement.to_json(),
            "valid": [r.to_json() for r in status.valid_approvals],
            "void": [v.to_json() for v in status.void_approvals],
            "missing": list(status.missing),
        }
        waiting.extend(status.missing)
    return {"waiting_for": waiting, "approval": approval,
            "validations": analyses.validations(change.id)}
