"""Catalog documents: resources, edges, inputs, and the content hash that identifies them.

The wire form is documented in ``schemas/catalog.schema.json`` and ``docs/catalog.md``.
Edges follow PuppetDB's convention: the source is always applied before the target, and the
relationship names say which side declared it (``require`` on B naming A becomes
``A required-by B``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from steward.catalog.canonical import (
    canonical_json,
    compact_encoder,
    content_hash,
    encode_string,
)
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


# Resource and Edge are frozen dataclasses whose ``__init__`` is written out: the generated one
# sets each field with ``object.__setattr__`` (frozen classes refuse plain assignment), which
# costs more than the rest of building a resource. Writing through the slots' descriptors is
# the same store, and assignment after construction still raises FrozenInstanceError.


@dataclass(frozen=True, slots=True, init=False)
class Resource:
    type: str
    title: str
    parameters: dict[str, Any]
    tags: tuple[str, ...] = ()
    file: str | None = None
    line: int | None = None

    def __init__(
        self,
        type: str,
        title: str,
        parameters: dict[str, Any],
        tags: tuple[str, ...] = (),
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        _set_type(self, type)
        _set_title(self, title)
        _set_parameters(self, parameters)
        _set_tags(self, tags)
        _set_file(self, file)
        _set_line(self, line)

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


@dataclass(frozen=True, slots=True, init=False)
class Edge:
    source: str
    target: str
    relationship: str

    def __init__(self, source: str, target: str, relationship: str) -> None:
        _set_source(self, source)
        _set_target(self, target)
        _set_relationship(self, relationship)

    def to_json(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target, "relationship": self.relationship}


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


_set_type = _slot_setter(Resource, "type")
_set_title = _slot_setter(Resource, "title")
_set_parameters = _slot_setter(Resource, "parameters")
_set_tags = _slot_setter(Resource, "tags")
_set_file = _slot_setter(Resource, "file")
_set_line = _slot_setter(Resource, "line")
_set_source = _slot_setter(Edge, "source")
_set_target = _slot_setter(Edge, "target")
_set_relationship = _slot_setter(Edge, "relationship")


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
    #: What :meth:`seal` serialised: (compact document with its hash, resource count, edge
    #: count). Assigning any field drops it; so does adding or removing resources or edges.
    _sealed: tuple[str, int, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_sealed":
            object.__setattr__(self, "_sealed", None)

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
        """Set ``hash`` from the current contents.

        The compact serialisation is kept so that ``dumps(indent=None)`` does not encode the
        catalog a second time. Changing a field, or the number of resources or edges, makes
        ``dumps`` serialise afresh; a sealed catalog's resources must otherwise not be edited
        in place (seal it again after doing so: the hash would be stale as well).
        """
        head, tail = _compact_body(self)
        digest = hashlib.sha256(head.encode("utf-8"))
        digest.update(b",")
        digest.update(tail.encode("utf-8"))
        self.hash = f"sha256:{digest.hexdigest()}"
        self._sealed = (
            f'{head},"hash":{encode_string(self.hash)},{tail}',
            len(self.resources),
            len(self.edges),
        )
        return self

    def to_json(self) -> dict[str, Any]:
        document = self.body()
        document["hash"] = self.hash or content_hash(document)
        return document

    def dumps(self, *, indent: int | None = 2) -> str:
        sealed = self._sealed
        if (
            indent is None
            and sealed is not None
            and sealed[1] == len(self.resources)
            and sealed[2] == len(self.edges)
        ):
            return sealed[0]
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


def _compact_body(catalog: Catalog) -> tuple[str, str]:
    """``canonical_json(catalog.body())`` split where ``"hash"`` sorts in: before ``inputs``.

    Byte for byte what ``json.dumps`` gives (sorted keys, compact separators, no ASCII
    escaping), but resources and edges, the bulk of a catalog, are assembled from their
    encoded fields, encoding what repeats (references, types, files, tags) once.
    """
    chunks = compact_encoder()

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    head = (
        f'{{"catalog_format":{CATALOG_FORMAT},'
        f'"classification":{encode(catalog.classification)},'
        f'"code_id":{encode(catalog.code_id)},'
        f'"edges":{_compact_edges(catalog.edges, encode)},'
        f'"environment":{encode(catalog.environment)}'
    )
    tail = (
        f'"inputs":{encode(catalog.inputs)},'
        f'"node":{encode(catalog.node)},'
        f'"resources":{_compact_resources(catalog.resources, chunks)},'
        f'"sensitive":{encode(catalog.sensitive)}}}'
    )
    return head, tail


def _compact_resources(
    resources: list[Resource], chunks: Callable[[Any, int], Iterable[str]]
) -> str:
    join = "".join
    string = encode_string
    parts: list[str] = []
    add = parts.append
    # Resources of one declaration come one after the other and share their type, file, line
    # and tags (the very objects): the text around their parameters and title is encoded once
    # per run. Identity, not equality, decides (``1 == True`` but they encode differently).
    kind: Any = _UNSET
    file: Any = _UNSET
    line: Any = _UNSET
    tags: Any = _UNSET
    before = between = after = ""
    for resource in resources:
        if (
            resource.type is not kind
            or resource.file is not file
            or resource.line is not line
            or resource.tags is not tags
        ):
            kind, file, line, tags = resource.type, resource.file, resource.line, resource.tags
            before = (
                f'{{"file":{join(chunks(file, 0))},"line":{join(chunks(line, 0))},"parameters":'
            )
            between = f',"tags":{join(chunks(tags, 0))},"title":'
            after = f',"type":{join(chunks(kind, 0))}}}'
        title = resource.title
        add(
            f"{before}{join(chunks(resource.parameters, 0))}{between}"
            f"{string(title) if type(title) is str else join(chunks(title, 0))}{after}"
        )
    return f"[{','.join(parts)}]"


def _compact_edges(edges: list[Edge], encode: Callable[[Any], str]) -> str:
    encoded = _EncodedStrings()  # each reference encoded once, however many edges it ends
    try:
        parts = [
            f'{{"relationship":{encoded[edge.relationship]},"source":{encoded[edge.source]},'
            f'"target":{encoded[edge.target]}}}'
            for edge in edges
        ]
    except (_NotText, TypeError):
        return encode([edge.to_json() for edge in edges])
    return f"[{','.join(parts)}]"


_UNSET = object()


class _NotText(Exception):
    pass


class _EncodedStrings(dict[str, str]):
    """str → its JSON text, computed on first use; anything but a str is refused (a dict would
    confuse ``1`` with ``True``, which encode differently)."""

    def __missing__(self, key: str) -> str:
        if type(key) is not str:
            raise _NotText
        value = self[key] = encode_string(key)
        return value


def _list(document: dict[str, Any], key: str, source: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise CatalogError(f"field {key!r} must be a list", location=source)
    return value
