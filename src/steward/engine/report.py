"""The run report: what was checked, what changed, what failed, what drifted.

Field names follow Puppet's report format and PuppetDB's events where they exist
(``noop_pending``, ``corrective_change``, ``old_value``/``new_value``); the schema is in
``schemas/report.schema.json``. Secret values are scrubbed from every string in the report,
as a last line of defence behind the per-property redaction, and log messages lose the
credentials they spell out; both leave the one marker (:mod:`steward.catalog.redaction`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from steward import __version__
from steward.catalog.redaction import cut_secrets_json, scrub_text, secret_forms
from steward.clock import iso
from steward.engine.transaction import ResourceResult, RunResult

REPORT_FORMAT = 1
#: Shorter secret values are not cut out of every string (they would shred the report).
MIN_SECRET_LENGTH = 4

EXIT_CHANGED = 2
EXIT_FAILED = 4
EXIT_PENDING = 8


def _resource_json(result: ResourceResult) -> dict[str, Any]:
    resource = result.resource
    document: dict[str, Any] = {
        "resource_type": resource.type,
        "title": resource.title,
        "ref": resource.ref,
        "status": result.status,
        "changed": result.status == "changed",
        "failed": result.status == "failed",
        "skipped": result.status == "skipped",
        "pending": result.status == "pending",
        "out_of_sync": result.out_of_sync,
        "corrective_change": result.corrective_change,
        "change_count": sum(1 for e in result.events if e.status == "success"),
        "out_of_sync_count": sum(1 for e in result.events if e.property != "refresh"),
        "evaluation_time": round(result.evaluation_time, 6),
        "file": resource.file,
        "line": resource.line,
        "tags": list(resource.tags),
        "failed_dependencies": result.failed_dependencies,
        "events": [e.to_json() for e in result.events],
    }
    if result.message:
        document["message"] = result.message
    return document


def exit_code(run: RunResult) -> int:
    statuses = {r.status for r in run.results}
    code = 0
    if "changed" in statuses:
        code |= EXIT_CHANGED
    if "failed" in statuses:
        code |= EXIT_FAILED
    if statuses & {"noop", "pending"}:
        code |= EXIT_PENDING
    return code


def build_report(run: RunResult) -> dict[str, Any]:
    catalog = run.catalog
    results = run.results
    statuses = [r.status for r in results]
    if "failed" in statuses:
        status = "failed"
    elif "changed" in statuses:
        status = "changed"
    else:
        status = "unchanged"
    times: dict[str, float] = {}
    for r in results:
        times[r.resource.type] = times.get(r.resource.type, 0.0) + r.evaluation_time
    events = [e for r in results for e in r.events]
    report: dict[str, Any] = {
        "report_format": REPORT_FORMAT,
        "steward_version": __version__,
        "node": catalog.node,
        "environment": catalog.environment,
        "catalog_hash": catalog.hash,
        "code_id": catalog.code_id,
        "transaction_uuid": str(uuid.uuid4()),
        "start_time": iso(datetime.fromtimestamp(run.start, UTC), timespec="milliseconds"),
        "end_time": iso(datetime.fromtimestamp(run.end, UTC), timespec="milliseconds"),
        "status": status,
        "noop": run.noop,
        "noop_pending": any(s in ("noop", "pending") for s in statuses),
        "corrective_change": any(r.corrective_change for r in results),
        "resources": [_resource_json(r) for r in results],
        "metrics": {
            "resources": {
                "total": len(results),
                **{s: statuses.count(s) for s in
                   ("unchanged", "changed", "failed", "skipped", "noop", "pending")},
                "out_of_sync": sum(1 for r in results if r.out_of_sync),
                "corrective_change": sum(1 for r in results if r.corrective_change),
            },
            "events": {
                "total": len(events),
                **{s: sum(1 for e in events if e.status == s)
                   for s in ("success", "failure", "noop")},
            },
            "time": {
                **{k: round(v, 6) for k, v in sorted(times.items())},
                "total": round(run.end - run.start, 6),
            },
        },
        "logs": [_log_json(entry) for entry in run.logs],
        "exit_code": exit_code(run),
    }
    secrets = secret_forms(run.sensitive, min_length=MIN_SECRET_LENGTH)
    return cut_secrets_json(report, secrets) if secrets else report


def _log_json(entry: dict[str, Any]) -> dict[str, Any]:
    """A log entry whose message no longer spells out a credential (``password=...``)."""
    message = entry.get("message")
    return {**entry, "message": scrub_text(message)} if isinstance(message, str) else entry
