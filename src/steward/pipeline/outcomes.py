"""What a finished rollout means for its change: the change's final state (and a rollback's
parent's), and the audit entries per enforced node and for the deployment's end.

Kept out of the service so the rollout's bookkeeping reads as one step after the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from steward.access.principal import SYSTEM, Principal
from steward.pipeline.changes import Changes
from steward.pipeline.deploy import Deployment


class Audit(Protocol):
    """How the service writes an audit entry (``Pipeline._audit``)."""

    def __call__(self, actor: Principal | None, action: str, target: str | None, *,
                 outcome: str = ..., reason: str | None = ...,
                 parameters: Mapping[str, Any] | None = ...) -> None: ...


def settle_rollout(changes: Changes, audit: Audit,
                   final: Deployment) -> Literal["deployed", "failed"]:
    """Record ``final``'s outcome on its change and in the audit log; the change's state.

    A rollback's parent is settled first, so whoever sees the rollback leave 'deploying'
    also sees its parent 'rolled_back'.
    """
    change_id = final.change_id
    target: Literal["deployed", "failed"] = \
        "deployed" if final.state == "succeeded" else "failed"
    change = changes.get(change_id)
    if target == "deployed" and change.kind == "rollback" and change.parent:
        parent = changes.get(change.parent)
        if parent.state in ("deployed", "failed"):
            changes.transition(parent.id, "rolled_back", SYSTEM, detail={"rollback": change_id})
    changes.transition(change_id, target, SYSTEM,
                       detail={"deployment": final.id, "counts": final.counts(),
                               "detail": final.detail})
    for node in final.nodes:
        if node["status"] in ("succeeded", "failed"):
            # Under the change's target, so its trace finds them without a scan.
            audit(SYSTEM, "node.enforced", f"change:{change_id}/node:{node['certname']}",
                  outcome=node["status"], reason=node["detail"],
                  parameters={"change": change_id, "deployment": final.id,
                              "report": node["report"], "commit": final.commit})
    audit(SYSTEM, "deployment.finished", f"change:{change_id}",
          outcome="succeeded" if target == "deployed" else "failed", reason=final.detail,
          parameters={"deployment": final.id, "counts": final.counts()})
    return target
