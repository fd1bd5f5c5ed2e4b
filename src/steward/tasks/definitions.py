"""Tasks: pre-approved, parameterised actions kept in the desired-state repository.

A task is ``tasks/<name>.yaml`` (metadata, shaped like Bolt's task metadata) beside its script
``tasks/<name>.sh`` or ``tasks/<name>.py``. It is read from an environment branch's tip, so a
task reaches nodes only through a reviewed change, like any other desired state. Metadata and
parameters are validated *before* anything runs: a bad task file or a bad parameter is an
error naming the file, line and field, never a half-started job.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from steward.errors import StewardError
from steward.gitrepo import DesiredStateRepo

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TYPES = ("string", "integer", "boolean")
_TOP_KEYS = frozenset({"description", "parameters", "supports_noop", "read_only", "timeout"})
_PARAM_KEYS = frozenset({"description", "type", "enum", "pattern", "default", "sensitive",
                         "required", "minimum", "maximum"})
DEFAULT_TIMEOUT = 60


class TaskError(StewardError):
    """A task file is invalid, missing, or asked with invalid parameters."""


class TaskNotFound(TaskError):
    """No such task in that environment (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class TaskParam:
    name: str
    type: str
    description: str = ""
    required: bool = False
    default: Any = None
    enum: tuple[Any, ...] | None = None
    pattern: str | None = None
    sensitive: bool = False
    minimum: int | None = None
    maximum: int | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"type": self.type, "description": self.description,
                                    "required": self.required, "sensitive": self.sensitive}
        for key in ("default", "pattern", "minimum", "maximum"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        if self.enum is not None:
            document["enum"] = list(self.enum)
        return document


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task as an environment's tip defines it."""

    name: str
    environment: str
    commit: str
    description: str
    parameters: tuple[TaskParam, ...]
    supports_noop: bool
    read_only: bool
    timeout: int
    script_name: str
    script: str

    @property
    def permission(self) -> str:
        """What running it needs: read-only tasks need only ``task:run_readonly``."""
        return "task:run_readonly" if self.read_only else "task:run"

    def sensitive(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters if p.sensitive)

    def to_json(self, *, with_script: bool = False) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name, "environment": self.environment, "commit": self.commit,
            "description": self.description, "supports_noop": self.supports_noop,
            "read_only": self.read_only, "timeout": self.timeout, "script": self.script_name,
            "parameters": {p.name: p.to_json() for p in self.parameters},
        }
        if with_script:
            document["source"] = self.script
        return document

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Checked, typed parameters (defaults filled in), or :class:`TaskError` naming one."""
        known = {p.name: p for p in self.parameters}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TaskError(f"task {self.name!r} has no parameter {unknown[0]!r} "
                            f"(it takes: {', '.join(sorted(known)) or 'none'})")
        result: dict[str, Any] = {}
        for param in self.parameters:
            if param.name not in params:
                if param.default is not None:
                    result[param.name] = param.default
                elif param.required:
                    raise TaskError(f"task {self.name!r}: parameter {param.name!r} is required")
                continue
            result[param.name] = _coerce(self.name, param, params[param.name])
        return result


def _coerce(task: str, param: TaskParam, value: Any) -> Any:
    where = f"task {task!r}: parameter {param.name!r}"
    shown = "(sensitive value)" if param.sensitive else repr(value)
    if param.type == "integer":
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TaskError(f"{where} must be an integer, not {shown}")
        if param.minimum is not None and value < param.minimum:
            raise TaskError(f"{where} must be at least {param.minimum}, not {shown}")
        if param.maximum is not None and value > param.maximum:
            raise TaskError(f"{where} must be at most {param.maximum}, not {shown}")
    elif param.type == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise TaskError(f"{where} must be true or false, not {shown}")
    else:
        if not isinstance(value, str):
            raise TaskError(f"{where} must be a string, not {shown}")
        if param.pattern is not None and not re.fullmatch(param.pattern, value):
            raise TaskError(f"{where} must match /{param.pattern}/, not {shown}")
    if param.enum is not None and value not in param.enum:
        raise TaskError(f"{where} must be one of {', '.join(map(str, param.enum))}, "
                        f"not {shown}")
    return value


def _lines(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of each mapping key path (top level and one level down)."""
    found: dict[tuple[str, ...], int] = {}

    def walk(node: Any, path: tuple[str, ...], depth: int) -> None:
        if not isinstance(node, yaml.MappingNode) or depth > 2:
            return
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                sub = (*path, str(key.value))
                found[sub] = key.start_mark.line + 1
                walk(value, sub, depth + 1)

    with contextlib.suppress(yaml.YAMLError):
        walk(yaml.compose(text), (), 0)
    return found


def parse_task(name: str, text: str, *, environment: str = "", commit: str = "",
               script_name: str = "", script: str = "") -> TaskSpec:
    """A :class:`TaskSpec` from metadata text, or :class:`TaskError` naming file:line/field."""
    path = f"tasks/{name}.yaml"
    if not _NAME.match(name):
        raise TaskError(f"{path}: task names are lower-case letters, digits and '_'")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise TaskError(f"{path}{line}: not valid YAML: "
                        f"{getattr(exc, 'problem', None) or exc}") from None
    lines = _lines(text)

    def fail(field: tuple[str, ...], message: str) -> TaskError:
        line = lines.get(field)
        return TaskError(f"{path}{f':{line}' if line else ''}: {'.'.join(field)}: {message}")

    if not isinstance(document, dict):
        raise TaskError(f"{path}: the metadata must be a mapping")
    for key in sorted(map(str, document)):
        if key not in _TOP_KEYS:
            raise fail((key,), f"unknown field (known: {', '.join(sorted(_TOP_KEYS))})")
    description = document.get("description", "")
    if not isinstance(description, str) or not description:
        raise fail(("description",), "a non-empty string is required")
    flags: dict[str, bool] = {}
    for key in ("supports_noop", "read_only"):
        value = document.get(key, False)
        if not isinstance(value, bool):
            raise fail((key,), "must be true or false")
        flags[key] = value
    timeout = document.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 3600:
        raise fail(("timeout",), "must be an integer number of seconds in 1..3600")
    raw_params = document.get("parameters") or {}
    if not isinstance(raw_params, dict):
        raise fail(("parameters",), "must be a mapping of parameter name to its schema")
    params: list[TaskParam] = []
    for pname in sorted(map(str, raw_params)):
        spec = raw_params[pname]
        field = ("parameters", pname)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", pname) or pname.startswith("_"):
            raise fail(field, "parameter names are lower-case letters, digits and '_'")
        if not isinstance(spec, dict):
            raise fail(field, "must be a mapping (type, description, ...)")
        for key in sorted(map(str, spec)):
            if key not in _PARAM_KEYS:
                raise fail((*field, key),
                           f"unknown field (known: {', '.join(sorted(_PARAM_KEYS))})")
        ptype = spec.get("type", "string")
        if ptype not in _TYPES:
            raise fail((*field, "type"), f"must be one of {', '.join(_TYPES)}, not {ptype!r}")
        enum = spec.get("enum")
        if enum is not None and (not isinstance(enum, list) or not enum):
            raise fail((*field, "enum"), "must be a non-empty list")
        pattern = spec.get("pattern")
        if pattern is not None:
            if ptype != "string" or not isinstance(pattern, str):
                raise fail((*field, "pattern"), "only string parameters take a pattern")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail((*field, "pattern"), f"not a valid regular expression: {exc}") \
                    from None
        for key in ("sensitive", "required"):
            if not isinstance(spec.get(key, False), bool):
                raise fail((*field, key), "must be true or false")
        for key in ("minimum", "maximum"):
            if spec.get(key) is not None and (ptype != "integer"
                                              or not isinstance(spec[key], int)):
                raise fail((*field, key), "only integer parameters take an integer bound")
        param = TaskParam(name=pname, type=ptype, description=str(spec.get("description", "")),
                          required=bool(spec.get("required", False)),
                          enum=tuple(enum) if enum is not None else None, pattern=pattern,
                          sensitive=bool(spec.get("sensitive", False)),
                          minimum=spec.get("minimum"), maximum=spec.get("maximum"))
        if spec.get("default") is not None:
            try:
                default = _coerce(name, param, spec["default"])
            except TaskError as exc:
                raise fail((*field, "default"), str(exc)) from None
            param = TaskParam(**{**{k: getattr(param, k) for k in param.__slots__},
                                 "default": default})
        params.append(param)
    return TaskSpec(name=name, environment=environment, commit=commit,
                    description=description, parameters=tuple(params),
                    supports_noop=flags["supports_noop"], read_only=flags["read_only"],
                    timeout=timeout, script_name=script_name, script=script)


class TaskCatalog:
    """Reads tasks from the tips of environment branches."""

    def __init__(self, repo: DesiredStateRepo) -> None:
        self.repo = repo

    def _tip(self, environment: str) -> str:
        tip = self.repo.branches().get(environment)
        if tip is None:
            raise TaskError(f"no environment branch {environment!r} in the desired-state "
                            "repository")
        return tip

    def names(self, environment: str) -> list[str]:
        files = self.repo.list_files(self._tip(environment))
        return sorted(f[len("tasks/"):-len(".yaml")] for f in files
                      if f.startswith("tasks/") and f.endswith(".yaml") and f.count("/") == 1)

    def get(self, environment: str, name: str) -> TaskSpec:
        commit = self._tip(environment)
        if not _NAME.match(name):
            raise TaskNotFound(f"{name!r} is not a task name (lower-case letters, digits, '_')")
        raw = self.repo.read_file(commit, f"tasks/{name}.yaml")
        if raw is None:
            raise TaskNotFound(f"no task {name!r} in environment {environment!r} "
                               f"(tasks/{name}.yaml at {commit[:12]})")
        for suffix in (".sh", ".py"):
            script = self.repo.read_file(commit, f"tasks/{name}{suffix}")
            if script is not None:
                break
        else:
            raise TaskError(f"tasks/{name}.yaml in environment {environment!r} has no script "
                            f"(tasks/{name}.sh or tasks/{name}.py)")
        return parse_task(name, raw.decode("utf-8", "replace"), environment=environment,
                          commit=commit, script_name=f"{name}{suffix}",
                          script=script.decode("utf-8", "replace"))

    def list(self, environment: str) -> list[TaskSpec]:
        return [self.get(environment, name) for name in self.names(environment)]
