"""Values from repository YAML, pre-classified once at load time.

Every value a profile, role or rule gives becomes a small tree: constants stay the very object
YAML produced (never copied per node), strings holding ``{{``/``{%`` become compiled Jinja
(native expressions when the string is exactly one ``{{ expr }}``), and the plain mapping forms
``{lookup: key, default: x, merge: m}`` and ``{secret: name}`` become call nodes. Per-node
compilation then only evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, Template, TemplateSyntaxError, meta

from steward.language.errors import RepositoryError, at
from steward.language.jinja import (
    FastPath,
    compile_parts,
    compile_path,
    dotted_path,
    has_jinja,
    native_expression_node,
    native_template,
    normalise_template_name,
    simple_parts,
)
from steward.language.yamlsource import SourceMap

LOOKUP_KEYS = frozenset({"lookup", "default", "merge"})


@dataclass(frozen=True, slots=True)
class Const:
    """A value with no expression anywhere inside; shared, never mutated."""

    value: Any


@dataclass(frozen=True, slots=True)
class Expr:
    """``{{ expr }}``: evaluates to the expression's native value (int, list, dict, ...)."""

    source: str
    template: Template
    file: str
    line: int
    #: Set when the expression is a plain dotted name, evaluated without a Jinja context.
    path: tuple[str, ...] | None
    includes: tuple[str, ...]
    #: ``path`` compiled (:func:`steward.language.jinja.compile_path`).
    fast: FastPath | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """A string template: evaluates to the rendered string."""

    source: str
    template: Template
    file: str
    line: int
    #: Literal text and dotted names, when that is all the template holds (fast path).
    parts: tuple[str | tuple[str, ...], ...] | None
    #: Templates under templates/ it includes or imports (for the catalog's inputs).
    includes: tuple[str, ...]
    #: ``parts`` compiled (:func:`steward.language.jinja.compile_parts`).
    fast: FastPath | None = None


@dataclass(frozen=True, slots=True)
class ListOf:
    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class MapOf:
    items: tuple[tuple[str, Value], ...]


@dataclass(frozen=True, slots=True)
class LookupCall:
    """``{lookup: key, default: x, merge: m}``."""

    key: Value
    default: Value | None
    merge: Value | None
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class SecretRef:
    """``{secret: name}``."""

    name: Value
    file: str
    line: int


Value = Const | Expr | Text | ListOf | MapOf | LookupCall | SecretRef


def compile_value(raw: Any, path: tuple[Any, ...], source: SourceMap, env: Environment) -> Value:
    """Classify ``raw`` (found at ``path`` in ``source``) into a :data:`Value` tree."""
    if isinstance(raw, str):
        if not has_jinja(raw):
            return Const(raw)
        return compile_string(raw, path, source, env)
    if isinstance(raw, list):
        items = tuple(compile_value(item, (*path, i), source, env) for i, item in enumerate(raw))
        if all(isinstance(item, Const) for item in items):
            return Const(raw)
        return ListOf(items)
    if isinstance(raw, dict):
        for key in raw:
            if not isinstance(key, str):
                raise RepositoryError(
                    f"{_field(path)}: mapping keys must be strings, got {key!r}",
                    location=source.where((*path, key)),
                )
        if "secret" in raw and len(raw) == 1:
            return SecretRef(
                compile_value(raw["secret"], (*path, "secret"), source, env),
                source.file,
                source.line((*path, "secret")),
            )
        if "lookup" in raw and set(raw) <= LOOKUP_KEYS:
            return LookupCall(
                key=compile_value(raw["lookup"], (*path, "lookup"), source, env),
                default=(
                    compile_value(raw["default"], (*path, "default"), source, env)
                    if "default" in raw
                    else None
                ),
                merge=(
                    compile_value(raw["merge"], (*path, "merge"), source, env)
                    if "merge" in raw
                    else None
                ),
                file=source.file,
                line=source.line((*path, "lookup")),
            )
        entries = tuple(
            (key, compile_value(item, (*path, key), source, env)) for key, item in raw.items()
        )
        if all(isinstance(item, Const) for _, item in entries):
            return Const(raw)
        return MapOf(entries)
    return Const(raw)


def compile_string(text: str, path: tuple[Any, ...], source: SourceMap, env: Environment) -> Value:
    """Compile a string known to contain Jinja syntax."""
    try:
        tree = env.parse(text)
        expr = native_expression_node(tree)
        includes = _referenced_templates(tree)
        if expr is not None:
            dotted = dotted_path(expr)
            return Expr(
                source=text,
                template=native_template(env, expr),
                file=source.file,
                line=source.text_line(path),
                path=dotted,
                includes=includes,
                fast=compile_path(dotted) if dotted is not None else None,
            )
        parts = simple_parts(tree)
        return Text(
            source=text,
            template=env.from_string(text),
            file=source.file,
            line=source.text_line(path),
            parts=parts,
            includes=includes,
            fast=compile_parts(parts) if parts is not None else None,
        )
    except TemplateSyntaxError as err:
        line = source.text_line(path, err.lineno or 1)
        raise RepositoryError(
            f"{_field(path)}: Jinja syntax error: {err.message}", location=at(source.file, line)
        ) from None


def _referenced_templates(tree: Any) -> tuple[str, ...]:
    """Templates named by include/import/extends; ``("*",)`` when a name is computed."""
    names: set[str] = set()
    for name in meta.find_referenced_templates(tree):
        normal = normalise_template_name(name) if name is not None else None
        if normal is None:
            return ("*",)
        names.add(normal)
    return tuple(sorted(names))


def _field(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "(value)"
