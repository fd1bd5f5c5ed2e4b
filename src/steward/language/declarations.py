"""What a loaded repository is made of: settings, profiles, roles, rules and files.

Frozen, so one :class:`~steward.language.repository.Repository` can be shared by any number of
compilations; built by :mod:`steward.language.declaration_parsing` and the loader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jinja2 import Template

from steward.catalog.types import Param
from steward.language.jinja import FastPath
from steward.language.values import Value
from steward.language.yamlsource import SourceMap

#: Resource keys the compiler consumes itself; never passed to the engine.
DECLARATION_KEYS = ("tags", "when", "for_each")
#: Compile-time file parameters turned into ``content``.
CONTENT_SOURCES = ("template", "source")
#: Parameters that are filesystem paths: must be absolute, normalised by the compiler.
PATH_PARAMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "file": ("path",),
        "directory": ("path",),
        "symlink": ("path",),
        "line": ("path",),
        "host": ("target",),
    }
)


@dataclass(frozen=True, slots=True)
class HierarchyLevel:
    pattern: str
    #: Literal text, or a variable path: ("node",), ("role",), ("environment",), ("facts", ...).
    parts: tuple[str | tuple[str, ...], ...]
    line: int


@dataclass(frozen=True, slots=True)
class Settings:
    file: str
    default_environment: str
    data_dir: str
    merge: str
    hierarchy: tuple[HierarchyLevel, ...]


@dataclass(frozen=True, slots=True)
class ParamDecl:
    """A profile parameter as declared."""

    name: str
    type: str
    default: Value | None
    required: bool
    allowed: tuple[Any, ...] | None
    description: str | None
    file: str
    line: int
    default_line: int


@dataclass(frozen=True, slots=True)
class ResourceParam:
    name: str
    value: Value
    line: int
    #: The type's declaration (None for relationship/declaration keys).
    param: Param | None
    #: Relationship targets, normalised, when the value is a constant (parsed once at load).
    refs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ResourceDecl:
    """One ``type[title]`` entry of a profile, split into what is fixed and what is evaluated."""

    type: str
    key: str
    title: Value
    #: The title when it is a constant.
    static_title: str | None
    file: str
    line: int
    namevar: str
    #: Parameters holding filesystem paths (absolute, normalised).
    path_params: tuple[str, ...]
    #: Constant parameters, already type-checked at load: copied as they are.
    static_params: tuple[tuple[str, Any], ...]
    #: Parameters holding expressions, evaluated and checked per node.
    dynamic_params: tuple[ResourceParam, ...]
    relationships: tuple[ResourceParam, ...]
    tags: ResourceParam | None
    #: The declaration's own tags when constant (``()`` when there are none).
    static_tags: tuple[str, ...] | None
    when: ResourceParam | None
    for_each: ResourceParam | None
    #: ``template:`` or ``source:`` (file only), rendered into ``content``.
    content_source: ResourceParam | None
    #: ``static_params`` as a dict, which the compiler copies for each instance (never
    #: modified itself).
    static_mapping: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    file: str
    description: str | None
    parameters: Mapping[str, ParamDecl]
    resources: tuple[ResourceDecl, ...]


@dataclass(frozen=True, slots=True)
class ProfileParamValue:
    name: str
    value: Value
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Inclusion:
    """A profile included by a role or a classification rule, with parameter values."""

    profile: str
    params: tuple[ProfileParamValue, ...]
    #: The values as written, to tell "included twice the same way" from a conflict.
    raw: Mapping[str, Any]
    file: str
    line: int
    #: Who included it: "role web" or "rule 'web servers'".
    origin: str


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    file: str
    description: str | None
    profiles: tuple[Inclusion, ...]


@dataclass(frozen=True, slots=True)
class FactMatch:
    path: tuple[str, ...]
    expected: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    file: str
    line: int
    index: int
    priority: int
    node_glob: re.Pattern[str] | None
    node_regex: re.Pattern[str] | None
    facts: tuple[FactMatch, ...]
    roles: tuple[str, ...] | None
    roles_line: int
    environment: str | None
    environment_line: int
    profiles: tuple[Inclusion, ...]


@dataclass(frozen=True, slots=True)
class Classification:
    file: str
    default: Rule
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str
    data: Mapping[str, Any]
    source: SourceMap
    digest: str


@dataclass(frozen=True, slots=True)
class TemplateFile:
    name: str
    path: str
    template: Template
    digest: str
    #: Repository paths of this template and every template it includes/imports/extends.
    closure: tuple[str, ...]
    #: When the template is only text and dotted names, the same text without a Jinja
    #: render (see :func:`steward.language.jinja.compile_parts`).
    fast: FastPath | None = None


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str
    content: bytes
    digest: str
