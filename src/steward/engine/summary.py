"""A short human-readable rendering of a report, for terminals and logs."""

from __future__ import annotations

from typing import Any

_MARK = {
    "changed": "~",
    "failed": "!",
    "skipped": "-",
    "noop": "?",
    "pending": "?",
}


_UNCONFINED = "not enforced under --root"


def render_summary(report: dict[str, Any], *, show_diffs: bool = True) -> str:
    counts = report["metrics"]["resources"]
    status = report["status"]
    if report["noop"] and report["noop_pending"] and status != "failed":
        status = "changes pending (noop)"
    elif report["noop"]:
        status = f"{status} (noop)"
    if report["corrective_change"]:
        status += " [drift detected]" if report["noop"] else " [drift corrected]"
    lines = [
        f"{report['node']} ({report['environment']}): {status}",
        "  resources: "
        + ", ".join(f"{counts[k]} {k}" for k in
                    ("unchanged", "changed", "noop", "pending", "failed", "skipped") if counts[k])
        + f" of {counts['total']} in {report['metrics']['time']['total']:.3f}s",
    ]
    unconfined = sorted({res["resource_type"] for res in report["resources"]
                         if res["status"] == "skipped"
                         and res.get("message", "").startswith(_UNCONFINED)})
    if unconfined:
        lines.append(f"  - {', '.join(unconfined)} resources: skipped, a --root sandbox does not "
                     "confine them")
    for res in report["resources"]:
        mark = _MARK.get(res["status"])
        if mark is None or res.get("message", "").startswith(_UNCONFINED):
            continue
        where = f"  ({res['file']}:{res['line']})" if res.get("file") else ""
        drift = " [corrective]" if res["corrective_change"] else ""
        lines.append(f"  {mark} {res['ref']}: {res['status']}{drift}{where}")
        if res.get("message"):
            lines.append(f"      {res['message']}")
        for event in res["events"]:
            if event["property"] == "refresh":
                lines.append(f"      {event['message']}")
                continue
            lines.append(
                f"      {event['property']}: {_short(event['old_value'])} -> "
                f"{_short(event['new_value'])}"
                + (" (drift)" if event["corrective_change"] else "")
            )
            if show_diffs and event.get("diff"):
                lines.extend("        " + d for d in event["diff"].rstrip("\n").splitlines())
    return "\n".join(lines)


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 72 else text[:69] + "..."
