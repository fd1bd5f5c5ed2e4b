"""Pydantic models of the repository files, as written (before expressions are compiled).

They are the single description of each file's shape: :func:`validate` turns a pydantic error
into a ``file:line: field: problem`` message using the :class:`SourceMap`, and
:mod:`steward.language.schema` exports them as JSON Schema for editors and agents.
Models are strict (no ``"5"`` → ``5`` coercion) and forbid unknown fields, so typos fail loudly.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from steward.language.errors import RepositoryError, did_you_mean
from steward.language.yamlsource import SourceMap

MergeStrategy = Literal["first", "unique", "hash", "deep"]
ParamType = Literal["string", "integer", "boolean", "list", "map", "any"]

DEFAULT_HIERARCHY = (
    "nodes/{node}.yaml",
    "roles/{role}.yaml",
    "os/{facts.os.family}.yaml",
    "common.yaml",
)


def _profiles_in(value: Any) -> Any:
    """Accept ``[a, b]`` or ``{a: {params}, b: ~}``; always yield ``{name: {params}}``."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ValueError("a list of profiles must hold profile names (strings)")
        duplicates = sorted({item for item in value if value.count(item) > 1})
        if duplicates:
            raise ValueError(f"profile {duplicates[0]!r} is listed twice")
        return {item: {} for item in value}
    if isinstance(value, dict):
        return {key: ({} if params is None else params) for key, params in value.items()}
    raise ValueError("expected a list of profile names or a mapping of profile → parameters")


def _names_in(value: Any) -> Any:
    """Accept one role name or a list of them."""
    return [value] if isinstance(value, str) else value


def _body_in(value: Any) -> Any:
    """A resource declared with no parameters (``package[git]:``) has an empty body."""
    return {} if value is None else value


ProfileParams = Annotated[
    dict[str, dict[str, Any]],
    BeforeValidator(
        _profiles_in, json_schema_input_type=list[str] | dict[str, dict[str, Any] | None]
    ),
]
RoleNames = Annotated[list[str], BeforeValidator(_names_in, json_schema_input_type=str | list[str])]
ResourceBody = Annotated[
    dict[str, Any], BeforeValidator(_body_in, json_schema_input_type=dict[str, Any] | None)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SettingsFile(_Model):
    """``steward.yaml``: repository-wide settings."""

    default_environment: str = Field(
        default="production", description="Environment of nodes no classification rule places."
    )
    data_dir: str = Field(default="data", description="Directory of hierarchical data files.")
    merge: MergeStrategy = Field(default="first", description="Default lookup merge strategy.")
    hierarchy: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HIERARCHY),
        description="Data files under data_dir, most specific first. {node}, {role}, "
        "{environment} and {facts.dotted.path} are interpolated; a level naming a missing "
        "fact or role is skipped.",
    )


class ParameterSpec(_Model):
    """One profile parameter."""

    type: ParamType = Field(default="any", description="Type the value must have.")
    default: Any = Field(default=None, description="Value when neither the role nor data give one.")
    required: bool = Field(
        default=False, description="Fail when no value is given or found in data."
    )
    allowed: list[Any] | None = Field(default=None, description="The only values accepted.")
    description: str | None = None


class ProfileFile(_Model):
    """``profiles/<name>.yaml``: parameters and the resources they shape."""

    description: str | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    resources: dict[str, ResourceBody] = Field(
        default_factory=dict,
        description="'type[title]' → parameters, in the order they are applied by default.",
    )


class RoleFile(_Model):
    """``roles/<name>.yaml``: which profiles a node of this role gets, with which values."""

    description: str | None = None
    profiles: ProfileParams = Field(default_factory=dict)


class MatchSpec(_Model):
    """What a node must look like for a rule to apply; every given criterion must hold."""

    node: str | None = Field(default=None, description="Glob on the node name (fnmatch).")
    node_regex: str | None = Field(
        default=None, description="Regular expression searched in the name."
    )
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted fact path → expected value; a list means any of its values.",
    )


class RuleSpec(_Model):
    """One classification rule."""

    name: str
    match: MatchSpec = MatchSpec()
    role: RoleNames | None = None
    environment: str | None = None
    profiles: ProfileParams = Field(default_factory=dict)
    priority: int = 0


class DefaultSpec(_Model):
    """Applies to every node, below every rule."""

    environment: str | None = None
    role: RoleNames | None = None
    profiles: ProfileParams = Field(default_factory=dict)


class ClassificationFile(_Model):
    """``classification.yaml``: rules mapping nodes to environment, roles and extra profiles."""

    default: DefaultSpec = DefaultSpec()
    rules: list[RuleSpec] = Field(default_factory=list)


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, source: SourceMap) -> M:
    """Validate ``data`` against ``model``; the first problem becomes a located RepositoryError."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        path = _data_path(data, first["loc"])
        field = field_path(path) or "(document)"
        if first["type"] == "extra_forbidden":
            name = str(path[-1]) if path else ""
            known = _fields_at(model, path[:-1])
            message = f"unknown field {name!r}{did_you_mean(name, known)}"
            if known:
                message += f"; expected one of: {', '.join(sorted(known))}"
        elif first["type"] == "missing":
            message = "this field is required"
        else:
            message = first["msg"]
        raise RepositoryError(f"{field}: {message}", location=source.where(path)) from None


def field_path(path: tuple[Any, ...]) -> str:
    """``("rules", 0, "name")`` → ``rules[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _data_path(data: Any, loc: tuple[int | str, ...]) -> tuple[Any, ...]:
    """Keep the parts of a pydantic ``loc`` that index the data (drops union-branch labels)."""
    path: list[Any] = []
    current = data
    for part in loc:
        if _indexes(current, part):
            path.append(part)
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and part not in current:
            # A missing or unknown field: report it by name at its parent's line.
            if not part.startswith(("function-", "list[", "dict[")):
                path.append(part)
            break
    return tuple(path)


def _indexes(container: Any, part: int | str) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def _fields_at(model: type[BaseModel], path: tuple[Any, ...]) -> set[str]:
    """Field names of the model found at ``path`` inside ``model`` (for did-you-mean)."""
    current: Any = model
    for part in path:
        current = _descend(current, part)
        if current is None:
            return set()
    current = _unwrap_model(current)
    return set(current.model_fields) if current is not None else set()


def _descend(annotation: Any, part: Any) -> Any:
    model = _unwrap_model(annotation)
    if model is not None:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _descend(typing.get_args(annotation)[0], part)
    if origin in (dict, list):
        return typing.get_args(annotation)[-1]
    return None


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None
