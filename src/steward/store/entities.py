"""The store's PQL entities: PuppetDB's v4 ones, over the tables of :mod:`steward.store.models`.

:func:`register` adds them (and how implicit subqueries relate them) to a registry; the
run-history entities are in :mod:`steward.store.report_entities`. Node-level entities
(``nodes``, facts, inventory, catalogs and their parts) show only live nodes, neither
deactivated nor expired, unless a query names ``deactivated``, ``expired`` or
``node_state``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, literal, select, true

from steward.query.entities import (
    DottedSpec,
    Entity,
    EntityRegistry,
    Field,
    FilterBuilder,
    Kind,
    Nested,
    Scope,
    active_filter,
    boolean,
    col,
    columns_value,
    document,
    json_value,
    number,
    path_key,
    string,
    timestamp,
)
from steward.query.errors import QueryError
from steward.query.sqlexpr import ColumnsValue, JsonPathValue, PathElement, ValueAccess, array_any
from steward.store.models import TITLE_PREFIX, VALUE_PREFIX
from steward.store.report_entities import EVENTS, REPORTS


def certname(table: str, *, keyed: bool) -> Field:
    """``certname``: on node-keyed tables the text comes from ``nodes``, the key is the id."""
    if not keyed:
        return string("certname", table, nullable=False)
    key = col("nodes", "id") if table == "nodes" else col(table, "certname_id")
    return Field("certname", Kind.STRING, sql=col("nodes", "certname"), key=key,
                 nullable=False)


def _join_nodes(table: str) -> Callable[[Scope], ColumnElement[bool]]:
    return lambda s: s.c("nodes", "id") == s.c(table, "certname_id")


def live_node(s: Scope) -> ColumnElement[bool]:
    """The node is neither deactivated nor expired."""
    return and_(s.c("nodes", "deactivated").is_(None), s.c("nodes", "expired").is_(None))


def _node_state(s: Scope, op: str, value: Any) -> ColumnElement[bool]:
    if op != "=" or value not in ("active", "inactive", "any"):
        raise QueryError("field 'node_state' takes = \"active\", \"inactive\" or \"any\"")
    if value == "any":
        return true()
    active = active_filter(s)
    return active if value == "active" else ~active


NODE_STATE = Field("node_state", Kind.SPECIAL, special=_node_state, projectable=False,
                   node_state=True)


def _tag(s: Scope, op: str, value: Any) -> ColumnElement[bool]:
    if not isinstance(value, str) or op not in ("=", "~"):
        raise QueryError("field 'tag' takes = \"name\" or ~ \"regex\"")
    column = s.c("resources", "tags")
    if op == "=":
        return array_any(column, s.dialect, equals=value)
    try:
        re.compile(value)  # else SQLite's Python function fails mid-query (a 500)
    except re.error as exc:
        raise QueryError(f"invalid regular expression {value!r} for 'tag': {exc}") from None
    return array_any(column, s.dialect, matches=value)


def _factset_facts(value: Any, row: Mapping[str, Any]) -> Any:
    facts = value or {}
    return {
        "href": f"/pdb/query/v4/factsets/{row['_certname']}/facts",
        "data": [{"name": k, "value": facts[k]} for k in sorted(facts)],
    }


def _inventory_fact(name: str, path: tuple[PathElement, ...]) -> Field:
    """``facts.<path>`` in inventory: filters use the indexed leaves in ``fact_contents``;
    projections and null tests read the factset document."""
    key = path_key(path)

    def access(s: Scope) -> ValueAccess:
        return JsonPathValue(s.c("factsets", "facts"), path, s.dialect)

    def via_leaves(s: Scope, build: FilterBuilder) -> ColumnElement[bool]:
        leaves = s.fresh("fact_contents")
        inner = select(leaves.c.certname_id).where(
            leaves.c.path_key == key, build(ColumnsValue(leaves, indexed_prefix=VALUE_PREFIX))
        )
        return s.c("factsets", "certname_id").in_(inner)

    return Field(name, Kind.VALUE, sql=lambda s: access(s).json(), value=access,
                 value_filter=via_leaves)


def _inventory_trusted(name: str, path: tuple[PathElement, ...]) -> Field:
    return json_value(name, "factsets", "trusted", path)


def _resource_parameter(name: str, path: tuple[PathElement, ...]) -> Field:
    return json_value(name, "resources", "parameters", path)


def _catalog_part(name: str, entity: str, fields: tuple[str, ...]) -> Nested:
    """A catalog's ``resources`` or ``edges``: the node's rows of that entity."""
    return Nested(entity, fields, column="certname_id", key="_certname_id",
                  group_field="certname", group_of="_certname",
                  href=lambda raw: f"/pdb/query/v4/catalogs/{raw['_certname']}/{name}")


# -- the entities --------------------------------------------------------------------------------

NODES = Entity(
    name="nodes",
    base="nodes",
    active=live_node,
    fields={f.name: f for f in (
        certname("nodes", keyed=True),
        timestamp("deactivated", "nodes", node_state=True),
        timestamp("expired", "nodes", node_state=True),
        timestamp("catalog_timestamp", "nodes"),
        timestamp("facts_timestamp", "nodes"),
        timestamp("report_timestamp", "nodes"),
        string("catalog_environment", "nodes"),
        string("facts_environment", "nodes"),
        string("report_environment", "nodes"),
        string("latest_report_status", "nodes"),
        string("latest_report_hash", "nodes"),
        boolean("latest_report_noop", "nodes"),
        boolean("latest_report_noop_pending", "nodes"),
        boolean("latest_report_corrective_change", "nodes"),
        NODE_STATE,
    )},
    default_fields=(
        "certname", "deactivated", "expired", "catalog_timestamp", "facts_timestamp",
        "report_timestamp", "catalog_environment", "facts_environment",
        "report_environment", "latest_report_status", "latest_report_hash",
        "latest_report_noop", "latest_report_noop_pending",
        "latest_report_corrective_change",
    ),
    natural_order=(col("nodes", "certname"),),
)
FACTS = Entity(
    name="facts",
    base="facts",
    active=live_node,
    joins={"nodes": _join_nodes("facts")},
    fields={f.name: f for f in (
        certname("facts", keyed=True),
        string("name", "facts", nullable=False),
        columns_value("facts"),
        string("environment", "nodes", "facts_environment"),
        NODE_STATE,
    )},
    default_fields=("certname", "name", "value", "environment"),
    natural_order=(col("nodes", "certname"), col("facts", "name")),
)
FACT_CONTENTS = Entity(
    name="fact_contents",
    base="fact_contents",
    active=live_node,
    joins={"nodes": _join_nodes("fact_contents")},
    fields={f.name: f for f in (
        certname("fact_contents", keyed=True),
        Field("path", Kind.PATH, sql=col("fact_contents", "path")),
        string("name", "fact_contents", nullable=False),
        columns_value("fact_contents", indexed_prefix=VALUE_PREFIX),
        string("environment", "nodes", "facts_environment"),
        NODE_STATE,
    )},
    default_fields=("certname", "environment", "path", "name", "value"),
    natural_order=(col("nodes", "certname"), col("fact_contents", "path_key")),
)
FACT_PATHS = Entity(
    name="fact_paths",
    base="fact_paths",
    fields={f.name: f for f in (
        Field("path", Kind.PATH, sql=col("fact_paths", "path")),
        string("type", "fact_paths"),
    )},
    default_fields=("path", "type"),
    natural_order=(col("fact_paths", "path_key"), col("fact_paths", "type")),
)
FACT_NAMES = Entity(
    name="fact_names",
    base="fact_paths",
    fields={"name": string("name", "fact_paths")},
    default_fields=("name",),
    natural_order=(col("fact_paths", "name"),),
    distinct=True,
    where=lambda s: s.c("fact_paths", "depth") == 0,
)
INVENTORY = Entity(
    name="inventory",
    base="factsets",
    active=live_node,
    joins={"nodes": _join_nodes("factsets")},
    fields={f.name: f for f in (
        certname("factsets", keyed=True),
        timestamp("timestamp", "factsets"),
        string("environment", "factsets"),
        document("facts", "factsets"),
        document("trusted", "factsets"),
        NODE_STATE,
    )},
    dotted={"facts": DottedSpec(_inventory_fact),
            "trusted": DottedSpec(_inventory_trusted)},
    default_fields=("certname", "timestamp", "environment", "facts", "trusted"),
    natural_order=(col("nodes", "certname"),),
)
FACTSETS = Entity(
    name="factsets",
    base="factsets",
    active=live_node,
    joins={"nodes": _join_nodes("factsets")},
    fields={f.name: f for f in (
        certname("factsets", keyed=True),
        string("environment", "factsets"),
        timestamp("timestamp", "factsets"),
        timestamp("producer_timestamp", "factsets"),
        string("hash", "factsets"),
        Field("producer", Kind.STRING, sql=lambda s: literal("steward"),
              filterable=False),
        Field("facts", Kind.EXPANDED, sql=col("factsets", "facts"), render=_factset_facts,
              needs=("_certname",), filterable=False),
        NODE_STATE,
    )},
    hidden={"_certname": col("nodes", "certname")},
    default_fields=("certname", "environment", "timestamp", "producer_timestamp",
                    "producer", "hash", "facts"),
    natural_order=(col("nodes", "certname"),),
)
RESOURCES = Entity(
    name="resources",
    base="resources",
    active=live_node,
    joins={"nodes": _join_nodes("resources")},
    fields={f.name: f for f in (
        certname("resources", keyed=True),
        string("resource", "resources"),
        string("type", "resources"),
        string("title", "resources", prefix_index=TITLE_PREFIX),
        Field("tags", Kind.DOCUMENT, sql=col("resources", "tags"), filterable=False),
        Field("tag", Kind.SPECIAL, special=_tag, projectable=False),
        boolean("exported", "resources"),
        string("file", "resources"),
        number("line", "resources"),
        string("environment", "nodes", "catalog_environment"),
        document("parameters", "resources"),
        NODE_STATE,
    )},
    dotted={"parameters": DottedSpec(_resource_parameter)},
    default_fields=("certname", "resource", "type", "title", "tags", "exported", "file",
                    "line", "environment", "parameters"),
    natural_order=(col("nodes", "certname"), col("resources", "type"),
                   col("resources", "title")),
)
EDGES = Entity(
    name="edges",
    base="edges",
    active=live_node,
    joins={"nodes": _join_nodes("edges")},
    fields={f.name: f for f in (
        certname("edges", keyed=True),
        string("relationship", "edges"),
        string("source_type", "edges"),
        string("source_title", "edges"),
        string("target_type", "edges"),
        string("target_title", "edges"),
        NODE_STATE,
    )},
    default_fields=("certname", "relationship", "source_type", "source_title",
                    "target_type", "target_title"),
    natural_order=(col("nodes", "certname"), col("edges", "source_type"),
                   col("edges", "source_title"), col("edges", "target_type"),
                   col("edges", "target_title"), col("edges", "relationship")),
)
CATALOGS = Entity(
    name="catalogs",
    base="catalogs",
    active=live_node,
    joins={"nodes": _join_nodes("catalogs")},
    fields={f.name: f for f in (
        certname("catalogs", keyed=True),
        string("version", "catalogs", "code_id"),
        string("environment", "catalogs"),
        string("catalog_uuid", "catalogs"),
        string("code_id", "catalogs"),
        timestamp("producer_timestamp", "catalogs"),
        Field("producer", Kind.STRING, sql=lambda s: literal("steward"),
              filterable=False),
        string("hash", "catalogs"),
        document("classification", "catalogs"),
        document("inputs", "catalogs"),
        Field("resources", Kind.EXPANDED, filterable=False,
              needs=("_certname_id", "_certname"), nested=_catalog_part(
                  "resources", "resources", ("certname", "resource", "type", "title", "tags",
                                             "exported", "file", "line", "parameters"))),
        Field("edges", Kind.EXPANDED, filterable=False,
              needs=("_certname_id", "_certname"), nested=_catalog_part(
                  "edges", "edges", ("certname", "source_type", "source_title",
                                     "target_type", "target_title", "relationship"))),
        NODE_STATE,
    )},
    hidden={"_certname_id": col("catalogs", "certname_id"),
            "_certname": col("nodes", "certname")},
    default_fields=("certname", "version", "environment", "catalog_uuid", "code_id",
                    "producer_timestamp", "producer", "hash", "classification", "inputs",
                    "resources", "edges"),
    natural_order=(col("nodes", "certname"),),
)
ENVIRONMENTS = Entity(
    name="environments",
    base="environments",
    fields={"name": string("name", "environments")},
    default_fields=("name",),
    natural_order=(col("environments", "name"),),
)


ENTITIES: tuple[Entity, ...] = (NODES, FACTS, FACT_CONTENTS, FACT_PATHS, FACT_NAMES, INVENTORY,
                                FACTSETS, RESOURCES, EDGES, CATALOGS, REPORTS, EVENTS,
                                ENVIRONMENTS)


def register(registry: EntityRegistry) -> None:
    """Add PuppetDB's entities and their implicit relations: facts to their leaves and
    reports to their events by explicit fields, ``environment`` to ``environments``, and
    any two entities sharing ``certname``."""
    for entity in ENTITIES:
        registry.register(entity)
    registry.relate("facts", "fact_contents", (("certname", "certname"), ("name", "name")))
    registry.relate("fact_contents", "facts", (("certname", "certname"), ("name", "name")))
    registry.relate("reports", "events", (("hash", "report"),))
    registry.relate("events", "reports", (("report", "hash"),))
    registry.link("environments", "name", "environment")
    registry.share("certname")


def store_entities() -> EntityRegistry:
    """A registry with the store's entities only (a bare store's)."""
    registry = EntityRegistry()
    register(registry)
    return registry
