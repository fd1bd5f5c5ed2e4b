"""A change's trace (``steward audit trace``): from its proposal, through related changes
and deployments, to the per-node reports that enforced it."""

from __future__ import annotations

from typing import Any

from steward.access.audit import AuditLog
from steward.pipeline.changes import Changes
from steward.pipeline.deploy import Deployments


def change_trace(change_id: str, changes: Changes, deployments: Deployments,
                 audit: AuditLog) -> dict[str, Any]:
    """The change, its history, the audit entries of it and of its children (oldest first),
    their deployments and the reports of each deployed node."""
    change = changes.get(change_id)
    related = [change_id] + [c.id for c in changes.list(parent=change_id)]
    entries: list[dict[str, Any]] = []
    for cid in related:
        entries.extend(audit.for_target(f"change:{cid}"))
    rollouts = [d.to_json() for cid in related for d in deployments.for_change(cid)]
    reports: list[dict[str, Any]] = []
    for deployment in rollouts:
        for node in deployment["nodes"]:
            if node["report"]:
                reports.append({"deployment": deployment["id"], "certname": node["certname"],
                                "report": node["report"], "status": node["status"],
                                "commit": deployment["commit"]})
    entries.sort(key=lambda e: e["id"])
    return {
        "format": 1,
        "change": change.to_json(),
        "history": [h.to_json() for h in changes.history(change_id)],
        "audit": entries,
        "deployments": rollouts,
        "reports": reports,
        "related_changes": related[1:],
    }
