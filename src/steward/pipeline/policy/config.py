"""``policies.yaml``: which Rego policies exist, how hard each one blocks, and where it applies.

```yaml
policies:
  - name: sshd_config                  # the module is package steward.policies.sshd_config
    file: sshd_config.rego
    level: soft-mandatory              # advisory | soft-mandatory | hard-mandatory
    environments: [production, staging]   # or "*"
    description: sshd configuration changes need security approval
    override_roles: [security]         # soft-mandatory only; default [admin, approver]
```

Errors name ``policies.yaml:line`` and the field, like every other Steward configuration file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from steward.errors import StewardError
from steward.language.errors import did_you_mean
from steward.language.yamlsource import SourceMap, load_yaml
from steward.pipeline.policy.errors import PolicyConfigError

Level = Literal["advisory", "soft-mandatory", "hard-mandatory"]
LEVELS: tuple[Level, ...] = ("advisory", "soft-mandatory", "hard-mandatory")
DEFAULT_OVERRIDE_ROLES = ("admin", "approver")
CONFIG_FILE = "policies.yaml"
PACKAGE_PREFIX = "steward.policies."

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FIELDS = ("name", "file", "level", "environments", "description", "override_roles")


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One policy entry: its module, enforcement level and the environments it guards."""

    name: str
    file: Path
    level: Level
    #: ``None`` means every environment ("*").
    environments: tuple[str, ...] | None
    description: str
    #: Roles that may override a failure; only soft-mandatory policies have any.
    override_roles: tuple[str, ...]
    #: ``policies.yaml:line`` of the entry, for messages.
    declared_at: str

    @property
    def package(self) -> str:
        return PACKAGE_PREFIX + self.name

    @property
    def rule(self) -> str:
        """The rule evaluated: ``steward.policies.<name>.deny``."""
        return f"{self.package}.deny"

    def applies_to(self, environment: str) -> bool:
        return self.environments is None or environment in self.environments


def load_policy_config(directory: Path) -> tuple[PolicySpec, ...]:
    """The policies declared in ``<directory>/policies.yaml``, in file order."""
    path = directory / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyConfigError(f"no {CONFIG_FILE} in policy directory {directory}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyConfigError(f"cannot read {path}: {exc}") from None
    try:
        document, source = load_yaml(text, str(path))
    except StewardError as exc:
        raise PolicyConfigError(exc.message, location=exc.location) from None
    if not isinstance(document, dict) or not isinstance(document.get("policies"), list):
        raise PolicyConfigError("expected a mapping with a 'policies' list",
                                location=source.where(()))
    for key in document:
        if key != "policies":
            raise PolicyConfigError(f"unknown field {key!r}{did_you_mean(str(key), ['policies'])}",
                                    location=source.where((key,)))
    specs: list[PolicySpec] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(document["policies"]):
        spec = _spec(directory, entry, ("policies", index), source)
        if spec.name in seen:
            raise PolicyConfigError(
                f"policy {spec.name!r} is declared twice (first at {seen[spec.name]})",
                location=spec.declared_at)
        seen[spec.name] = spec.declared_at
        specs.append(spec)
    return tuple(specs)


def _spec(directory: Path, entry: Any, at: tuple[Any, ...], source: SourceMap) -> PolicySpec:
    where = source.where(at)
    if not isinstance(entry, dict):
        raise PolicyConfigError("each policy must be a mapping (name, file, level, ...)",
                                location=where)
    for key in entry:
        if key not in _FIELDS:
            raise PolicyConfigError(
                f"unknown field {key!r}{did_you_mean(str(key), _FIELDS)}",
                location=source.where((*at, key)))

    def field_at(key: str) -> str:
        return source.where((*at, key)) if key in entry else where

    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PolicyConfigError(
            "'name' must be a lower-case identifier (letters, digits, '_'), the last part of "
            "the module's package steward.policies.<name>", location=field_at("name"))
    file = entry.get("file")
    if not isinstance(file, str) or not file.endswith(".rego") or file.endswith("_test.rego"):
        raise PolicyConfigError(f"policy {name!r}: 'file' must name a .rego module "
                                "(not a *_test.rego file)", location=field_at("file"))
    module = (directory / file).resolve()
    if not module.is_relative_to(directory.resolve()):
        raise PolicyConfigError(f"policy {name!r}: 'file' must stay inside {directory}",
                                location=field_at("file"))
    if not module.is_file():
        raise PolicyConfigError(f"policy {name!r}: no such file {directory / file}",
                                location=field_at("file"))
    level = entry.get("level")
    if level not in LEVELS:
        raise PolicyConfigError(
            f"policy {name!r}: 'level' must be one of {', '.join(LEVELS)}"
            + (did_you_mean(level, LEVELS) if isinstance(level, str) else ""),
            location=field_at("level"))
    environments = _environments(name, entry.get("environments", "*"), field_at("environments"))
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise PolicyConfigError(f"policy {name!r}: 'description' must be a string",
                                location=field_at("description"))
    roles = _roles(name, level, entry, field_at("override_roles"))
    return PolicySpec(name=name, file=directory / file, level=cast(Level, level),
                      environments=environments, description=description.strip(),
                      override_roles=roles, declared_at=where)


def _environments(name: str, value: Any, where: str) -> tuple[str, ...] | None:
    if value == "*":
        return None
    if (not isinstance(value, list) or not value
            or not all(isinstance(env, str) and env for env in value)):
        raise PolicyConfigError(
            f"policy {name!r}: 'environments' must be \"*\" or a non-empty list of "
            "environment names", location=where)
    return tuple(sorted(set(value)))


def _roles(name: str, level: str, entry: dict[str, Any], where: str) -> tuple[str, ...]:
    if "override_roles" not in entry:
        return DEFAULT_OVERRIDE_ROLES if level == "soft-mandatory" else ()
    if level != "soft-mandatory":
        raise PolicyConfigError(
            f"policy {name!r}: 'override_roles' only applies to soft-mandatory policies "
            f"({level} ones cannot be overridden)" if level == "hard-mandatory" else
            f"policy {name!r}: 'override_roles' only applies to soft-mandatory policies "
            "(advisory ones never block)", location=where)
    roles = entry["override_roles"]
    if (not isinstance(roles, list) or not roles
            or not all(isinstance(role, str) and role for role in roles)):
        raise PolicyConfigError(
            f"policy {name!r}: 'override_roles' must be a non-empty list of role names",
            location=where)
    return tuple(sorted(set(roles)))
