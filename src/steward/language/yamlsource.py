"""YAML loading that remembers where every value came from and refuses duplicate keys.

PyYAML silently keeps the last of two equal keys and forgets line numbers once it has built
Python objects. We compose the node graph with the C parser, then build plain values ourselves,
recording the line of every mapping key and sequence item in a :class:`SourceMap` keyed by the
value's path, so later stages (schema validation, the compiler) can point at ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from steward.language.errors import DuplicateKeyError, RepositoryError, at

Path_ = tuple[Any, ...]

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_SCALAR_TAGS = frozenset(
    {
        _STR,
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:timestamp",
    }
)
_MAX_DEPTH = 200
#: Values one YAML document may expand to. Aliases are copied where they are used, so a few
#: lines of nested anchors ("billion laughs") would otherwise build an exponential tree.
MAX_YAML_VALUES = 1_000_000


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Lines of the values in one parsed file, by path (mapping keys and sequence indexes)."""

    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    #: Paths whose scalar is a block scalar (``|`` or ``>``): its text starts on the next line.
    block: frozenset[Path_] = frozenset()

    def line(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest recorded ancestor."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return 1

    def where(self, path: Path_) -> str:
        return at(self.file, self.line(path))

    def text_line(self, path: Path_, offset: int = 1) -> int:
        """Line of line ``offset`` (1-based) inside the string at ``path``."""
        base = self.line(path) + (1 if path in self.block else 0)
        return base + offset - 1


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data (dict/list/str/int/float/bool/None)."""
    try:
        node = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = err.problem or err.context or "invalid YAML"
        raise RepositoryError(f"invalid YAML: {problem}", location=at(file, line)) from None
    except yaml.YAMLError as err:
        raise RepositoryError(f"invalid YAML: {err}", location=file) from None
    builder = _Builder(file)
    if node is None:
        return None, SourceMap(file, {(): 1})
    builder.lines[()] = node.start_mark.line + 1
    value = builder.build(node, (), 0)
    return value, SourceMap(file, builder.lines, frozenset(builder.block))


class _Builder:
    """Turns a composed node graph into plain values, recording lines as it goes."""

    def __init__(self, file: str, built: list[int] | None = None) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.block: set[Path_] = set()
        self.constructor = SafeConstructor()
        #: Values built so far in this document, shared with the builders of merged mappings.
        self.built = built if built is not None else [0]

    def build(self, node: Node, path: Path_, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise RepositoryError(
                "YAML nested too deeply (recursive alias?)", location=self._at(node)
            )
        self.built[0] += 1
        if self.built[0] > MAX_YAML_VALUES:
            raise RepositoryError(
                f"YAML expands to more than {MAX_YAML_VALUES} values (aliases are copied where "
                "they are used); see docs/language.md#limits",
                location=self._at(node),
            )
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            items: list[Any] = []
            for index, child in enumerate(node.value):
                self.lines[(*path, index)] = child.start_mark.line + 1
                items.append(self.build(child, (*path, index), depth + 1))
            return items
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise RepositoryError("unsupported YAML node", location=self._at(node))

    def _scalar(self, node: ScalarNode, path: Path_) -> Any:
        tag = node.tag
        if tag not in _SCALAR_TAGS:
            raise RepositoryError(
                f"unsupported YAML tag {tag!r} (only plain data is allowed)",
                location=self._at(node),
            )
        if node.style in ("|", ">"):
            self.block.add(path)
        if tag in (_STR, "tag:yaml.org,2002:timestamp"):
            # Timestamps stay text: catalogs are JSON and dates have no JSON type.
            return str(node.value)
        return self.constructor.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        merged: list[dict[Any, Any]] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node, path, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                raise RepositoryError(
                    "mapping keys must be plain scalars", location=at(self.file, line)
                )
            key = self._scalar(key_node, (*path, "<key>"))
            if key in seen:
                raise DuplicateKeyError(
                    f"duplicate key {key!r} in the same mapping (first at line {seen[key]}, "
                    f"again at line {line})",
                    location=at(self.file, line),
                )
            seen[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for source in merged:
            for key, value in source.items():
                if key not in result:
                    result[key] = value
        return result

    def _merge_sources(self, node: Node, path: Path_, depth: int) -> list[dict[Any, Any]]:
        """Values of a ``<<`` merge key: one mapping or a list of mappings (aliases, usually)."""
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        sources: list[dict[Any, Any]] = []
        for item in nodes:
            if not isinstance(item, MappingNode):
                raise RepositoryError(
                    "a '<<' merge key needs a mapping or a list of mappings",
                    location=self._at(item),
                )
            # Lines inside a merged mapping belong to where it was written, not to this path.
            sources.append(_Builder(self.file, self.built).build(item, path, depth + 1))
        return sources

    def _at(self, node: Node) -> str:
        return at(self.file, node.start_mark.line + 1)
