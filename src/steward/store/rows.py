"""Facts, catalogs and reports as the store's rows, built apart from writing them.

Ingestion and the benchmark's bulk loader both build rows here, so the loader produces
exactly the rows ingestion would. Building validates the document (a malformed one is a
:class:`StoreError` naming the field) and derives what PuppetDB derives: fact paths and
typed values, ``Class`` resources from the classification, report hashes and events.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from steward.catalog.canonical import canonical_json
from steward.catalog.model import Catalog as CatalogDocument
from steward.catalog.model import parse_ref
from steward.query.entities import path_key, puppet_type
from steward.store.errors import StoreError

PRODUCER = "steward"
#: Namespace of the catalog UUIDs derived from catalog hashes, so a report's catalog_uuid
#: (from its catalog_hash) equals the uuid of the catalog it applied.
CATALOG_UUID_NAMESPACE = uuid.UUID("5b0e2a4c-6f47-4a53-9d8e-6c1f1a3e2b71")

def utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if not isinstance(value, datetime):
        raise StoreError(f"{what} must be a datetime, not {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: Any, what: str) -> datetime:
    """A document's ISO 8601 timestamp (or datetime) in UTC; ``what`` names it in errors."""
    if isinstance(value, datetime):
        return utc(value, what)
    if not isinstance(value, str):
        raise StoreError(f"{what} must be an ISO 8601 timestamp string, not {value!r}")
    try:
        return utc(datetime.fromisoformat(value), what)
    except ValueError:
        raise StoreError(f"{what}: {value!r} is not an ISO 8601 timestamp") from None


def catalog_uuid(catalog_hash: str) -> str:
    """The uuid of the catalog with this hash, the same for a report that names it."""
    return str(uuid.uuid5(CATALOG_UUID_NAMESPACE, catalog_hash))


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# -- facts --------------------------------------------------------------------------------


def value_type(value: Any) -> str:
    """PuppetDB's fact value types."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "map"
    raise StoreError(f"fact value {value!r} is not JSON")


def typed_value(value: Any) -> dict[str, Any]:
    """The value columns: the JSON value and its string/number/boolean readings."""
    kind = value_type(value)
    return {
        "value": value,
        "value_type": kind,
        "value_string": value if kind == "string" else None,
        "value_number": float(value) if kind in ("integer", "float") else None,
        "value_boolean": value if kind == "boolean" else None,
    }


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) below ``path``, containers included, depth first in key order."""
    yield path, value
    if isinstance(value, dict):
        for key in sorted(value):
            if not isinstance(key, str):
                raise StoreError(f"fact {'.'.join(map(str, path))}: key {key!r} is not a "
                                 "string")
            yield from _walk(value[key], (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


@dataclass
class FactRows:
    facts: list[dict[str, Any]]
    contents: list[dict[str, Any]]
    paths: list[dict[str, Any]]


def fact_rows(certname_id: int, facts: Mapping[str, Any]) -> FactRows:
    """Rows for ``facts`` (top level), ``fact_contents`` (leaves) and ``fact_paths``."""
    rows = FactRows([], [], [])
    for name in sorted(facts):
        value = facts[name]
        rows.facts.append({"certname_id": certname_id, "name": name, **typed_value(value)})
        for path, item in _walk(value, (name,)):
            kind = value_type(item)
            key = path_key(path)
            rows.paths.append({"path_key": key, "type": kind, "path": list(path),
                               "name": name, "depth": len(path) - 1})
            if kind not in ("array", "map"):
                rows.contents.append({"certname_id": certname_id, "path_key": key,
                                      "path": list(path), "depth": len(path) - 1,
                                      "name": name, **typed_value(item)})
    return rows


def facts_hash(environment: str, facts: Mapping[str, Any]) -> str:
    """The factset hash: unchanged facts rewrite no rows."""
    return _sha1(canonical_json({"environment": environment, "facts": facts}))


# -- catalogs ---------------------------------------------------------------------------------


def class_title(kind: str, name: str) -> str:
    """A class title: (``role``, ``web``) -> ``Role::Web``."""
    return puppet_type(f"{kind}::{name}")


def _resource_row(certname_id: int, type_name: str, title: str, parameters: Any,
                  tags: list[str], file: str | None, line: int | None) -> dict[str, Any]:
    digest = _sha1(canonical_json([type_name, title, parameters, tags, False, file, line]))
    return {"certname_id": certname_id, "type": type_name, "title": title, "resource": digest,
            "exported": False, "file": file, "line": line, "tags": tags,
            "parameters": parameters}


@dataclass
class CatalogRows:
    catalog: dict[str, Any]
    resources: list[dict[str, Any]]
    edges: list[dict[str, Any]]


def catalog_rows(certname_id: int, document: Mapping[str, Any],
                 producer_timestamp: datetime) -> CatalogRows:
    """A Steward catalog as PuppetDB rows: types capitalised, classification as ``Class``."""
    parsed = CatalogDocument.from_json(dict(document), source="catalog")
    digest = parsed.hash or _sha1(canonical_json(parsed.body()))
    classification = parsed.classification or {}
    resources: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for kind in ("role", "profile"):
        names = classification.get(f"{kind}s") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StoreError(f"catalog for {parsed.node}: classification.{kind}s must be a "
                             "list of names")
        for name in names:
            title = class_title(kind, name)
            if ("Class", title) not in seen:
                seen.add(("Class", title))
                resources.append(_resource_row(certname_id, "Class", title, {},
                                               ["class", kind, title.lower()], None, None))
    for resource in parsed.resources:
        type_name = puppet_type(resource.type)
        if (type_name, resource.title) in seen:
            continue
        seen.add((type_name, resource.title))
        resources.append(_resource_row(certname_id, type_name, resource.title,
                                       resource.parameters, list(resource.tags),
                                       resource.file, resource.line))
    edges = []
    for edge in parsed.edges:
        source_type, source_title = parse_ref(edge.source)
        target_type, target_title = parse_ref(edge.target)
        edges.append({"certname_id": certname_id, "source_type": puppet_type(source_type),
                      "source_title": source_title, "target_type": puppet_type(target_type),
                      "target_title": target_title, "relationship": edge.relationship})
    catalog = {
        "certname_id": certname_id,
        "hash": digest,
        "catalog_uuid": catalog_uuid(digest),
        "environment": parsed.environment,
        "code_id": parsed.code_id,
        "producer_timestamp": producer_timestamp,
        "classification": classification,
        "inputs": parsed.inputs or {},
    }
    return CatalogRows(catalog, resources, edges)


# -- reports ------------------------------------------------------------------------------------

_REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "node": str,
    "environment": str,
    "transaction_uuid": str,
    "start_time": str,
    "end_time": str,
    "status": str,
    "noop": bool,
    "noop_pending": bool,
    "corrective_change": bool,
    "resources": list,
    "metrics": dict,
    "logs": list,
}


@dataclass
class ReportRows:
    report: dict[str, Any]
    #: The ``report_resources`` row: the resource list, compressed.
    resources: dict[str, Any]
    events: list[dict[str, Any]]


def _containing_class(tags: Any) -> str | None:
    for tag in tags or ():
        if isinstance(tag, str) and tag.startswith("profile:"):
            return class_title("profile", tag.removeprefix("profile:"))
    return None


def report_rows(report: Mapping[str, Any], receive_time: datetime) -> ReportRows:
    """A Steward report as rows of ``reports`` (hash computed), ``report_resources`` and
    ``events``."""
    if not isinstance(report, Mapping):
        raise StoreError("a report must be a JSON object")
    for name, kind in _REPORT_FIELDS.items():
        if not isinstance(report.get(name), kind):
            raise StoreError(f"report field {name!r} is missing or not a {_kind_name(kind)}")
    certname = report["node"]
    if not certname:
        raise StoreError("report field 'node' is empty")
    start = parse_time(report["start_time"], "report field 'start_time'")
    end = parse_time(report["end_time"], "report field 'end_time'")
    resources = report["resources"]
    # The bulk is serialised once, for the stored blob and the hash. Its key order is the
    # document's own (sorting 300 resources' keys would double the cost), so the same
    # report always hashes the same; idempotency does not rely on the hash anyway.
    resources_json = json.dumps(resources, separators=(",", ":"), ensure_ascii=False)
    head = {k: v for k, v in report.items() if k != "resources"}
    digest = _sha1(canonical_json(head) + "\n" + resources_json)
    catalog_hash = report.get("catalog_hash")
    row = {
        "hash": digest,
        "transaction_uuid": report["transaction_uuid"],
        "certname": certname,
        "environment": report["environment"],
        "status": report["status"],
        "noop": report["noop"],
        "noop_pending": report["noop_pending"],
        "corrective_change": report["corrective_change"],
        "puppet_version": report.get("steward_version"),
        "report_format": int(report.get("report_format") or 1),
        "configuration_version": report.get("code_id"),
        "code_id": report.get("code_id"),
        "catalog_uuid": catalog_uuid(catalog_hash) if isinstance(catalog_hash, str) else None,
        "catalog_hash": catalog_hash,
        "type": "agent",
        "producer": PRODUCER,
        "start_time": start,
        "end_time": end,
        "producer_timestamp": end,
        "receive_time": receive_time,
        "exit_code": report.get("exit_code"),
        "metrics": report["metrics"],
        "logs": report["logs"],
    }
    blob = {"report": digest, "resources": zlib.compress(resources_json.encode("utf-8"), 1)}
    events: list[dict[str, Any]] = []
    for index, resource in enumerate(resources):
        if type(resource) is not dict and not isinstance(resource, Mapping):
            raise StoreError(f"report resources[{index}] must be an object")
        resource_events = resource.get("events")
        skipped = not resource_events and resource.get("status") == "skipped"
        if not resource_events and not skipped:
            continue
        if not isinstance(resource.get("resource_type"), str) or not isinstance(
                resource.get("title"), str):
            raise StoreError(f"report resources[{index}] needs string 'resource_type' and "
                             "'title'")
        common = {
            "report": digest,
            "certname": certname,
            "timestamp": end,
            "resource_type": puppet_type(resource["resource_type"]),
            "resource_title": resource["title"],
            "file": resource.get("file"),
            "line": resource.get("line"),
            "containing_class": _containing_class(resource.get("tags")),
        }
        if skipped:
            # PuppetDB records a skipped resource as an event of its own.
            events.append({**common, "status": "skipped", "property": None,
                           "old_value": None, "new_value": None,
                           "message": resource.get("message"), "corrective_change": False})
            continue
        if not isinstance(resource_events, list):
            raise StoreError(f"report resources[{index}].events must be a list")
        for event in resource_events:
            if not isinstance(event, dict) or not isinstance(event.get("status"), str):
                raise StoreError(f"report resources[{index}]: each event needs a 'status'")
            events.append({
                **common,
                "status": event["status"],
                "property": event.get("property"),
                "old_value": event.get("old_value"),
                "new_value": event.get("new_value"),
                "message": event.get("message"),
                "corrective_change": bool(event.get("corrective_change")),
            })
    return ReportRows(row, blob, events)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", bool: "boolean", list: "list", dict: "object"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)
