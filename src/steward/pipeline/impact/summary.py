"""The report's summary: counts, blast radius, and a risk level with its reasons.

Risk rule (every rule that fires adds a reason; the level is the highest that fired):

``high``
  * a node's compile fails at head;
  * the blast radius is at least 50 % of the environment's nodes;
  * SSH access is touched: a resource whose reference names ``sshd`` or ``ssh`` (the
    service or package) or a path under ``/etc/ssh/``;
  * a ``package``, ``service``, ``user`` or ``group`` resource is removed.
``medium``
  * the blast radius is at least 10 %;
  * a ``package``, ``service``, ``exec``, ``user``, ``group`` or ``cron`` resource is added
    or modified (software, daemons, commands run, accounts, scheduled jobs);
  * a sensitive value changes (its keyed digest differs), a resource carrying one is
    added, removed or modified, or a changed template or static file feeds one;
  * nodes enter or leave the environment;
  * the change touched classification or settings, so every node was recompiled.
``low``
  everything else: files, directories, lines, hosts, symlinks on under 10 % of the nodes,
  or nothing at all.

The blast radius counts the nodes whose status is not ``unchanged`` (failed ones included:
the change breaks them) and the resource entries across them; the percentage is of the
environment's nodes before the change. A resource whose only change is a sensitive value is
a modified resource like any other: it counts in all of these.

``sensitive`` says what a reviewer must look at with a secret in mind: the nodes and resource
entries marked sensitive, the sensitive values whose digest changed, and the changed files
that feed a secret-bearing resource (``inputs``, even where the rendering is the same today).
"""

from __future__ import annotations

from collections.abc import Sequence

from steward.pipeline.impact.report import (
    BlastRadius,
    ImpactSummary,
    NodeImpact,
    ResourceChange,
    SensitiveSummary,
)

HIGH_PERCENT = 50.0
MEDIUM_PERCENT = 10.0
#: Removing one of these is high risk; adding or modifying one is medium.
SYSTEM_TYPES = frozenset({"package", "service", "user", "group"})
MEDIUM_TYPES = frozenset({"package", "service", "exec", "user", "group", "cron"})
SSH_NAMES = frozenset({"ssh", "sshd", "openssh-server", "openssh-client", "openssh"})
STATUSES = ("changed", "unchanged", "failed", "new", "removed")


def summarise(
    nodes: Sequence[NodeImpact],
    *,
    environment: str,
    nodes_in_environment: int,
    widened: bool,
) -> ImpactSummary:
    counts = dict.fromkeys(STATUSES, 0)
    actions = {"add": 0, "remove": 0, "modify": 0}
    resources_total = 0
    ssh_nodes = removed_system_nodes = medium_type_nodes = secret_changes = 0
    removed_system = sensitive_resources = 0
    sensitive_nodes: set[str] = set()
    sensitive_inputs: set[str] = set()
    for node in nodes:
        counts[node.status] += 1
        touched_ssh = touched_medium = removed_here = False
        feeding = node.sensitive_inputs or ()
        if feeding:
            sensitive_inputs.update(feeding)
            sensitive_nodes.add(node.certname)
        for entry in node.resources:
            if entry.sensitive:
                sensitive_resources += 1
                sensitive_nodes.add(node.certname)
            actions[entry.action] += 1
            resources_total += 1
            kind = entry.type
            if _is_ssh(entry):
                touched_ssh = True
            if entry.action == "remove" and kind in SYSTEM_TYPES:
                removed_here = True
                removed_system += 1
            elif kind in MEDIUM_TYPES:
                touched_medium = True
            secret_changes += sum(1 for p in entry.properties if p.digest_changed)
        ssh_nodes += touched_ssh
        removed_system_nodes += removed_here
        medium_type_nodes += touched_medium
    affected = len(nodes) - counts["unchanged"]
    percent = round(100.0 * affected / nodes_in_environment, 2) if nodes_in_environment else (
        100.0 if affected else 0.0)
    high: list[str] = []
    medium: list[str] = []
    if counts["failed"]:
        high.append(f"the compile fails on {_n(counts['failed'], 'node')}")
    if percent >= HIGH_PERCENT:
        high.append(f"affects {percent:g}% of {environment} (at least {HIGH_PERCENT:g}%)")
    elif percent >= MEDIUM_PERCENT:
        medium.append(f"affects {percent:g}% of {environment} (at least {MEDIUM_PERCENT:g}%)")
    if ssh_nodes:
        high.append(f"touches SSH access (sshd) on {_n(ssh_nodes, 'node')}")
    if removed_system:
        high.append(f"removes {_n(removed_system, 'package, service, user or group resource')}"
                    f" on {_n(removed_system_nodes, 'node')}")
    if medium_type_nodes:
        medium.append(f"adds or modifies packages, services, execs, users, groups or cron jobs "
                      f"on {_n(medium_type_nodes, 'node')}")
    if secret_changes:
        medium.append(f"changes {_n(secret_changes, 'sensitive value')}")
    if sensitive_resources:
        medium.append(f"alters {_n(sensitive_resources, 'resource')} carrying a secret on "
                      f"{_n(len(sensitive_nodes), 'node')}")
    if sensitive_inputs:
        medium.append(f"changes {', '.join(sorted(sensitive_inputs))}, which "
                      f"{'feeds' if len(sensitive_inputs) == 1 else 'feed'} a resource "
                      "carrying a secret")
    if counts["new"] or counts["removed"]:
        medium.append(f"classification moves nodes: {counts['new']:,} into {environment}, "
                      f"{counts['removed']:,} out of it")
    if widened:
        medium.append("classification or settings changed: every node of the environment "
                      "was recompiled")
    if high:
        risk = "high"
    elif medium:
        risk = "medium"
    else:
        risk = "low"
    reasons = high + medium
    if not reasons:
        reasons = [f"changes files and other low-risk resources on {_n(affected, 'node')} "
                   f"({percent:g}% of {environment})" if affected else "no node changes"]
    return ImpactSummary(
        nodes_affected=affected,
        nodes_changed=counts["changed"],
        nodes_failed=counts["failed"],
        nodes_unchanged=counts["unchanged"],
        nodes_new=counts["new"],
        nodes_removed=counts["removed"],
        resources_added=actions["add"],
        resources_removed=actions["remove"],
        resources_modified=actions["modify"],
        blast_radius=BlastRadius(affected, resources_total, percent),
        risk=risk,
        risk_reasons=tuple(reasons),
        sensitive=SensitiveSummary(len(sensitive_nodes), sensitive_resources, secret_changes,
                                   tuple(sorted(sensitive_inputs))),
    )


def _is_ssh(entry: ResourceChange) -> bool:
    title = str(entry.title)
    if title.startswith("/etc/ssh/") or "sshd" in title:
        return True
    return entry.type in ("service", "package") and title in SSH_NAMES


def _n(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {noun}s"
