"""The store's run-history entities: ``reports`` and their ``events``.

Reports and events are history: no node-state filter hides them (docs/query.md).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, select

from steward.query.entities import (
    Entity,
    Field,
    Kind,
    Nested,
    Scope,
    SqlOf,
    boolean,
    col,
    json_value,
    number,
    puppet_type,
    string,
    timestamp,
)
from steward.query.errors import QueryError


def _expect_bool(field_name: str, op: str, value: Any) -> bool:
    if op != "=" or not isinstance(value, bool):
        raise QueryError(f"field {field_name!r} takes only '= true' or '= false'")
    return value


def _latest_report(report_hash: SqlOf) -> Callable[[Scope, str, Any], ColumnElement[bool]]:
    def build(s: Scope, op: str, value: Any) -> ColumnElement[bool]:
        wanted = _expect_bool("latest_report?", op, value)
        nodes = s.fresh("nodes")
        latest = select(nodes.c.latest_report_hash).where(
            nodes.c.latest_report_hash.is_not(None))
        condition = report_hash(s).in_(latest)
        return condition if wanted else ~condition

    return build


def _metrics(value: Any, row: Mapping[str, Any]) -> Any:
    data = [
        {"category": category, "name": name, "value": amount}
        for category in sorted(value or {})
        for name, amount in sorted((value or {})[category].items())
    ]
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/metrics", "data": data}


def _report_resources(value: Any, row: Mapping[str, Any]) -> Any:
    """The run's per-resource statuses (PE's ``resources``), types spelled as in events."""
    statuses = json.loads(zlib.decompress(value)) if value else []
    for status in statuses:
        status["resource_type"] = puppet_type(status.get("resource_type", ""))
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/resources", "data": statuses}


def _logs(value: Any, row: Mapping[str, Any]) -> Any:
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/logs", "data": list(value or [])}


#: A report's events, as PuppetDB embeds them (``resource_events``).
_RESOURCE_EVENTS = Nested(
    "events", ("report", "status", "timestamp", "resource_type", "resource_title", "property",
               "new_value", "old_value", "message", "file", "line", "containment_path",
               "containing_class", "corrective_change"),
    column="report", key="_hash", group_field="report", group_of="_hash",
    href=lambda raw: f"/pdb/query/v4/reports/{raw['_hash']}/events")


def _containment_path(_value: Any, row: Mapping[str, Any]) -> Any:
    ref = f"{row['_resource_type']}[{row['_resource_title']}]"
    klass = row["_containing_class"]
    return [klass, ref] if klass else [ref]


REPORTS = Entity(
    name="reports",
    base="reports",
    joins={"report_resources": lambda s: s.c("report_resources", "report")
           == s.c("reports", "hash")},
    fields={f.name: f for f in (
        string("certname", "reports"),
        string("hash", "reports"),
        string("environment", "reports"),
        string("status", "reports"),
        boolean("noop", "reports"),
        boolean("noop_pending", "reports"),
        string("puppet_version", "reports"),
        number("report_format", "reports"),
        string("configuration_version", "reports"),
        timestamp("start_time", "reports"),
        timestamp("end_time", "reports"),
        timestamp("producer_timestamp", "reports"),
        timestamp("receive_time", "reports"),
        string("producer", "reports"),
        string("transaction_uuid", "reports"),
        string("catalog_uuid", "reports"),
        string("code_id", "reports"),
        string("type", "reports"),
        boolean("corrective_change", "reports"),
        string("catalog_hash", "reports"),
        number("exit_code", "reports"),
        Field("latest_report?", Kind.SPECIAL, projectable=False,
              special=_latest_report(col("reports", "hash"))),
        Field("metrics", Kind.EXPANDED, sql=col("reports", "metrics"), render=_metrics,
              needs=("_hash",), filterable=False),
        Field("logs", Kind.EXPANDED, sql=col("reports", "logs"), render=_logs,
              needs=("_hash",), filterable=False),
        Field("resource_events", Kind.EXPANDED, filterable=False, needs=("_hash",),
              nested=_RESOURCE_EVENTS),
        Field("resources", Kind.EXPANDED, sql=col("report_resources", "resources"),
              render=_report_resources, filterable=False, needs=("_hash",)),
    )},
    hidden={"_hash": col("reports", "hash")},
    default_fields=(
        "certname", "hash", "environment", "status", "noop", "noop_pending",
        "puppet_version", "report_format", "configuration_version", "start_time",
        "end_time", "producer_timestamp", "receive_time", "producer", "transaction_uuid",
        "catalog_uuid", "code_id", "type", "corrective_change", "catalog_hash",
        "exit_code", "metrics", "logs", "resource_events", "resources",
    ),
    natural_order=(col("reports", "certname"), col("reports", "producer_timestamp"),
                   col("reports", "hash")),
)
EVENTS = Entity(
    name="events",
    base="events",
    joins={"reports": lambda s: s.c("reports", "hash") == s.c("events", "report")},
    fields={f.name: f for f in (
        string("certname", "events"),
        string("report", "events"),
        string("status", "events"),
        timestamp("timestamp", "events"),
        timestamp("run_start_time", "reports", "start_time"),
        timestamp("run_end_time", "reports", "end_time"),
        timestamp("report_receive_time", "reports", "receive_time"),
        string("resource_type", "events"),
        string("resource_title", "events"),
        string("property", "events"),
        json_value("new_value", "events", "new_value"),
        json_value("old_value", "events", "old_value"),
        string("message", "events"),
        string("file", "events"),
        number("line", "events"),
        Field("containment_path", Kind.EXPANDED, filterable=False,
              render=_containment_path,
              needs=("_resource_type", "_resource_title", "_containing_class")),
        string("containing_class", "events"),
        string("environment", "reports"),
        string("configuration_version", "reports"),
        boolean("corrective_change", "events"),
        Field("latest_report?", Kind.SPECIAL, projectable=False,
              special=_latest_report(col("events", "report"))),
    )},
    hidden={
        "_resource_type": col("events", "resource_type"),
        "_resource_title": col("events", "resource_title"),
        "_containing_class": col("events", "containing_class"),
    },
    default_fields=(
        "certname", "report", "status", "timestamp", "run_start_time", "run_end_time",
        "report_receive_time", "resource_type", "resource_title", "property",
        "new_value", "old_value", "message", "file", "line", "containment_path",
        "containing_class", "environment", "configuration_version", "corrective_change",
    ),
    natural_order=(col("events", "certname"), col("events", "timestamp"),
                   col("events", "report"), col("events", "id")),
)
