"""Loading a desired-state repository into an immutable, pre-compiled :class:`Repository`.

Everything that does not depend on a node happens here, once: YAML parsing with line numbers,
schema validation, cross-file checks (roles name existing profiles, rules name existing roles),
classification of every string into constant or expression, compilation of every expression and
template, and content digests of every file. Compiling a catalog then only evaluates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from steward.language.checks import check_profile_value
from steward.language.declaration_parsing import (
    parse_hierarchy_level,
    parse_inclusions,
    parse_resource,
    parse_rule,
)
from steward.language.declarations import (
    Classification,
    DataFile,
    ParamDecl,
    Profile,
    Role,
    Rule,
    Settings,
    StaticFile,
    TemplateFile,
)
from steward.language.errors import ParameterError, RepositoryError, TemplateError, at
from steward.language.jinja import (
    TEMPLATES_DIR,
    FastPath,
    compile_parts,
    make_environment,
    simple_parts,
)
from steward.language.models import (
    ClassificationFile,
    ProfileFile,
    RoleFile,
    SettingsFile,
    validate,
)
from steward.language.values import Const, compile_value
from steward.language.yamlsource import SourceMap, load_yaml

#: Bytes of one repository file: read whole, so bounded before it is read (a rendered value is
#: bounded separately, by the compile limits).
MAX_FILE_BYTES = 16 * 1024 * 1024

SETTINGS_FILE = "steward.yaml"
CLASSIFICATION_FILE = "classification.yaml"
ROLES_DIR = "roles"
PROFILES_DIR = "profiles"
FILES_DIR = "files"
YAML_SUFFIXES = (".yaml", ".yml")
DATA_SUFFIXES = (".yaml", ".yml", ".json")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Mapping methods; a parameter named like one could not be read as ``params.<name>``.
_RESERVED_PARAM_NAMES = frozenset(
    {
        "items",
        "keys",
        "values",
        "get",
        "pop",
        "popitem",
        "update",
        "copy",
        "clear",
        "setdefault",
        "fromkeys",
    }
)


@dataclass(frozen=True, slots=True)
class Repository:
    """A parsed, validated and pre-compiled repository; safe to share between compilations."""

    root: Path
    settings: Settings
    classification: Classification
    roles: Mapping[str, Role]
    profiles: Mapping[str, Profile]
    #: Data files by path relative to the data directory.
    data: Mapping[str, DataFile]
    #: Templates by name relative to templates/.
    templates: Mapping[str, TemplateFile]
    #: Static files by name relative to files/.
    files: Mapping[str, StaticFile]
    #: ``sha256:<hex>`` of every loaded file by repository-relative path.
    digests: Mapping[str, str]
    env: ImmutableSandboxedEnvironment


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_repository(path: str | Path) -> Repository:
    """Load the repository at ``path``; raises a located StewardError on any problem."""
    root = Path(path)
    if not root.is_dir():
        raise RepositoryError(f"repository directory {str(root)!r} does not exist")
    return _Loader(root.resolve()).load()


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}

    def load(self) -> Repository:
        settings = self._settings()
        sources = self._read_tree(TEMPLATES_DIR, suffixes=None)
        template_text = {name: self._decode(TEMPLATES_DIR, name, raw) for name, raw in sources}
        env = make_environment(template_text)
        templates = self._templates(env, template_text)
        files = {
            name: StaticFile(f"{FILES_DIR}/{name}", raw, self._digest(f"{FILES_DIR}/{name}", raw))
            for name, raw in self._read_tree(FILES_DIR, suffixes=None)
        }
        profiles = {
            name: self._profile(name, rel, raw, env)
            for name, rel, raw in self._named_yaml(PROFILES_DIR)
        }
        roles = {
            name: self._role(name, rel, raw, env, profiles)
            for name, rel, raw in self._named_yaml(ROLES_DIR)
        }
        classification = self._classification(env, roles, profiles)
        data = self._data(settings.data_dir)
        return Repository(
            root=self.root,
            settings=settings,
            classification=classification,
            roles=MappingProxyType(roles),
            profiles=MappingProxyType(profiles),
            data=MappingProxyType(data),
            templates=MappingProxyType(templates),
            files=MappingProxyType(files),
            digests=MappingProxyType(dict(sorted(self.digests.items()))),
            env=env,
        )

    # -- files ---------------------------------------------------------------------------------

    def _digest(self, rel: str, raw: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.digests[rel] = digest
        return digest

    def _read(self, rel: str) -> bytes | None:
        target = self.root / rel
        if not target.is_file():
            return None
        self._confined(target, rel)
        try:
            size = target.stat().st_size
            if size > MAX_FILE_BYTES:
                raise RepositoryError(
                    f"is {size} bytes, more than the limit of {MAX_FILE_BYTES} for one "
                    "repository file; see docs/language.md#limits",
                    location=rel,
                )
            raw = target.read_bytes()
        except OSError as err:
            raise RepositoryError(f"cannot read: {err.strerror}", location=rel) from None
        self._digest(rel, raw)
        return raw

    def _confined(self, target: Path, rel: str) -> None:
        """Refuse symlinks leading out of the repository: the compiler reads nothing else."""
        resolved = target.resolve()
        if not resolved.is_relative_to(self.root):
            raise RepositoryError(f"points outside the repository (to {resolved})", location=rel)

    def _decode(self, base: str, name: str, raw: bytes) -> str:
        return self._text(f"{base}/{name}", raw)

    def _text(self, rel: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RepositoryError(f"not UTF-8 text (byte {err.start})", location=rel) from None

    def _read_tree(self, base: str, suffixes: tuple[str, ...] | None) -> list[tuple[str, bytes]]:
        """(name relative to ``base``, bytes) of every non-hidden file below it, sorted."""
        top = self.root / base
        if not top.is_dir():
            return []
        found: list[tuple[str, bytes]] = []
        for entry in sorted(top.rglob("*")):
            rel_inside = entry.relative_to(top).as_posix()
            if any(part.startswith(".") for part in rel_inside.split("/")) or not entry.is_file():
                continue
            if suffixes is not None and not entry.name.endswith(suffixes):
                continue
            raw = self._read(f"{base}/{rel_inside}")
            if raw is not None:
                found.append((rel_inside, raw))
        return found

    def _yaml(self, rel: str, raw: bytes) -> tuple[Any, SourceMap]:
        return load_yaml(self._text(rel, raw), rel)

    def _named_yaml(self, base: str) -> list[tuple[str, str, Any]]:
        """(name, repository path, parsed) for roles/ or profiles/, refusing name clashes."""
        named: dict[str, str] = {}
        result: list[tuple[str, str, Any]] = []
        for rel_inside, raw in self._read_tree(base, YAML_SUFFIXES):
            rel = f"{base}/{rel_inside}"
            name = rel_inside.rsplit(".", 1)[0]
            if not _NAME.match(name):
                raise RepositoryError(
                    f"{name!r} is not a valid name (letters, digits, '_', '-', '.', '/')",
                    location=rel,
                )
            if name in named:
                raise RepositoryError(
                    f"{base[:-1]} {name!r} is defined twice (also in {named[name]})", location=rel
                )
            named[name] = rel
            result.append((name, rel, self._yaml(rel, raw)))
        return result

    # -- steward.yaml --------------------------------------------------------------------------

    def _settings(self) -> Settings:
        raw = self._read(SETTINGS_FILE)
        data, source = (
            self._yaml(SETTINGS_FILE, raw) if raw is not None else (None, SourceMap(SETTINGS_FILE))
        )
        model = validate(SettingsFile, data, source)
        data_dir = model.data_dir.strip("/")
        if not data_dir or ".." in data_dir.split("/") or model.data_dir.startswith("/"):
            raise RepositoryError(
                "data_dir: must be a relative directory inside the repository",
                location=source.where(("data_dir",)),
            )
        levels = tuple(
            parse_hierarchy_level(
                pattern, source.where(("hierarchy", i)), source.line(("hierarchy", i))
            )
            for i, pattern in enumerate(model.hierarchy)
        )
        return Settings(SETTINGS_FILE, model.default_environment, data_dir, model.merge, levels)

    # -- templates -----------------------------------------------------------------------------

    def _templates(
        self, env: ImmutableSandboxedEnvironment, sources: Mapping[str, str]
    ) -> dict[str, TemplateFile]:
        direct: dict[str, set[str]] = {}
        compiled: dict[str, Template] = {}
        fast: dict[str, FastPath] = {}
        for name, text in sources.items():
            path = f"{TEMPLATES_DIR}/{name}"
            try:
                tree = env.parse(text, name, path)
                refs = set(meta.find_referenced_templates(tree))
                compiled[name] = env.get_template(name)
                parts = simple_parts(tree)
                if parts is not None:
                    fast[name] = compile_parts(parts)
            except TemplateSyntaxError as err:
                raise TemplateError(
                    f"Jinja syntax error: {err.message}", location=at(path, err.lineno)
                ) from None
            direct[name] = set(sources) if None in refs else {r for r in refs if r is not None}
        result: dict[str, TemplateFile] = {}
        for name in sources:
            closure = _closure(name, direct)
            result[name] = TemplateFile(
                name=name,
                path=f"{TEMPLATES_DIR}/{name}",
                template=compiled[name],
                digest=self.digests[f"{TEMPLATES_DIR}/{name}"],
                closure=tuple(sorted(f"{TEMPLATES_DIR}/{n}" for n in closure if n in sources)),
                fast=fast.get(name),
            )
        return result

    # -- profiles ------------------------------------------------------------------------------

    def _profile(
        self, name: str, rel: str, parsed: tuple[Any, SourceMap], env: ImmutableSandboxedEnvironment
    ) -> Profile:
        data, source = parsed
        model = validate(ProfileFile, data, source)
        params: dict[str, ParamDecl] = {}
        for pname, spec in model.parameters.items():
            where = source.where(("parameters", pname))
            if not _PARAM_NAME.match(pname):
                raise ParameterError(
                    f"parameters.{pname}: parameter names must be identifiers "
                    "(letters, digits, '_')",
                    location=where,
                )
            if pname in _RESERVED_PARAM_NAMES:
                raise ParameterError(
                    f"parameters.{pname}: {pname!r} is reserved (it is a mapping method, so "
                    "'params.{pname}' could not read it); choose another name",
                    location=where,
                )
            has_default = "default" in spec.model_fields_set
            if spec.required and has_default:
                raise ParameterError(
                    f"parameters.{pname}: a required parameter cannot have a default",
                    location=where,
                )
            allowed = tuple(spec.allowed) if spec.allowed is not None else None
            for i, choice in enumerate(allowed or ()):
                problem = check_profile_value(spec.type, None, choice)
                if problem is not None:
                    raise ParameterError(
                        f"parameters.{pname}.allowed[{i}]: {problem}",
                        location=source.where(("parameters", pname, "allowed", i)),
                    )
            default_path = ("parameters", pname, "default")
            default = (
                compile_value(spec.default, default_path, source, env) if has_default else None
            )
            if isinstance(default, Const):
                problem = check_profile_value(spec.type, allowed, default.value)
                if problem is not None:
                    raise ParameterError(
                        f"parameters.{pname}.default: {problem}",
                        location=source.where(default_path),
                    )
            params[pname] = ParamDecl(
                name=pname,
                type=spec.type,
                default=default,
                required=spec.required,
                allowed=allowed,
                description=spec.description,
                file=rel,
                line=source.line(("parameters", pname)),
                default_line=source.line(default_path),
            )
        resources = tuple(
            parse_resource(key, body, source, env) for key, body in model.resources.items()
        )
        return Profile(name, rel, model.description, MappingProxyType(params), resources)

    # -- roles ---------------------------------------------------------------------------------

    def _role(
        self,
        name: str,
        rel: str,
        parsed: tuple[Any, SourceMap],
        env: ImmutableSandboxedEnvironment,
        profiles: Mapping[str, Profile],
    ) -> Role:
        data, source = parsed
        model = validate(RoleFile, data, source)
        inclusions = parse_inclusions(
            model.profiles,
            base=("profiles",),
            source=source,
            env=env,
            profiles=profiles,
            origin=f"role {name}",
        )
        return Role(name, rel, model.description, inclusions)

    # -- classification.yaml -------------------------------------------------------------------

    def _classification(
        self,
        env: ImmutableSandboxedEnvironment,
        roles: Mapping[str, Role],
        profiles: Mapping[str, Profile],
    ) -> Classification:
        raw = self._read(CLASSIFICATION_FILE)
        data, source = (
            self._yaml(CLASSIFICATION_FILE, raw)
            if raw is not None
            else (None, SourceMap(CLASSIFICATION_FILE))
        )
        model = validate(ClassificationFile, data, source)
        default = parse_rule(
            model.default,
            base=("default",),
            index=-1,
            source=source,
            env=env,
            roles=roles,
            profiles=profiles,
        )
        rules: list[Rule] = []
        names: dict[str, int] = {}
        for index, spec in enumerate(model.rules):
            rule = parse_rule(
                spec,
                base=("rules", index),
                index=index,
                source=source,
                env=env,
                roles=roles,
                profiles=profiles,
            )
            if rule.name in names:
                raise RepositoryError(
                    f"rules[{index}].name: rule name {rule.name!r} is used twice "
                    f"(also at line {names[rule.name]})",
                    location=at(source.file, rule.line),
                )
            names[rule.name] = rule.line
            rules.append(rule)
        return Classification(CLASSIFICATION_FILE, default, tuple(rules))

    # -- data ----------------------------------------------------------------------------------

    def _data(self, data_dir: str) -> dict[str, DataFile]:
        files: dict[str, DataFile] = {}
        for rel_inside, raw in self._read_tree(data_dir, DATA_SUFFIXES):
            rel = f"{data_dir}/{rel_inside}"
            data, source = load_yaml(self._decode(data_dir, rel_inside, raw), rel)
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise RepositoryError(
                    "a data file must hold a mapping of keys to values", location=rel
                )
            _check_keys(data, (), source)
            files[rel_inside] = DataFile(rel, MappingProxyType(data), source, self.digests[rel])
        return files


def _closure(name: str, direct: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(sorted(direct.get(current, ())))
    return seen


def _check_keys(value: Any, path: tuple[Any, ...], source: SourceMap) -> None:
    """Catalogs are JSON: every mapping key must be a string."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RepositoryError(
                    f"mapping keys must be strings, got {key!r} (quote it)",
                    location=source.where((*path, key)),
                )
            _check_keys(item, (*path, key), source)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_keys(item, (*path, index), source)
