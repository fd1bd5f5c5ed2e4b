"""JSON Schemas of the repository files, for editors (completion, hover docs) and agents.

The file shapes come from the pydantic models; resource declarations are generated from
``steward.catalog.types.TYPES`` so every type's parameters, their documentation, allowed values
and defaults are offered as completions. ``scripts/gen_schemas.py`` writes them to
``schemas/repo/``; a test keeps the committed files current.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from steward.catalog.types import META_PARAMS, RELATIONSHIP_PARAMS, TYPES, Param, ResourceType
from steward.language.models import ClassificationFile, ProfileFile, RoleFile, SettingsFile

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_EXPRESSION = {
    "type": "string",
    "pattern": r"\{\{|\{%",
    "description": "A Jinja expression, evaluated per node ('{{ expr }}' alone gives its "
    "native value).",
}
_LOOKUP = {
    "type": "object",
    "description": "Hierarchical data lookup.",
    "properties": {
        "lookup": {"type": "string", "description": "Data key, e.g. nginx::workers."},
        "default": {"description": "Value when no data file has the key."},
        "merge": {"enum": ["first", "unique", "hash", "deep"]},
    },
    "required": ["lookup"],
    "additionalProperties": False,
}
_SECRET = {
    "type": "object",
    "description": "A value from the secrets store; never written into the catalog.",
    "properties": {"secret": {"type": "string", "description": "Secret name."}},
    "required": ["secret"],
    "additionalProperties": False,
}
_DYNAMIC = [{"$ref": "#/$defs/expression"}, {"$ref": "#/$defs/lookup"}]
_REF = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*\[.+\]$"}

_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "content": {"type": "string"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "mode": {"type": "string", "pattern": r"^0?[0-7]{3,4}$"},
    "id": {"type": ["string", "integer"]},
    "strings": {"type": "array", "items": {"type": "string"}},
    "integers": {"type": "array", "items": {"type": "integer"}},
    "map": {"type": "object", "additionalProperties": {"type": "string"}},
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every repository schema, by file name under ``schemas/repo/``."""
    return {
        "steward.schema.json": _document(SettingsFile, "steward.yaml"),
        "classification.schema.json": _document(ClassificationFile, "classification.yaml"),
        "role.schema.json": _document(RoleFile, "roles/<name>.yaml"),
        "profile.schema.json": _profile_schema(),
    }


def render_schemas() -> dict[str, str]:
    """The schema files' exact text (sorted keys, two-space indent, trailing newline)."""
    return {
        name: json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, schema in json_schemas().items()
    }


def _document(model: type[BaseModel], file: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["description"] = _one_line(schema.get("description", "").replace("``", "'"))
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["title"] = f"Steward {file}"
    return schema


def _profile_schema() -> dict[str, Any]:
    schema = _document(ProfileFile, "profiles/<name>.yaml")
    definitions = schema.setdefault("$defs", {})
    definitions["expression"] = _EXPRESSION
    definitions["lookup"] = _LOOKUP
    definitions["secret"] = _SECRET
    definitions["reference"] = {
        "anyOf": [_REF, {"type": "array", "items": _REF}, {"$ref": "#/$defs/expression"}],
        "description": "A resource reference type[title], or a list of them.",
    }
    pattern: dict[str, Any] = {}
    for name, rtype in sorted(TYPES.items()):
        definitions[f"resource_{name}"] = _resource_schema(rtype)
        pattern[rf"^{name}\[.+\]$"] = {
            "anyOf": [{"$ref": f"#/$defs/resource_{name}"}, {"type": "null"}]
        }
    names = "|".join(sorted(TYPES))
    schema["properties"]["resources"] = {
        "type": "object",
        "description": "'type[title]' → parameters, in the order they are applied by default. "
        "Titles may use expressions ('file[/var/www/{{ item }}]').",
        "propertyNames": {"pattern": rf"^({names})\[.+\]$"},
        "patternProperties": pattern,
        "additionalProperties": False,
    }
    return schema


def _resource_schema(rtype: ResourceType) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for param in (*rtype.params, *META_PARAMS):
        properties[param.name] = _param_schema(param)
    for relationship in RELATIONSHIP_PARAMS:
        properties[relationship] = {
            "$ref": "#/$defs/reference",
            "description": _RELATIONSHIP_DOCS[relationship],
        }
    properties["tags"] = {
        "description": "Extra tags for this resource.",
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"$ref": "#/$defs/expression"},
        ],
    }
    properties["when"] = {
        "description": "Expression; when falsy the resource is left out of the catalog.",
        "anyOf": [{"type": "boolean"}, {"$ref": "#/$defs/expression"}],
    }
    properties["for_each"] = {
        "description": "A list (item) or a mapping (item.key, item.value): one resource per "
        "entry. The title must then differ per item.",
        "anyOf": [{"type": "array"}, {"type": "object"}, {"$ref": "#/$defs/expression"}],
    }
    required = [p.name for p in rtype.params if p.required and not p.namevar]
    schema: dict[str, Any] = {
        "type": "object",
        "description": _one_line(rtype.doc),
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _param_schema(param: Param) -> dict[str, Any]:
    base = dict(_KIND_SCHEMAS[param.kind])
    if param.allowed and not param.open_allowed:
        base = {"enum": list(param.allowed)}
    options: list[dict[str, Any]] = [base, *_DYNAMIC]
    if param.kind in ("string", "content"):
        options.append({"$ref": "#/$defs/secret"})
    schema: dict[str, Any] = {"description": _one_line(param.doc), "anyOf": options}
    if param.default is not None:
        schema["default"] = param.default
    if param.allowed and param.open_allowed:
        schema["examples"] = list(param.allowed)
    return schema


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


_RELATIONSHIP_DOCS = {
    "require": "Apply these resources before this one.",
    "before": "Apply this resource before these.",
    "notify": "Apply this resource first and refresh these when it changes.",
    "subscribe": "Apply these first and refresh this resource when they change.",
}
