"""What each PQL entity is made of: its fields, their types, and the SQL behind them.

Entities and field names are PuppetDB's v4 ones. A field knows its type (which decides the
operators and literals it accepts), how to read it in SQL for a given :class:`Scope` (one
SELECT level, with its own table aliases), and how to render it in a response. Joins are
added only for tables a query actually touches.

The tables are given by name (``tables["nodes"]``): this module knows the store's schema by
its names only, so the query layer does not import the store.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    FromClause,
    Table,
    and_,
    cast,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects import postgresql

from steward.clock import iso as clock_iso
from steward.query.errors import QueryError
from steward.query.sqlexpr import (
    ColumnsValue,
    JsonPathValue,
    PathElement,
    ValueAccess,
    array_any,
)


class Kind(Enum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    #: A JSON value compared by its type (facts, leaves, parameters, event values).
    VALUE = "value"
    #: A fact path: an array, matched with ``=`` (an array literal) or ``~>``.
    PATH = "path"
    #: A whole JSON document (``facts``, ``parameters``): projected, only tested for null.
    DOCUMENT = "document"
    #: Filled from other rows after the query (``resource_events``, catalog ``resources``).
    EXPANDED = "expanded"
    #: Filter-only fields with their own meaning (``tag``, ``node_state``, ``latest_report?``).
    SPECIAL = "special"


class Scope:
    """One SELECT level: its entity, lazily created table aliases, and the joins they need."""

    def __init__(self, entity: Entity, tables: Mapping[str, Table], dialect: str) -> None:
        self.entity = entity
        self.tables = tables
        self.dialect = dialect
        self._aliases: dict[str, FromClause] = {}
        #: Set when the query names deactivated/expired/node_state: no implicit active filter.
        self.names_node_state = False
        #: Expressions built once per scope, so SELECT, GROUP BY and ORDER BY share them
        #: (and their bound parameters, which PostgreSQL needs to see as the same).
        self.memo: dict[str, ColumnElement[Any]] = {}
        #: Typed readings of VALUE fields, likewise built once per scope.
        self.values: dict[str, ValueAccess] = {}

    def t(self, name: str) -> FromClause:
        """The alias of table ``name`` in this scope, joined in if the entity can join it."""
        alias = self._aliases.get(name)
        if alias is None:
            if name != self.entity.base and name not in self.entity.joins:
                raise KeyError(f"entity {self.entity.name} cannot reach table {name}")
            alias = self._aliases[name] = self.tables[name].alias()
        return alias

    def c(self, table: str, column: str) -> ColumnElement[Any]:
        return self.t(table).c[column]

    def from_clause(self) -> FromClause:
        source = self.t(self.entity.base)
        for name, on in self.entity.joins.items():
            if name in self._aliases:
                source = source.join(self._aliases[name], on(self))
        return source

    def fresh(self, name: str) -> FromClause:
        """A new alias of ``name`` for a subquery of this scope's own making."""
        return self.tables[name].alias()


SqlOf = Callable[[Scope], ColumnElement[Any]]
#: Output rendering: (selected value, the raw row with hidden columns) -> JSON value.
Render = Callable[[Any, Mapping[str, Any]], Any]
FilterBuilder = Callable[[ValueAccess], ColumnElement[bool]]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    #: The column or expression; None for fields rendered only from hidden columns.
    sql: SqlOf | None = None
    #: A cheaper join key for ``in`` subqueries between entities keyed by node id.
    key: SqlOf | None = None
    #: For VALUE fields: typed readings of the value.
    value: Callable[[Scope], ValueAccess] | None = None
    #: For VALUE fields whose filters go through another table (inventory's facts.*).
    value_filter: Callable[[Scope, FilterBuilder], ColumnElement[bool]] | None = None
    #: For SPECIAL fields: (scope, operator, literal) -> condition.
    special: Callable[[Scope, str, Any], ColumnElement[bool]] | None = None
    filterable: bool = True
    projectable: bool = True
    render: Render | None = None
    #: Hidden columns ``render`` reads from the raw row.
    needs: tuple[str, ...] = ()
    #: Indexed by this many leading characters (see store.models.TITLE_PREFIX).
    prefix_index: int | None = None
    #: Marks deactivated/expired/node_state: naming it lifts the implicit active filter.
    node_state: bool = False
    #: False when the column is never NULL: count(field) is then count(*).
    nullable: bool = True


@dataclass(frozen=True)
class DottedSpec:
    """Paths below a prefix (``facts.os.family``): a VALUE field made on demand."""

    make: Callable[[str, tuple[PathElement, ...]], Field]


@dataclass
class Entity:
    name: str
    base: str
    fields: dict[str, Field]
    #: Output fields when the query has no projection, in PuppetDB's order.
    default_fields: tuple[str, ...]
    #: Tie-breaking order that makes every response deterministic.
    natural_order: tuple[SqlOf, ...]
    joins: dict[str, Callable[[Scope], ColumnElement[bool]]] = field(default_factory=dict)
    hidden: dict[str, SqlOf] = field(default_factory=dict)
    dotted: dict[str, DottedSpec] = field(default_factory=dict)
    #: Only nodes that are neither deactivated nor expired, unless the query says otherwise.
    active_only: bool = False
    distinct: bool = False
    where: Callable[[Scope], ColumnElement[bool]] | None = None

    def field(self, name: str) -> Field:
        found = self.fields.get(name)
        if found is not None:
            return found
        prefix, dot, rest = name.partition(".")
        if dot and prefix in self.dotted:
            return self.dotted[prefix].make(name, parse_path(name, rest))
        valid = ", ".join(sorted(self.fields))
        dotted = "".join(f", {p}.<path>" for p in sorted(self.dotted))
        raise QueryError(f"unknown field {name!r} for entity {self.name!r}; valid fields: "
                         f"{valid}{dotted}")


# -- paths --------------------------------------------------------------------------------

PATH_SEPARATOR = "#~"
#: Leading characters of fact leaf strings indexed by the store (store.models.VALUE_PREFIX).
VALUE_PREFIX = 100
_SEGMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^.\[\]"]+)')
_INDEX = re.compile(r"\[(\d+)\]")


def parse_path(field_name: str, text: str) -> tuple[PathElement, ...]:
    """``os.family`` -> ("os", "family"); ``models[0]`` -> ("models", 0); quoted segments."""
    path: list[PathElement] = []
    pos = 0
    while True:
        match = _SEGMENT.match(text, pos)
        if match is None:
            raise QueryError(f"field {field_name!r}: cannot read the path at {text[pos:]!r}")
        quoted, plain = match.groups()
        path.append(quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted is not None
                    else plain)
        pos = match.end()
        while (index := _INDEX.match(text, pos)) is not None:
            path.append(int(index.group(1)))
            pos = index.end()
        if pos == len(text):
            return tuple(path)
        if text[pos] != ".":
            raise QueryError(f"field {field_name!r}: unexpected {text[pos]!r} in the path")
        pos += 1


def path_key(path: list[Any] | tuple[Any, ...]) -> str:
    """How a path is stored for matching: elements joined with ``#~`` (as PuppetDB does)."""
    return PATH_SEPARATOR.join(str(p) for p in path)


# -- rendering -----------------------------------------------------------------------------


def iso(value: datetime | str | None) -> str | None:
    """Timestamps as PuppetDB prints them: UTC, milliseconds, ``Z``.

    SQLite's stored form (``2024-05-06 10:00:02.123456``, always UTC) is converted as text.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:23]}Z"
        value = datetime.fromisoformat(value)
    return clock_iso(value, timespec="milliseconds")


def _render_timestamp(value: Any, _row: Mapping[str, Any]) -> Any:
    return iso(value)


def _render_bool(value: Any, _row: Mapping[str, Any]) -> Any:
    return None if value is None else bool(value)


def _render_int(value: Any, _row: Mapping[str, Any]) -> Any:
    return None if value is None else int(value)


# -- field constructors ---------------------------------------------------------------------


def col(table: str, column: str) -> SqlOf:
    return lambda s: s.c(table, column)


def string(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.STRING, sql=col(table, column or name), **kw)


def timestamp(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.TIMESTAMP, sql=col(table, column or name),
                 render=_render_timestamp, **kw)


def boolean(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.BOOLEAN, sql=col(table, column or name), render=_render_bool,
                 **kw)


def number(name: str, table: str, column: str | None = None, **kw: Any) -> Field:
    return Field(name, Kind.NUMBER, sql=col(table, column or name), render=_render_int, **kw)


def document(name: str, table: str, column: str | None = None) -> Field:
    return Field(name, Kind.DOCUMENT, sql=col(table, column or name))


def certname(table: str, *, keyed: bool) -> Field:
    """``certname``: on node-keyed tables the text comes from ``nodes``, the key is the id."""
    if not keyed:
        return string("certname", table, nullable=False)
    key = col("nodes", "id") if table == "nodes" else col(table, "certname_id")
    return Field("certname", Kind.STRING, sql=col("nodes", "certname"), key=key,
                 nullable=False)


def columns_value(table: str, *, indexed_prefix: int | None = None) -> Field:
    """A value split into typed columns; ``indexed_prefix`` as in store.models."""
    return Field("value", Kind.VALUE, sql=col(table, "value"), nullable=False,
                 value=lambda s: ColumnsValue(s.t(table), indexed_prefix=indexed_prefix))


def json_value(name: str, table: str, column: str,
               path: tuple[PathElement, ...] = ()) -> Field:
    def access(s: Scope) -> ValueAccess:
        return JsonPathValue(s.c(table, column), path, s.dialect)

    return Field(name, Kind.VALUE, sql=lambda s: access(s).json(), value=access)


def _join_nodes(table: str) -> Callable[[Scope], ColumnElement[bool]]:
    return lambda s: s.c("nodes", "id") == s.c(table, "certname_id")


# -- special fields ---------------------------------------------------------------------------


def _expect_bool(field_name: str, op: str, value: Any) -> bool:
    if op != "=" or not isinstance(value, bool):
        raise QueryError(f"field {field_name!r} takes only '= true' or '= false'")
    return value


def _node_state(s: Scope, op: str, value: Any) -> ColumnElement[bool]:
    if op != "=" or value not in ("active", "inactive", "any"):
        raise QueryError("field 'node_state' takes = \"active\", \"inactive\" or \"any\"")
    if value == "any":
        return true()
    active = active_filter(s)
    return active if value == "active" else ~active


def _latest_report(report_hash: SqlOf) -> Callable[[Scope, str, Any], ColumnElement[bool]]:
    def build(s: Scope, op: str, value: Any) -> ColumnElement[bool]:
        wanted = _expect_bool("latest_report?", op, value)
        nodes = s.fresh("nodes")
        latest = select(nodes.c.latest_report_hash).where(
            nodes.c.latest_report_hash.is_not(None))
        condition = report_hash(s).in_(latest)
        return condition if wanted else ~condition

    return build


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


NODE_STATE = Field("node_state", Kind.SPECIAL, special=_node_state, projectable=False,
                   node_state=True)


def active_filter(s: Scope) -> ColumnElement[bool]:
    """The node is neither deactivated nor expired."""
    return and_(s.c("nodes", "deactivated").is_(None), s.c("nodes", "expired").is_(None))


# -- rendering of expanded fields ---------------------------------------------------------------


def _factset_facts(value: Any, row: Mapping[str, Any]) -> Any:
    facts = value or {}
    return {
        "href": f"/pdb/query/v4/factsets/{row['_certname']}/facts",
        "data": [{"name": k, "value": facts[k]} for k in sorted(facts)],
    }


def _metrics(value: Any, row: Mapping[str, Any]) -> Any:
    data = [
        {"category": category, "name": name, "value": amount}
        for category in sorted(value or {})
        for name, amount in sorted((value or {})[category].items())
    ]
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/metrics", "data": data}


@functools.lru_cache(maxsize=1024)
def puppet_type(name: str) -> str:
    """PuppetDB's spelling of a resource type: each ``::`` segment capitalised."""
    return "::".join(segment[:1].upper() + segment[1:] for segment in name.split("::"))


def _report_resources(value: Any, row: Mapping[str, Any]) -> Any:
    """The run's per-resource statuses (PE's ``resources``), types spelled as in events."""
    statuses = json.loads(zlib.decompress(value)) if value else []
    for status in statuses:
        status["resource_type"] = puppet_type(status.get("resource_type", ""))
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/resources", "data": statuses}


def _logs(value: Any, row: Mapping[str, Any]) -> Any:
    return {"href": f"/pdb/query/v4/reports/{row['_hash']}/logs", "data": list(value or [])}


# -- the entities --------------------------------------------------------------------------------


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


#: The server's audit log (steward.server.db.audit), readable where the server registers it.
AUDIT_TABLE = "steward_audit"


def _audit_parameters_json(s: Scope) -> ColumnElement[Any]:
    """The entry's parameters: canonical JSON text in the table (it is hashed byte for
    byte), read as a JSON document (``jsonb`` on PostgreSQL)."""
    column = s.c(AUDIT_TABLE, "parameters")
    if s.dialect == "postgresql":
        return cast(column, postgresql.JSONB())
    return type_coerce(column, JSON())


def _audit_available(s: Scope) -> ColumnElement[bool]:
    """A query error, not a crash, where the audit table is not registered (a bare store)."""
    if AUDIT_TABLE not in s.tables:
        raise QueryError("the 'audit' entity is available only on the Steward server")
    return true()


#: The change pipeline's tables (steward.pipeline), readable where the server registers them.
CHANGES_TABLE = "steward_changes"
DEPLOYMENTS_TABLE = "steward_deployments"
JOBS_TABLE = "steward_jobs"
JOB_RESULTS_TABLE = "steward_job_results"


def _pipeline_available(table: str, entity: str) -> Callable[[Scope], ColumnElement[bool]]:
    def check(s: Scope) -> ColumnElement[bool]:
        if table not in s.tables:
            raise QueryError(f"the '{entity}' entity is available only on a Steward server "
                             "with the change pipeline (a git repository of desired state)")
        return true()

    return check


def _audit_parameter(name: str, path: tuple[PathElement, ...]) -> Field:
    def access(s: Scope) -> ValueAccess:
        return JsonPathValue(_audit_parameters_json(s), path, s.dialect)

    return Field(name, Kind.VALUE, sql=lambda s: access(s).json(), value=access)


def _containment_path(_value: Any, row: Mapping[str, Any]) -> Any:
    ref = f"{row['_resource_type']}[{row['_resource_title']}]"
    klass = row["_containing_class"]
    return [klass, ref] if klass else [ref]


def build_entities() -> dict[str, Entity]:
    nodes = Entity(
        name="nodes",
        base="nodes",
        active_only=True,
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
    facts = Entity(
        name="facts",
        base="facts",
        active_only=True,
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
    fact_contents = Entity(
        name="fact_contents",
        base="fact_contents",
        active_only=True,
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
    fact_paths = Entity(
        name="fact_paths",
        base="fact_paths",
        fields={f.name: f for f in (
            Field("path", Kind.PATH, sql=col("fact_paths", "path")),
            string("type", "fact_paths"),
        )},
        default_fields=("path", "type"),
        natural_order=(col("fact_paths", "path_key"), col("fact_paths", "type")),
    )
    fact_names = Entity(
        name="fact_names",
        base="fact_paths",
        fields={"name": string("name", "fact_paths")},
        default_fields=("name",),
        natural_order=(col("fact_paths", "name"),),
        distinct=True,
        where=lambda s: s.c("fact_paths", "depth") == 0,
    )
    inventory = Entity(
        name="inventory",
        base="factsets",
        active_only=True,
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
    factsets = Entity(
        name="factsets",
        base="factsets",
        active_only=True,
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
    resources = Entity(
        name="resources",
        base="resources",
        active_only=True,
        joins={"nodes": _join_nodes("resources")},
        fields={f.name: f for f in (
            certname("resources", keyed=True),
            string("resource", "resources"),
            string("type", "resources"),
            string("title", "resources", prefix_index=200),
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
    edges = Entity(
        name="edges",
        base="edges",
        active_only=True,
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
    catalogs = Entity(
        name="catalogs",
        base="catalogs",
        active_only=True,
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
                  needs=("_certname_id", "_certname")),
            Field("edges", Kind.EXPANDED, filterable=False,
                  needs=("_certname_id", "_certname")),
            NODE_STATE,
        )},
        hidden={"_certname_id": col("catalogs", "certname_id"),
                "_certname": col("nodes", "certname")},
        default_fields=("certname", "version", "environment", "catalog_uuid", "code_id",
                        "producer_timestamp", "producer", "hash", "classification", "inputs",
                        "resources", "edges"),
        natural_order=(col("nodes", "certname"),),
    )
    reports = Entity(
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
            Field("resource_events", Kind.EXPANDED, filterable=False, needs=("_hash",)),
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
    events = Entity(
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
    environments = Entity(
        name="environments",
        base="environments",
        fields={"name": string("name", "environments")},
        default_fields=("name",),
        natural_order=(col("environments", "name"),),
    )
    audit = Entity(
        name="audit",
        base=AUDIT_TABLE,
        fields={f.name: f for f in (
            number("id", AUDIT_TABLE, nullable=False),
            timestamp("at", AUDIT_TABLE, nullable=False),
            string("actor", AUDIT_TABLE, nullable=False),
            string("actor_kind", AUDIT_TABLE, nullable=False),
            string("action", AUDIT_TABLE, nullable=False),
            string("target", AUDIT_TABLE),
            string("outcome", AUDIT_TABLE, nullable=False),
            string("reason", AUDIT_TABLE),
            string("remote", AUDIT_TABLE),
            string("request_id", AUDIT_TABLE),
            Field("parameters", Kind.DOCUMENT, sql=_audit_parameters_json),
        )},
        dotted={"parameters": DottedSpec(_audit_parameter)},
        default_fields=("id", "at", "actor", "actor_kind", "action", "target", "outcome",
                        "reason", "remote", "request_id", "parameters"),
        natural_order=(col(AUDIT_TABLE, "id"),),
        where=_audit_available,
    )
    changes = Entity(
        name="changes",
        base=CHANGES_TABLE,
        fields={f.name: f for f in (
            string("id", CHANGES_TABLE, nullable=False),
            string("title", CHANGES_TABLE, nullable=False),
            string("proposer", CHANGES_TABLE, "proposer_name", nullable=False),
            string("proposer_kind", CHANGES_TABLE, nullable=False),
            string("environment", CHANGES_TABLE, nullable=False),
            string("state", CHANGES_TABLE, nullable=False),
            string("kind", CHANGES_TABLE, nullable=False),
            string("parent", CHANGES_TABLE, "parent_id"),
            string("base", CHANGES_TABLE, nullable=False),
            string("head", CHANGES_TABLE, nullable=False),
            string("impact_digest", CHANGES_TABLE),
            timestamp("created_at", CHANGES_TABLE, nullable=False),
            timestamp("updated_at", CHANGES_TABLE, nullable=False),
        )},
        default_fields=("id", "title", "proposer", "proposer_kind", "environment", "state",
                        "kind", "parent", "base", "head", "impact_digest", "created_at",
                        "updated_at"),
        natural_order=(col(CHANGES_TABLE, "seq"),),
        where=_pipeline_available(CHANGES_TABLE, "changes"),
    )
    deployments = Entity(
        name="deployments",
        base=DEPLOYMENTS_TABLE,
        fields={f.name: f for f in (
            string("id", DEPLOYMENTS_TABLE, nullable=False),
            string("change", DEPLOYMENTS_TABLE, "change_id", nullable=False),
            string("environment", DEPLOYMENTS_TABLE, nullable=False),
            string("commit", DEPLOYMENTS_TABLE, nullable=False),
            string("state", DEPLOYMENTS_TABLE, nullable=False),
            string("started_by", DEPLOYMENTS_TABLE, nullable=False),
            timestamp("started_at", DEPLOYMENTS_TABLE, nullable=False),
            timestamp("finished_at", DEPLOYMENTS_TABLE),
            string("detail", DEPLOYMENTS_TABLE),
        )},
        default_fields=("id", "change", "environment", "commit", "state", "started_by",
                        "started_at", "finished_at", "detail"),
        natural_order=(col(DEPLOYMENTS_TABLE, "started_at"), col(DEPLOYMENTS_TABLE, "id")),
        where=_pipeline_available(DEPLOYMENTS_TABLE, "deployments"),
    )
    jobs = Entity(
        name="jobs",
        base=JOBS_TABLE,
        fields={f.name: f for f in (
            string("id", JOBS_TABLE, nullable=False),
            string("task", JOBS_TABLE, nullable=False),
            string("environment", JOBS_TABLE, nullable=False),
            number("noop", JOBS_TABLE, nullable=False),
            string("query", JOBS_TABLE, nullable=False),
            string("requested_by", JOBS_TABLE, nullable=False),
            string("state", JOBS_TABLE, nullable=False),
            timestamp("created_at", JOBS_TABLE, nullable=False),
            timestamp("finished_at", JOBS_TABLE),
        )},
        default_fields=("id", "task", "environment", "noop", "query", "requested_by", "state",
                        "created_at", "finished_at"),
        natural_order=(col(JOBS_TABLE, "created_at"), col(JOBS_TABLE, "id")),
        where=_pipeline_available(JOBS_TABLE, "jobs"),
    )
    job_results = Entity(
        name="job_results",
        base=JOB_RESULTS_TABLE,
        fields={f.name: f for f in (
            string("job", JOB_RESULTS_TABLE, "job_id", nullable=False),
            string("certname", JOB_RESULTS_TABLE, nullable=False),
            string("environment", JOB_RESULTS_TABLE, nullable=False),
            string("state", JOB_RESULTS_TABLE, nullable=False),
            number("exit_code", JOB_RESULTS_TABLE),
            string("output", JOB_RESULTS_TABLE),
            timestamp("started_at", JOB_RESULTS_TABLE),
            timestamp("finished_at", JOB_RESULTS_TABLE),
        )},
        default_fields=("job", "certname", "environment", "state", "exit_code", "output",
                        "started_at", "finished_at"),
        natural_order=(col(JOB_RESULTS_TABLE, "job_id"), col(JOB_RESULTS_TABLE, "certname")),
        where=_pipeline_available(JOB_RESULTS_TABLE, "job_results"),
    )
    everything = (nodes, facts, fact_contents, fact_paths, fact_names, inventory, factsets,
                  resources, edges, catalogs, reports, events, environments, audit, changes,
                  deployments, jobs, job_results)
    return {e.name: e for e in everything}


ENTITIES = build_entities()


def entity(name: Any) -> Entity:
    """An entity by name; PuppetDB's endpoint spellings (``fact-contents``) are accepted."""
    found = ENTITIES.get(name.replace("-", "_")) if isinstance(name, str) else None
    if found is None:
        raise QueryError(f"unknown entity {name!r}; valid entities: "
                         f"{', '.join(sorted(ENTITIES))}")
    return found


#: Implicit subqueries (``nodes { facts { ... } }``): which fields relate two entities.
_RELATIONS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("facts", "fact_contents"): (("certname", "certname"), ("name", "name")),
    ("fact_contents", "facts"): (("certname", "certname"), ("name", "name")),
    ("reports", "events"): (("hash", "report"),),
    ("events", "reports"): (("report", "hash"),),
}


def relation(outer: Entity, inner: Entity) -> tuple[tuple[str, str], ...]:
    found = _RELATIONS.get((outer.name, inner.name))
    if found is not None:
        return found
    if inner.name == "environments" and "environment" in outer.fields:
        return (("environment", "name"),)
    if outer.name == "environments" and "environment" in inner.fields:
        return (("name", "environment"),)
    if "certname" in outer.fields and "certname" in inner.fields:
        return (("certname", "certname"),)
    raise QueryError(
        f"{outer.name!r} has no implicit relationship with {inner.name!r}; use an explicit "
        f"subquery: <field> in {inner.name}[<field>] {{ ... }}"
    )

