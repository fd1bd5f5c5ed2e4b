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


def render_summary(report: dict[str, Any], *, show_diffs: bool = True) -> str:
    counts = report["metrics"]["resources"]
    lines = [
        f"{report['node']} ({report['environment']}): {report['status']}"
        + (" [noop]" if report["noop"] else "")
        + (" [pending changes]" if report["noop_pending"] else "")
        + (" [drift corrected]" if report["corrective_change"] and not report["noop"] else "")
        + (" [drift detected]" if report["corrective_change"] and report["noop"] else ""),
        "  resources: "
        + ", ".join(f"{counts[k]} {k}" for k in
                    ("unchanged", "changed", "noop", "pending", "failed", "skipped") if counts[k])
        + f" of {counts['total']} in {report['metrics']['time']['total']:.3f}s",
    ]
    for res in report["resources"]:
        mark = _MARK.get(res["status"])
        if mark is None:
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
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 72 else text[:69] + "..."
