"""Catalog documents: resources, edges, inputs, and the content hash that identifies them.

The wire form is documented in ``schemas/catalog.schema.json`` and ``docs/catalog.md``.
Edges follow PuppetDB's convention: the source is always applied before the target, and the
relationship names say which side declared it (``require`` on B naming A becomes
``A required-by B``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from steward.catalog.canonical import canonical_json, content_hash
from steward.errors import CatalogError

CATALOG_FORMAT = 1

#: Relationship names on edges (PuppetDB's, plus our materialised automatic dependencies).
RELATIONSHIPS = ("before", "required-by", "notifies", "subscription-of", "autorequire")
#: Relationships along which a change of the source triggers a refresh of the target.
REFRESH_RELATIONSHIPS = frozenset({"notifies", "subscription-of"})

_REF = re.compile(r"^(?P<type>[a-z][a-z0-9_]*)\[(?P<title>.+)\]$", re.DOTALL)


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``type[title]`` into its parts; raises ValueError with the offending text."""
    match = _REF.match(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise ValueError(f"{ref!r} is not a resource reference of the form type[title]")
    return match.group("type"), match.group("title")


def make_ref(type_name: str, title: str) -> str:
    return f"{type_name}[{title}]"


@dataclass(frozen=True, slots=True)
class Resource:
    type: str
    title: str
    parameters: dict[str, Any]
    tags: tuple[str, ...] = ()
    file: str | None = None
    line: int | None = None

    @property
    def ref(self) -> str:
        return make_ref(self.type, self.title)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "title": self.title,
            "parameters": self.parameters,
            "tags": list(self.tags),
            "file": self.file,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    relationship: str

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "relationship": self.relationship}


@dataclass(slots=True)
class Catalog:
    node: str
    environment: str
    resources: list[Resource]
    edges: list[Edge]
    code_id: str | None = None
    classification: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    sensitive: dict[str, str] = field(default_factory=dict)
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """Everything the hash covers: the whole document but the hash itself."""
        return {
            "catalog_format": CATALOG_FORMAT,
            "node": self.node,
            "environment": self.environment,
            "code_id": self.code_id,
            "classification": self.classification,
            "resources": [r.to_json() for r in self.resources],
            "edges": [e.to_json() for e in self.edges],
            "inputs": self.inputs,
            "sensitive": self.sensitive,
        }

    def seal(self) -> Catalog:
        self.hash = content_hash(self.body())
        return self

    def to_json(self) -> dict[str, Any]:
        document = self.body()
        document["hash"] = self.hash or content_hash(document)
        return document

    def dumps(self, *, indent: int | None = 2) -> str:
        return canonical_json(self.to_json(), indent=indent)

    def resource_map(self) -> dict[str, Resource]:
        return {r.ref: r for r in self.resources}

    @classmethod
    def from_json(cls, document: Any, *, source: str = "catalog") -> Catalog:
        """Build from a parsed document, naming the field at fault when it is malformed."""
        if not isinstance(document, dict):
            raise CatalogError("a catalog must be a JSON object", location=source)
        fmt = document.get("catalog_format")
        if fmt != CATALOG_FORMAT:
            raise CatalogError(
                f"unsupported catalog_format {fmt!r} (this engine reads {CATALOG_FORMAT})",
                location=source,
            )
        for key in ("node", "environment"):
            if not isinstance(document.get(key), str):
                raise CatalogError(f"field {key!r} must be a string", location=source)
        resources: list[Resource] = []
        for index, raw in enumerate(_list(document, "resources", source)):
            where = f"{source}: resources[{index}]"
            if not isinstance(raw, dict):
                raise CatalogError("must be an object", location=where)
            type_name, title, params = raw.get("type"), raw.get("title"), raw.get("parameters")
            if not isinstance(type_name, str) or not isinstance(title, str):
                raise CatalogError("'type' and 'title' must be strings", location=where)
            if not isinstance(params, dict):
                raise CatalogError("'parameters' must be an object", location=where)
            line = raw.get("line")
            resources.append(
                Resource(
                    type=type_name,
                    title=title,
                    parameters=params,
                    tags=tuple(raw.get("tags") or ()),
                    file=raw.get("file"),
                    line=line if isinstance(line, int) else None,
                )
            )
        refs = {r.ref for r in resources}
        if len(refs) != len(resources):
            raise CatalogError("duplicate resource references", location=source)
        edges: list[Edge] = []
        for index, raw in enumerate(_list(document, "edges", source)):
            where = f"{source}: edges[{index}]"
            if not isinstance(raw, dict):
                raise CatalogError("must be an object", location=where)
            edge = Edge(
                str(raw.get("source")), str(raw.get("target")), str(raw.get("relationship"))
            )
            if edge.relationship not in RELATIONSHIPS:
                raise CatalogError(f"unknown relationship {edge.relationship!r}", location=where)
            for end in (edge.source, edge.target):
                if end not in refs:
                    raise CatalogError(f"edge names undeclared resource {end}", location=where)
            edges.append(edge)
        return cls(
            node=document["node"],
            environment=document["environment"],
            resources=resources,
            edges=edges,
            code_id=document.get("code_id"),
            classification=dict(document.get("classification") or {}),
            inputs=dict(document.get("inputs") or {}),
            sensitive=dict(document.get("sensitive") or {}),
            hash=str(document.get("hash") or ""),
        )


def _list(document: dict[str, Any], key: str, source: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise CatalogError(f"field {key!r} must be a list", location=source)
    return value
