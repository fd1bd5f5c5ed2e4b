"""Loading a desired-state repository into an immutable, pre-compiled :class:`Repository`.

Everything that does not depend on a node happens here, once: YAML parsing with line numbers,
schema validation, cross-file checks (roles name existing profiles, rules name existing roles),
classification of every string into constant or expression, compilation of every expression and
template, and content digests of every file. Compiling a catalog then only evaluates.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import Template, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from steward.catalog.types import META_PARAMS, RELATIONSHIP_PARAMS, TYPES, Param
from steward.language.checks import check_profile_value, check_resource_value, normalise_ref
from steward.language.errors import (
    ParameterError,
    RepositoryError,
    ResourceError,
    TemplateError,
    at,
    did_you_mean,
)
from steward.language.jinja import (
    TEMPLATES_DIR,
    FastPath,
    compile_parts,
    make_environment,
    simple_parts,
)
from steward.language.models import (
    ClassificationFile,
    DefaultSpec,
    ProfileFile,
    RoleFile,
    RuleSpec,
    SettingsFile,
    validate,
)
from steward.language.values import Const, Value, compile_value
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

_RESOURCE_KEY = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_]*)\[(?P<title>.+)\]$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
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
_META = {p.name: p for p in META_PARAMS}


# --------------------------------------------------------------------------------------------
# The loaded repository
# --------------------------------------------------------------------------------------------


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
            _hierarchy_level(pattern, source.where(("hierarchy", i)), source.line(("hierarchy", i)))
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
            _resource(key, body, source, env) for key, body in model.resources.items()
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
        inclusions = _inclusions(
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
        default = _rule(
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
            rule = _rule(
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


def _hierarchy_level(pattern: str, where: str, line: int) -> HierarchyLevel:
    if pattern.startswith("/") or ".." in pattern.split("/") or not pattern.strip():
        raise RepositoryError(
            f"hierarchy: {pattern!r} must be a relative path inside the data directory",
            location=where,
        )
    parts: list[str | tuple[str, ...]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(pattern):
        if match.start() > position:
            parts.append(pattern[position : match.start()])
        variable = tuple(match.group(1).strip().split("."))
        valid = variable in (("node",), ("role",), ("environment",)) or (
            variable[0] == "facts" and len(variable) > 1 and all(variable[1:])
        )
        if not valid:
            raise RepositoryError(
                f"hierarchy: unknown variable {{{match.group(1)}}} in {pattern!r}; use {{node}}, "
                "{role}, {environment} or {facts.dotted.path}",
                location=where,
            )
        parts.append(variable)
        position = match.end()
    if position < len(pattern):
        parts.append(pattern[position:])
    if any(isinstance(p, str) and ("{" in p or "}" in p) for p in parts):
        raise RepositoryError(f"hierarchy: unbalanced braces in {pattern!r}", location=where)
    return HierarchyLevel(pattern, tuple(parts), line)


def _resource(
    key: str, body: dict[str, Any], source: SourceMap, env: ImmutableSandboxedEnvironment
) -> ResourceDecl:
    base = ("resources", key)
    where = source.where(base)
    match = _RESOURCE_KEY.match(key.strip())
    if match is None:
        raise ResourceError(
            f"resources: {key!r} is not a resource declaration of the form type[title]",
            location=where,
        )
    type_name, title_text = match.group("type"), match.group("title").strip()
    rtype = TYPES.get(type_name)
    if rtype is None:
        raise ResourceError(
            f"{key}: unknown resource type {type_name!r}{did_you_mean(type_name, TYPES)}; "
            f"known types: {', '.join(sorted(TYPES))}",
            location=where,
        )
    label = f"{type_name}[{title_text}]"
    title = compile_value(title_text, base, source, env)
    known = {*rtype.by_name, *_META, *RELATIONSHIP_PARAMS, *DECLARATION_KEYS}
    static: list[tuple[str, Any]] = []
    dynamic: list[ResourceParam] = []
    relationships: list[ResourceParam] = []
    special: dict[str, ResourceParam] = {}
    for name, raw in body.items():
        path = (*base, name)
        line = source.line(path)
        if name not in known:
            raise ResourceError(
                f"{label}: unknown parameter {name!r} for type {type_name}"
                f"{did_you_mean(name, known)}",
                location=at(source.file, line),
            )
        value = compile_value(raw, path, source, env)
        if name in RELATIONSHIP_PARAMS:
            relationships.append(
                ResourceParam(
                    name, value, line, None, _static_refs(label, name, value, line, source)
                )
            )
            continue
        param = rtype.by_name.get(name) or _META.get(name)
        entry = ResourceParam(name, value, line, param)
        if name in DECLARATION_KEYS or name in CONTENT_SOURCES:
            special[name] = entry
        elif not isinstance(value, Const):
            dynamic.append(entry)
        elif value.value is not None and param is not None:
            problem = check_resource_value(param, value.value)
            if (
                problem is None
                and name in PATH_PARAMS.get(type_name, ())
                and not value.value.startswith("/")
            ):
                problem = f"must be an absolute path, got {value.value!r}"
            if problem is not None:
                raise ResourceError(
                    f"{label}: parameter {name!r}: {problem}", location=at(source.file, line)
                )
            static.append((name, value.value))
    present = [n for n in ("content", *CONTENT_SOURCES) if n in body]
    if len(present) > 1:
        raise ResourceError(
            f"{label}: give only one of content, template, source (got {', '.join(present)})",
            location=where,
        )
    for param in rtype.params:
        if param.required and not param.namevar and param.name not in body:
            raise ResourceError(
                f"{label}: parameter {param.name!r} is required ({param.doc})", location=where
            )
    static_title: str | None = None
    if isinstance(title, Const):
        static_title = title_text
    tags = special.get("tags")
    return ResourceDecl(
        type=type_name,
        key=key,
        title=title,
        static_title=static_title,
        file=source.file,
        line=source.line(base),
        namevar=rtype.namevar,
        path_params=PATH_PARAMS.get(type_name, ()),
        static_params=tuple(static),
        dynamic_params=tuple(dynamic),
        relationships=tuple(relationships),
        tags=tags,
        static_tags=_static_tags(label, tags, source),
        when=special.get("when"),
        for_each=special.get("for_each"),
        content_source=special.get("template") or special.get("source"),
        static_mapping=dict(static),
    )


def _static_refs(
    label: str, name: str, value: Value, line: int, source: SourceMap
) -> tuple[str, ...] | None:
    if not isinstance(value, Const):
        return None
    items = value.value if isinstance(value.value, list) else [value.value]
    refs: list[str] = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            raise ResourceError(
                f"{label}: {name} must be a reference like type[title] or a list of them",
                location=at(source.file, line),
            )
        try:
            refs.append(normalise_ref(item))
        except ValueError as err:
            raise ResourceError(f"{label}: {name}: {err}", location=at(source.file, line)) from None
    return tuple(refs)


def _static_tags(
    label: str, tags: ResourceParam | None, source: SourceMap
) -> tuple[str, ...] | None:
    if tags is None:
        return ()
    if not isinstance(tags.value, Const):
        return None
    raw = tags.value.value
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
        raise ResourceError(
            f"{label}: tags must be a string or a list of non-empty strings",
            location=at(source.file, tags.line),
        )
    return tuple(t.strip() for t in items)


def _inclusions(
    given: Mapping[str, Mapping[str, Any]],
    *,
    base: tuple[Any, ...],
    source: SourceMap,
    env: ImmutableSandboxedEnvironment,
    profiles: Mapping[str, Profile],
    origin: str,
) -> tuple[Inclusion, ...]:
    result: list[Inclusion] = []
    for pname, values in given.items():
        path = (*base, pname)
        profile = profiles.get(pname)
        if profile is None:
            raise RepositoryError(
                f"{'.'.join(map(str, path))}: no profile named {pname!r}"
                f"{did_you_mean(pname, profiles)} (profiles live in profiles/<name>.yaml)",
                location=source.where(path),
            )
        params: list[ProfileParamValue] = []
        for name, raw in values.items():
            ppath = (*path, name)
            decl = profile.parameters.get(name)
            if decl is None:
                known = sorted(profile.parameters)
                raise ParameterError(
                    f"profile {pname}: unknown parameter {name!r}"
                    f"{did_you_mean(name, known)}; it takes: {', '.join(known) or 'none'}",
                    location=source.where(ppath),
                )
            value = compile_value(raw, ppath, source, env)
            if isinstance(value, Const):
                problem = check_profile_value(decl.type, decl.allowed, value.value)
                if problem is not None:
                    raise ParameterError(
                        f"profile {pname}: parameter {name!r}: {problem}",
                        location=source.where(ppath),
                    )
            params.append(ProfileParamValue(name, value, source.file, source.line(ppath)))
        result.append(
            Inclusion(
                profile=pname,
                params=tuple(params),
                raw=MappingProxyType(dict(values)),
                file=source.file,
                line=source.line(path),
                origin=origin,
            )
        )
    return tuple(result)


def _rule(
    spec: RuleSpec | DefaultSpec,
    *,
    base: tuple[Any, ...],
    index: int,
    source: SourceMap,
    env: ImmutableSandboxedEnvironment,
    roles: Mapping[str, Role],
    profiles: Mapping[str, Profile],
) -> Rule:
    name = spec.name if isinstance(spec, RuleSpec) else "default"
    node_glob: re.Pattern[str] | None = None
    node_regex: re.Pattern[str] | None = None
    facts: list[FactMatch] = []
    if isinstance(spec, RuleSpec):
        if spec.match.node is not None:
            node_glob = re.compile(fnmatch.translate(spec.match.node))
        if spec.match.node_regex is not None:
            try:
                node_regex = re.compile(spec.match.node_regex)
            except re.error as err:
                raise RepositoryError(
                    f"{_dotted(base)}.match.node_regex: invalid regular expression: {err}",
                    location=source.where((*base, "match", "node_regex")),
                ) from None
        for fact, expected in spec.match.facts.items():
            fpath = (*base, "match", "facts", fact)
            choices = expected if isinstance(expected, list) else [expected]
            if (
                not fact
                or any(not part for part in fact.split("."))
                or any(isinstance(choice, dict | list) for choice in choices)
            ):
                raise RepositoryError(
                    f"{_dotted(base)}.match.facts.{fact}: give a dotted fact path and a scalar "
                    "or a list of scalars",
                    location=source.where(fpath),
                )
            facts.append(FactMatch(tuple(fact.split(".")), tuple(choices)))
    for role in spec.role or ():
        if role not in roles:
            raise RepositoryError(
                f"{_dotted(base)}.role: no role named {role!r}{did_you_mean(role, roles)} "
                "(roles live in roles/<name>.yaml)",
                location=source.where((*base, "role")),
            )
    origin = f"rule {name!r}" if isinstance(spec, RuleSpec) else "classification default"
    return Rule(
        name=name,
        file=source.file,
        line=source.line(base),
        index=index,
        priority=spec.priority if isinstance(spec, RuleSpec) else -(2**63),
        node_glob=node_glob,
        node_regex=node_regex,
        facts=tuple(facts),
        roles=tuple(spec.role) if spec.role is not None else None,
        roles_line=source.line((*base, "role")),
        environment=spec.environment,
        environment_line=source.line((*base, "environment")),
        profiles=_inclusions(
            spec.profiles,
            base=(*base, "profiles"),
            source=source,
            env=env,
            profiles=profiles,
            origin=origin,
        ),
    )


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
