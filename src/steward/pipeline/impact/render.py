"""The impact report as a person reads it in a terminal.

Summary first (risk and its reasons, blast radius, what was recompiled and why), then one
block per distinct change: ``+`` added, ``-`` removed, ``~`` modified resources with
``before → after`` per property, file content as a unified diff, and ``file:line`` of the
declaration. Nodes with the same change are collapsed under the first of them ("… and 3,331
more nodes with the same change"): "the same" means the same resources, properties, lines
added and removed, and error, once each node's own name is set aside (a rendered config
that names its host is still the same change).
"""

from __future__ import annotations

import json
from typing import Any

from steward.catalog.canonical import canonical_json
from steward.pipeline.impact.report import (
    ImpactReport,
    NodeImpact,
    Provenance,
    ResourceChange,
)

#: Longest property value shown in full; longer ones are cut (content has its diff).
MAX_VALUE = 160
#: How many names of collapsed nodes are listed.
NAMES_SHOWN = 3
_MARK = {"add": "+", "remove": "-", "modify": "~"}


def render_text(report: ImpactReport, *, max_groups: int | None = None) -> str:
    """The readable rendering; ``max_groups`` caps the change blocks shown."""
    lines = _header(report)
    groups = _groups([n for n in report.nodes if n.status != "unchanged"])
    shown = groups if max_groups is None else groups[:max_groups]
    for group in shown:
        lines.append("")
        lines.extend(_node_block(group[0]))
        rest = group[1:]
        if rest:
            names = ", ".join(n.certname for n in rest[:NAMES_SHOWN])
            more = ", …" if len(rest) > NAMES_SHOWN else ""
            lines.append(f"  … and {len(rest):,} more node{'s' if len(rest) != 1 else ''} "
                         f"with the same change ({names}{more})")
    if len(shown) < len(groups):
        lines.append("")
        lines.append(f"… {len(groups) - len(shown):,} more distinct changes not shown")
    unchanged = [n.certname for n in report.nodes if n.status == "unchanged"]
    if unchanged:
        lines.append("")
        lines.append(f"{len(unchanged):,} recompiled node{'s' if len(unchanged) != 1 else ''} "
                     f"unchanged ({', '.join(unchanged[:NAMES_SHOWN])}"
                     f"{', …' if len(unchanged) > NAMES_SHOWN else ''})")
    lines.extend(render_live(report))
    lines.append("")
    lines.append(f"digest {report.digest}")
    return "\n".join(lines) + "\n"


def _header(report: ImpactReport) -> list[str]:
    change, summary, selection = report.change, report.summary, report.selection
    env = change.environment
    title = f"Impact of {change.id}" if change.id else "Impact"
    sides = ""
    if change.base or change.head:
        sides = f": {_short(change.base)} → {_short(change.head)}"
    blast = summary.blast_radius
    lines = [
        f"{title} on {env}{sides}",
        f"Risk: {summary.risk.upper()}",
        *(f"  - {reason}" for reason in summary.risk_reasons),
        f"Blast radius: {blast.nodes:,} node{'s' if blast.nodes != 1 else ''} "
        f"({blast.percent:g}% of {env}), {blast.resources:,} resource changes "
        f"(+{summary.resources_added:,} -{summary.resources_removed:,} "
        f"~{summary.resources_modified:,})",
        f"Nodes: {summary.nodes_changed:,} changed, {summary.nodes_failed:,} failed, "
        f"{summary.nodes_new:,} new, {summary.nodes_removed:,} removed, "
        f"{summary.nodes_unchanged:,} unchanged",
        f"Selection ({selection.mode}): {selection.reason} — "
        f"{selection.nodes_recompiled:,} of {selection.nodes_in_environment:,} nodes "
        "recompiled",
    ]
    if change.changed_files:
        lines.append(f"Changed files: {', '.join(change.changed_files)}")
    if change.changed_data_keys:
        lines.append(f"Changed data keys: {', '.join(change.changed_data_keys)}")
    return lines


def _node_block(node: NodeImpact) -> list[str]:
    status = node.status
    head = f"{node.certname}: {status}"
    if status == "removed":
        head += f" (classification moves it to {node.proposed.environment})"
    lines = [head]
    error = node.error
    if error:
        lines.append(f"  ! {error.message}")
    current_error = node.current.error
    if current_error and status != "failed":
        lines.append(f"  (its current compile fails: {current_error.message})")
    classification = node.classification
    if classification:
        lines.append(f"  classification: {_value(classification.before)} → "
                     f"{_value(classification.after)}")
    for entry in node.resources:
        lines.extend(_resource_lines(entry))
    if node.sensitive_inputs:
        lines.append(f"  changed inputs of resources carrying a secret: "
                     f"{', '.join(node.sensitive_inputs)}")
    for edge in node.edges:
        lines.append(f"  {_MARK[edge.action]} edge {edge.source} {edge.relationship} "
                     f"{edge.target}")
    return lines


def _resource_lines(entry: ResourceChange) -> list[str]:
    action = entry.action
    where = entry.after if action != "remove" else entry.before
    place = f"  ({_where(where)})" if where else ""
    if action == "modify" and entry.before and entry.before != entry.after:
        place = f"  ({_where(entry.before)} → {_where(entry.after)})"
    marker = "  [carries a secret]" if entry.sensitive else ""
    lines = [f"  {_MARK[action]} {entry.resource}{place}{marker}"]
    for prop in entry.properties:
        name = prop.name
        if entry.content_diff and name == "content":
            lines.append(f"      {name}:")
            lines.extend(f"        {line}" for line in entry.content_diff.splitlines())
            continue
        if action == "add":
            lines.append(f"      {name}: {_value(prop.after)}")
        elif action == "remove":
            lines.append(f"      {name}: {_value(prop.before)}")
        else:
            text = f"      {name}: {_value(prop.before)} → {_value(prop.after)}"
            if prop.sensitive:
                text += " (value changed)" if prop.digest_changed else ""
            lines.append(text)
    return lines


def _where(place: Provenance | None) -> str:
    return f"{place.file}:{place.line}" if place is not None else "None:None"


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _short(commit: Any) -> str:
    return str(commit)[:12] if commit else "(working tree)"


def _groups(nodes: list[NodeImpact]) -> list[list[NodeImpact]]:
    """Nodes with the same change together, groups in the order of their first node."""
    groups: dict[str, list[NodeImpact]] = {}
    for node in nodes:
        groups.setdefault(_signature(node), []).append(node)
    return list(groups.values())


def _signature(node: NodeImpact) -> str:
    names = sorted({n for n in (node.certname, node.certname.split(".")[0])
                    if len(n) >= 3}, key=len, reverse=True)

    def own(text: str) -> str:
        for name in names:
            text = text.replace(name, "\0node\0")
        return text

    resources = []
    for entry in node.resources:
        properties: list[dict[str, Any]] = []
        for prop in entry.properties:
            if entry.content_diff and prop.name == "content":
                changed = [line for line in entry.content_diff.splitlines()
                           if line[:1] in "+-" and line[:3] not in ("---", "+++")]
                properties.append({"name": "content", "lines": changed})
            else:
                properties.append(prop.to_json())
        resources.append({**entry.to_json(), "properties": properties, "content_diff": None})
    error = node.error
    return own(canonical_json({
        "status": node.status,
        "resources": resources,
        "edges": [edge.to_json() for edge in node.edges],
        "classification": node.classification.to_json()
        if node.classification is not None else None,
        "error": error.message if error else None,
        "environment": node.proposed.environment,
    }))


#: Live events shown per node before "… n more".
LIVE_EVENTS_SHOWN = 20
#: Lines of a live content diff shown.
LIVE_DIFF_LINES = 12


def render_live(report: ImpactReport) -> list[str]:
    """The live-prediction section (empty without ``--live``): per node, its noop run."""
    asked = [(n.certname, n.live) for n in report.nodes if n.live is not None]
    if not asked:
        return []
    counts: dict[str, int] = {}
    for _certname, prediction in asked:
        counts[prediction.status] = counts.get(prediction.status, 0) + 1
    lines = ["", "Live prediction (the proposed catalog run in noop on each machine): "
             + ", ".join(f"{counts[s]} {s}" for s in ("reported", "timeout", "unreachable")
                         if s in counts)]
    for certname, live in asked:
        events = live.events
        drift = sum(1 for e in events if e.get("corrective_change"))
        head = f"  {certname}: {live.status}"
        if live.status == "reported":
            head += (f", exit {live.exit_code}, {len(events)} would change"
                     + (f" ({drift} drift)" if drift else "")
                     + (f", report {str(live.report)[:12]}" if live.report else ""))
        lines.append(head)
        if live.status != "reported" and live.detail:
            lines.append(f"      {live.detail}")
        for event in events[:LIVE_EVENTS_SHOWN]:
            mark = "  [drift: corrects a change made outside Steward]" \
                if event.get("corrective_change") else ""
            diff = event.get("diff")
            if isinstance(diff, str) and diff:
                lines.append(f"    ~ {event['resource']} {event['property']}:{mark}")
                diff_lines = diff.splitlines()
                lines.extend(f"        {line}" for line in diff_lines[:LIVE_DIFF_LINES])
                if len(diff_lines) > LIVE_DIFF_LINES:
                    lines.append(f"        … {len(diff_lines) - LIVE_DIFF_LINES:,} more lines")
                continue
            lines.append(f"    ~ {event['resource']} {event['property']}: "
                         f"{_value(event.get('old'))} → {_value(event.get('new'))}{mark}")
        if len(events) > LIVE_EVENTS_SHOWN:
            lines.append(f"    … {len(events) - LIVE_EVENTS_SHOWN:,} more")
        for failure in live.failures:
            lines.append(f"    ! {failure['resource']}: {failure['message']}")
    return lines
