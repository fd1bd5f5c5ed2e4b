"""The impact report as typed values: what the analysis builds and the pipeline reads.

Frozen slotted dataclasses rather than validating models: a report of thousands of nodes
is built resource by resource in the compile workers (and pickled back from them), so
construction must cost no more than the dictionaries it replaces. ``to_json`` gives the
versioned document of ``schemas/impact-report.schema.json`` (the form that is hashed,
stored and served); ``from_json`` reads one back. Keys the schema marks optional
(``sensitive``, ``sensitive_inputs``, ``digest_changed``) are None when absent, so every
document reads back to the same bytes and its digest still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from steward.access.principal import Principal
from steward.catalog.canonical import canonical_json, content_hash

JSONObject = dict[str, Any]


def _optional(document: JSONObject, key: str, value: Any) -> JSONObject:
    if value is not None:
        document[key] = value
    return document


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a catalog declares a resource."""

    file: str | None
    line: int | None

    def to_json(self) -> JSONObject:
        return {"file": self.file, "line": self.line}

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> Provenance | None:
        return None if document is None else cls(document["file"], document["line"])


@dataclass(frozen=True, slots=True)
class PropertyChange:
    """One parameter before → after (None: absent); a secret shows as the one marker."""

    name: str
    before: Any
    after: Any
    sensitive: bool
    #: For sensitive values: whether the keyed digest differs (None: not a sensitive value).
    digest_changed: bool | None = None

    def to_json(self) -> JSONObject:
        return _optional({"name": self.name, "before": self.before, "after": self.after,
                          "sensitive": self.sensitive}, "digest_changed", self.digest_changed)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PropertyChange:
        return cls(document["name"], document["before"], document["after"],
                   document["sensitive"], document.get("digest_changed"))


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """A resource added, removed or modified between the current and proposed catalogs."""

    resource: str
    type: str
    title: str
    action: str
    before: Provenance | None
    after: Provenance | None
    properties: tuple[PropertyChange, ...]
    content_diff: str | None
    #: The resource carries a sensitive value on either side (None: not said).
    sensitive: bool | None = None

    def to_json(self) -> JSONObject:
        return _optional({
            "resource": self.resource, "type": self.type, "title": self.title,
            "action": self.action,
            "before": self.before.to_json() if self.before is not None else None,
            "after": self.after.to_json() if self.after is not None else None,
            "properties": [p.to_json() for p in self.properties],
            "content_diff": self.content_diff,
        }, "sensitive", self.sensitive)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ResourceChange:
        return cls(document["resource"], document["type"], document["title"],
                   document["action"], Provenance.from_json(document["before"]),
                   Provenance.from_json(document["after"]),
                   tuple(PropertyChange.from_json(p) for p in document["properties"]),
                   document["content_diff"], document.get("sensitive"))


@dataclass(frozen=True, slots=True)
class EdgeChange:
    action: str
    source: str
    target: str
    relationship: str

    def to_json(self) -> JSONObject:
        return {"action": self.action, "source": self.source, "target": self.target,
                "relationship": self.relationship}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> EdgeChange:
        return cls(document["action"], document["source"], document["target"],
                   document["relationship"])


@dataclass(frozen=True, slots=True)
class CompileFailure:
    """A compile error, its secrets scrubbed."""

    message: str
    location: str | None

    def to_json(self) -> JSONObject:
        return {"message": self.message, "location": self.location}

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> CompileFailure | None:
        return None if document is None else cls(document["message"], document["location"])


@dataclass(frozen=True, slots=True)
class CurrentSide:
    """The base compile of a node (and the hash of its catalog in the store)."""

    catalog: str | None
    code_id: str | None
    stored: str | None
    error: CompileFailure | None

    def to_json(self) -> JSONObject:
        return {"catalog": self.catalog, "code_id": self.code_id, "stored": self.stored,
                "error": self.error.to_json() if self.error is not None else None}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> CurrentSide:
        return cls(document["catalog"], document["code_id"], document["stored"],
                   CompileFailure.from_json(document["error"]))


@dataclass(frozen=True, slots=True)
class ProposedSide:
    """The head compile of a node, and the environment it will be in."""

    catalog: str | None
    code_id: str | None
    environment: str | None

    def to_json(self) -> JSONObject:
        return {"catalog": self.catalog, "code_id": self.code_id,
                "environment": self.environment}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ProposedSide:
        return cls(document["catalog"], document["code_id"], document["environment"])


@dataclass(frozen=True, slots=True)
class ClassificationChange:
    """Roles, profiles and rules before → after."""

    before: JSONObject
    after: JSONObject

    def to_json(self) -> JSONObject:
        return {"before": self.before, "after": self.after}

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> ClassificationChange | None:
        return None if document is None else cls(document["before"], document["after"])


@dataclass(frozen=True, slots=True)
class LivePrediction:
    """A node's answer to a live prediction (see :mod:`steward.pipeline.impact.live`)."""

    status: str
    exit_code: int | None
    report: str | None
    events: tuple[JSONObject, ...]
    failures: tuple[JSONObject, ...]
    detail: str | None

    def to_json(self) -> JSONObject:
        return {"status": self.status, "exit_code": self.exit_code, "report": self.report,
                "events": [dict(e) for e in self.events],
                "failures": [dict(f) for f in self.failures], "detail": self.detail}

    @classmethod
    def from_json(cls, document: Mapping[str, Any] | None) -> LivePrediction | None:
        if document is None:
            return None
        return cls(document["status"], document["exit_code"], document["report"],
                   tuple(document["events"]), tuple(document["failures"]),
                   document["detail"])


@dataclass(frozen=True, slots=True)
class NodeImpact:
    """One node's entry: its status, both compiles, and its resource-level diff."""

    certname: str
    status: str
    current: CurrentSide
    proposed: ProposedSide
    classification: ClassificationChange | None
    resources: tuple[ResourceChange, ...]
    edges: tuple[EdgeChange, ...]
    #: Changed files feeding a secret-bearing resource (None: not said).
    sensitive_inputs: tuple[str, ...] | None
    error: CompileFailure | None
    live: LivePrediction | None

    def to_json(self) -> JSONObject:
        return _optional({
            "certname": self.certname, "status": self.status,
            "current": self.current.to_json(), "proposed": self.proposed.to_json(),
            "classification": self.classification.to_json()
            if self.classification is not None else None,
            "resources": [r.to_json() for r in self.resources],
            "edges": [e.to_json() for e in self.edges],
            "error": self.error.to_json() if self.error is not None else None,
            "live": self.live.to_json() if self.live is not None else None,
        }, "sensitive_inputs",
            list(self.sensitive_inputs) if self.sensitive_inputs is not None else None)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> NodeImpact:
        inputs = document.get("sensitive_inputs")
        return cls(document["certname"], document["status"],
                   CurrentSide.from_json(document["current"]),
                   ProposedSide.from_json(document["proposed"]),
                   ClassificationChange.from_json(document["classification"]),
                   tuple(ResourceChange.from_json(r) for r in document["resources"]),
                   tuple(EdgeChange.from_json(e) for e in document["edges"]),
                   tuple(inputs) if inputs is not None else None,
                   CompileFailure.from_json(document["error"]),
                   LivePrediction.from_json(document["live"]))


@dataclass(frozen=True, slots=True)
class ImpactChange:
    """The change analysed: its sides and what it touches."""

    id: str | None
    environment: str
    base: str | None
    head: str | None
    #: Who proposed it; the report names it by name and kind only.
    proposer: Principal | None
    changed_files: tuple[str, ...]
    changed_data_keys: tuple[str, ...]

    def to_json(self) -> JSONObject:
        return {"id": self.id, "environment": self.environment, "base": self.base,
                "head": self.head,
                "proposer": {"name": self.proposer.name, "kind": self.proposer.kind}
                if self.proposer is not None else None,
                "changed_files": list(self.changed_files),
                "changed_data_keys": list(self.changed_data_keys)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ImpactChange:
        proposer = document["proposer"]
        return cls(document["id"], document["environment"], document["base"],
                   document["head"],
                   Principal(proposer["name"], proposer["kind"]) if proposer is not None
                   else None,
                   tuple(document["changed_files"]), tuple(document["changed_data_keys"]))


@dataclass(frozen=True, slots=True)
class ImpactSelection:
    """Which nodes were recompiled, and why."""

    mode: str
    reason: str
    nodes_in_environment: int
    nodes_recompiled: int
    nodes_without_inputs: int
    nodes_classified_from_other_environments: int

    def to_json(self) -> JSONObject:
        return {"mode": self.mode, "reason": self.reason,
                "nodes_in_environment": self.nodes_in_environment,
                "nodes_recompiled": self.nodes_recompiled,
                "nodes_without_inputs": self.nodes_without_inputs,
                "nodes_classified_from_other_environments":
                    self.nodes_classified_from_other_environments}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ImpactSelection:
        return cls(document["mode"], document["reason"], document["nodes_in_environment"],
                   document["nodes_recompiled"], document["nodes_without_inputs"],
                   document["nodes_classified_from_other_environments"])


@dataclass(frozen=True, slots=True)
class BlastRadius:
    nodes: int
    resources: int
    #: Affected nodes as a percentage of the environment's, two decimals.
    percent: float

    def to_json(self) -> JSONObject:
        return {"nodes": self.nodes, "resources": self.resources, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class SensitiveSummary:
    """What touches a secret (see :mod:`steward.pipeline.impact.summary`)."""

    nodes: int
    resources: int
    values: int
    inputs: tuple[str, ...]

    def to_json(self) -> JSONObject:
        return {"nodes": self.nodes, "resources": self.resources, "values": self.values,
                "inputs": list(self.inputs)}


@dataclass(frozen=True, slots=True)
class ImpactSummary:
    """Counts, blast radius and risk with its reasons."""

    nodes_affected: int
    nodes_changed: int
    nodes_failed: int
    nodes_unchanged: int
    nodes_new: int
    nodes_removed: int
    resources_added: int
    resources_removed: int
    resources_modified: int
    blast_radius: BlastRadius
    risk: str
    risk_reasons: tuple[str, ...]
    sensitive: SensitiveSummary | None = None

    def to_json(self) -> JSONObject:
        return _optional({
            "nodes_affected": self.nodes_affected, "nodes_changed": self.nodes_changed,
            "nodes_failed": self.nodes_failed, "nodes_unchanged": self.nodes_unchanged,
            "nodes_new": self.nodes_new, "nodes_removed": self.nodes_removed,
            "resources_added": self.resources_added,
            "resources_removed": self.resources_removed,
            "resources_modified": self.resources_modified,
            "blast_radius": self.blast_radius.to_json(), "risk": self.risk,
            "risk_reasons": list(self.risk_reasons),
        }, "sensitive", self.sensitive.to_json() if self.sensitive is not None else None)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ImpactSummary:
        blast, sensitive = document["blast_radius"], document.get("sensitive")
        return cls(
            document["nodes_affected"], document["nodes_changed"], document["nodes_failed"],
            document["nodes_unchanged"], document["nodes_new"], document["nodes_removed"],
            document["resources_added"], document["resources_removed"],
            document["resources_modified"],
            BlastRadius(blast["nodes"], blast["resources"], blast["percent"]),
            document["risk"], tuple(document["risk_reasons"]),
            SensitiveSummary(sensitive["nodes"], sensitive["resources"], sensitive["values"],
                             tuple(sensitive["inputs"])) if sensitive is not None else None)


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """The whole report (format 1); ``digest`` is ``sha256:`` of everything else."""

    format: int
    change: ImpactChange
    selection: ImpactSelection
    summary: ImpactSummary
    nodes: tuple[NodeImpact, ...]
    digest: str

    def body(self) -> JSONObject:
        """The document without its digest: what the digest is computed over."""
        return {"format": self.format, "change": self.change.to_json(),
                "selection": self.selection.to_json(), "summary": self.summary.to_json(),
                "nodes": [node.to_json() for node in self.nodes]}

    def to_json(self) -> JSONObject:
        return {**self.body(), "digest": self.digest}

    def json_text(self) -> str:
        """The canonical JSON text (sorted keys, no whitespace): what is stored."""
        return canonical_json(self.to_json())

    def sealed(self) -> ImpactReport:
        """This report with its digest computed from the rest."""
        return replace(self, digest=content_hash(self.body()))

    def verify_digest(self) -> bool:
        """Whether ``digest`` still matches the rest of the report."""
        return self.digest == content_hash(self.body())

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ImpactReport:
        return cls(document["format"], ImpactChange.from_json(document["change"]),
                   ImpactSelection.from_json(document["selection"]),
                   ImpactSummary.from_json(document["summary"]),
                   tuple(NodeImpact.from_json(n) for n in document["nodes"]),
                   document["digest"])
