"""Parsing one declaration of a repository file into its frozen, pre-compiled form.

Resources (``type[title]`` entries of a profile), profile inclusions (by roles and rules),
classification rules and hierarchy levels: each is validated, and every value classified and
compiled, here; errors name the file and line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from steward.catalog.types import META_PARAMS, RELATIONSHIP_PARAMS, TYPES
from steward.language.checks import check_profile_value, check_resource_value, normalise_ref
from steward.language.declarations import (
    CONTENT_SOURCES,
    DECLARATION_KEYS,
    PATH_PARAMS,
    FactMatch,
    HierarchyLevel,
    Inclusion,
    Profile,
    ProfileParamValue,
    ResourceDecl,
    ResourceParam,
    Role,
    Rule,
)
from steward.language.errors import ParameterError, RepositoryError, ResourceError, at, did_you_mean
from steward.language.models import DefaultSpec, RuleSpec
from steward.language.values import Const, Value, compile_value
from steward.language.yamlsource import SourceMap

_RESOURCE_KEY = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_]*)\[(?P<title>.+)\]$", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_META = {p.name: p for p in META_PARAMS}


def parse_hierarchy_level(pattern: str, where: str, line: int) -> HierarchyLevel:
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


def parse_resource(
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


def parse_inclusions(
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


def parse_rule(
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
        profiles=parse_inclusions(
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
