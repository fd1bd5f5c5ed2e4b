"""Profiles to resources: parameter resolution, for_each/when expansion, validation, secrets.

Constant parameters were type-checked when the repository was loaded and are copied as they
are; the per-resource loop only evaluates and checks what is dynamic. A parameter whose
evaluation touched a secret becomes a sensitive placeholder in the catalog: ``secret:<name>``
when it *is* the secret, ``param:<ref>:<param>`` when the secret is embedded (a rendered config
file, say).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any, NoReturn

from steward.catalog.model import Resource
from steward.catalog.sensitive import sensitive_placeholder
from steward.compiler.classify import ProfileUse
from steward.compiler.context import NodeContext, TrackedParams
from steward.compiler.data import DataResolver, Found
from steward.compiler.evaluate import Evaluator, Scope
from steward.errors import StewardError
from steward.language.checks import (
    SecretText,
    check_profile_value,
    check_resource_value,
    describe,
    normalise_ref,
)
from steward.language.declarations import Profile, ResourceDecl, ResourceParam
from steward.language.errors import (
    DuplicateResourceError,
    LimitError,
    ParameterError,
    ResourceError,
    TemplateError,
    at,
    did_you_mean,
)
from steward.language.jinja import TEMPLATES_DIR, normalise_template_name
from steward.language.limits import DEFAULT_LIMITS, too_long
from steward.language.repository import FILES_DIR, Repository
from steward.language.values import Const, Expr, Text, Value

#: Relationship metaparameter → edge relationship (source applied first).
RELATIONSHIP_KINDS = {
    "before": "before",
    "require": "required-by",
    "notify": "notifies",
    "subscribe": "subscription-of",
}


class Expander:
    """Expands the profiles a node uses into catalog resources, in declaration order.

    Besides ``resources`` it keeps, by resource index, what the graph needs and the catalog
    does not carry: refs, namevar values and the relationships each declared.
    """

    def __init__(
        self,
        repo: Repository,
        ctx: NodeContext,
        evaluator: Evaluator,
        data: DataResolver,
        base_scope: Scope,
    ) -> None:
        self.repo = repo
        self.ctx = ctx
        self.ev = evaluator
        self.data = data
        self.base_scope = base_scope
        self.resources: list[Resource] = []
        self.refs: list[str] = []
        self.namevars: list[Any] = []
        #: (resource index, relationship param, target ref, line), in declaration order.
        self.relations: list[tuple[int, str, str, int]] = []
        self.by_ref: dict[str, int] = {}
        self.by_namevar: dict[tuple[str, Any], int] = {}
        #: Refs a ``when`` left out, for friendlier relationship errors.
        self.omitted: dict[str, str] = {}
        #: Resource index → for_each item index, for duplicate-title messages.
        self.items: dict[int, int] = {}
        self.limits = getattr(repo.env, "limits", DEFAULT_LIMITS)

    # -- profiles ------------------------------------------------------------------------------

    def expand(self, use: ProfileUse) -> None:
        profile = self.repo.profiles[use.inclusion.profile]
        self.ctx.read_file(profile.file, self.repo.digests[profile.file])
        params = self._params(profile, use)
        scope = {**self.base_scope, "params": params}
        tags = tuple(sorted({f"profile:{profile.name}", *(f"role:{role}" for role in use.roles)}))
        for decl in profile.resources:
            self._declaration(decl, scope, tags)

    def _params(self, profile: Profile, use: ProfileUse) -> TrackedParams:
        inclusion = use.inclusion
        given = {p.name: p for p in inclusion.params}
        params = TrackedParams(profile.name, tuple(profile.parameters), self.ctx)
        defaults_scope = {**self.base_scope, "params": params}
        for decl in profile.parameters.values():
            what = f"profile {profile.name}: parameter {decl.name!r}"
            before = self.ctx.taint
            supplied = given.get(decl.name)
            value: Any
            where: str | Found
            if supplied is not None:
                value = self._eval(supplied.value, self.base_scope, what)
                where = at(supplied.file, supplied.line)
            else:
                found = self.data.find(f"{profile.name}::{decl.name}")
                if found is not None:
                    value, where = found.value, found  # its location, when needed
                elif decl.default is not None:
                    value = self._eval(decl.default, defaults_scope, f"{what} (default)")
                    where = at(decl.file, decl.default_line)
                else:
                    value, where = None, at(inclusion.file, inclusion.line)
            tainted = self.ctx.taint != before
            if value is None and decl.required:
                raise ParameterError(
                    f"{what} is required, but {inclusion.origin} does not give it and data key "
                    f"'{profile.name}::{decl.name}' is not set",
                    location=at(inclusion.file, inclusion.line),
                )
            problem = check_profile_value(decl.type, decl.allowed, value)
            if problem is not None:
                if tainted and not isinstance(value, SecretText):
                    problem = f"a value built from a secret is not {decl.type}"
                raise ParameterError(
                    f"{what}: {problem}", location=where if isinstance(where, str) else where.where
                )
            params._set(decl.name, value, tainted=tainted)
        return params

    # -- resources -----------------------------------------------------------------------------

    def _declaration(self, decl: ResourceDecl, scope: Scope, tags: tuple[str, ...]) -> None:
        own = decl.static_tags
        # ``tags`` is sorted already: with no tags of its own a declaration uses it as it is.
        fixed_tags = None if own is None else tuple(sorted({*tags, *own})) if own else tags
        if decl.for_each is None:
            self._instance(decl, scope, tags, fixed_tags, None)
            return
        before = self.ctx.taint
        items = self._eval(decl.for_each.value, scope, decl.key, ": for_each")
        if self.ctx.taint != before:
            raise ResourceError(
                f"{decl.key}: for_each must not use secrets (titles would reveal them)",
                location=at(decl.file, decl.for_each.line),
            )
        if items is None:
            return
        if isinstance(items, dict):
            items = [{"key": key, "value": items[key]} for key in sorted(items)]
        elif not isinstance(items, list):
            raise ResourceError(
                f"{decl.key}: for_each must give a list or a mapping, got {describe(items)}",
                location=at(decl.file, decl.for_each.line),
            )
        # One scope for all items: evaluation never keeps a reference to it (results are data).
        item_scope = {**scope}
        instance = self._instance
        for index, item in enumerate(items):
            item_scope["item"] = item
            instance(decl, item_scope, tags, fixed_tags, index)

    def _instance(
        self,
        decl: ResourceDecl,
        scope: Scope,
        tags: tuple[str, ...],
        fixed_tags: tuple[str, ...] | None,
        item: int | None,
    ) -> str | None:
        ctx = self.ctx
        if decl.when is not None and not self._eval(
            decl.when.value, scope, _label(decl, item), ": when"
        ):
            self._note_omitted(decl, scope)
            return None
        title = decl.static_title
        if title is None:
            title = self._title(decl, scope, item)
        ref = f"{decl.type}[{title}]"
        params = decl.static_mapping.copy()
        if decl.dynamic_params:
            evaluate = self.ev.evaluate
            for param in decl.dynamic_params:
                before = ctx.taint
                source = param.value
                fast = source.fast if type(source) is Text else None
                value: Any = None
                if fast is not None:
                    # A string made of text and dotted names is by far the most common case.
                    try:  # noqa: SIM105 - a with block costs more than the evaluation
                        value = fast(scope, self.ev.getattr)
                    except Exception:  # noqa: S110 - evaluated again below, to report it
                        pass
                if value is None:
                    try:
                        value = evaluate(param.value, scope)
                    except StewardError as err:
                        _reraise(err, f"{ref}: parameter {param.name!r}")
                    if value is None:
                        continue
                tainted = ctx.taint != before or (bool(ctx.scanned) and ctx.contains_secret(value))
                assert param.param is not None
                if param.param.check(value) is not None:
                    self._bad_value(decl, ref, param, value, tainted)
                params[param.name] = (
                    self._protect(decl, ref, param.name, value, param.line) if tainted else value
                )
        if decl.content_source is not None:
            self._content(decl, ref, scope, params)
        namevar = params.get(decl.namevar)
        if namevar is None:
            params[decl.namevar] = namevar = title
        for name in decl.path_params:
            path = params.get(name)
            if type(path) is str and (
                path[:1] != "/" or "//" in path or "/." in path or path[-1:] == "/"
            ):
                params[name] = path = _absolute(decl, ref, name, path)
                if name == decl.namevar:
                    namevar = path
        if fixed_tags is None:
            fixed_tags = tuple(sorted({*tags, *self._tags(decl, scope, ref)}))
        resources = self.resources
        index = len(resources)
        if index >= self.limits.resources:
            raise LimitError(
                f"{ref}: the catalog would hold more than {self.limits.resources} resources "
                "(docs/language.md#limits)", location=at(decl.file, decl.line))
        key = (decl.type, namevar if type(namevar) is not dict else namevar_key(namevar))
        if item is not None:
            self.items[index] = item
        # setdefault leaves an earlier declaration in place, for _register to name it.
        if self.by_ref.setdefault(ref, index) != index or (
            self.by_namevar.setdefault(key, index) != index
        ):
            self._register(decl, ref, key, index, item)
        resources.append(Resource(decl.type, title, params, fixed_tags, decl.file, decl.line))
        self.refs.append(ref)
        self.namevars.append(namevar)
        for relation in decl.relationships:
            targets: Sequence[str] | None = relation.refs
            if targets is None:
                targets = self._refs(decl, relation, scope, ref)
            for target in targets:
                self.relations.append((index, relation.name, target, relation.line))
        return title

    def _bad_value(
        self, decl: ResourceDecl, ref: str, param: ResourceParam, value: Any, tainted: bool
    ) -> NoReturn:
        assert param.param is not None
        problem = check_resource_value(param.param, value)
        if tainted and not isinstance(value, SecretText):
            problem = f"a value built from a secret does not fit ({param.param.kind})"
        raise ResourceError(
            f"{ref}: parameter {param.name!r}: {problem}", location=at(decl.file, param.line)
        )

    def _protect(self, decl: ResourceDecl, ref: str, name: str, value: Any, line: int) -> Any:
        """Swap a secret-carrying value for its placeholder; the value goes to the bundle."""
        if isinstance(value, SecretText):
            key = f"secret:{value.secret_name}"
        elif isinstance(value, str):
            key = f"param:{ref}:{name}"
        else:
            raise ResourceError(
                f"{ref}: parameter {name!r} uses a secret, but only string parameters can "
                "hold secrets",
                location=at(decl.file, line),
            )
        self.ctx.sensitive(key, value)
        return sensitive_placeholder(key)

    def _content(self, decl: ResourceDecl, ref: str, scope: Scope, params: dict[str, Any]) -> None:
        source = decl.content_source
        assert source is not None
        ctx = self.ctx
        name = (
            source.value.value
            if type(source.value) is Const
            else self._eval(source.value, scope, ref, ": parameter ", repr(source.name))
        )
        if type(name) is not str and (not isinstance(name, str) or isinstance(name, SecretText)):
            raise ResourceError(
                f"{ref}: parameter {source.name!r} must be a path, got {describe(name)}",
                location=at(decl.file, source.line),
            )
        before = ctx.taint
        if source.name == "template":
            templates = self.repo.templates
            template = templates.get(name) or templates.get(normalise_template_name(name) or "")
            if template is None:
                raise TemplateError(
                    f"{ref}: template {name!r} not found under {TEMPLATES_DIR}/"
                    f"{did_you_mean(name, self.repo.templates)}",
                    location=at(decl.file, source.line),
                )
            files, digests = ctx.files, self.repo.digests
            for path in template.closure:
                files[path] = digests[path]
            content = None
            if template.fast is not None:  # only text and dotted names: no render needed
                try:  # noqa: SIM105 - a with block costs more than the evaluation
                    content = template.fast(scope, self.ev.getattr)
                except Exception:  # noqa: S110 - rendered below, to report the failure
                    pass
            if content is None:
                try:
                    content = self.ev.render_file(template.template, template.path, scope)
                except StewardError as err:
                    _reraise(err, f"{ref}: template {name!r}")
        else:
            static = self.repo.files.get(name) or self.repo.files.get(
                normalise_template_name(name) or ""
            )
            if static is None:
                raise ResourceError(
                    f"{ref}: source {name!r} not found under {FILES_DIR}/"
                    f"{did_you_mean(name, self.repo.files)}",
                    location=at(decl.file, source.line),
                )
            self.ctx.read_file(static.path, static.digest)
            if len(static.content) > self.limits.text:
                error = too_long(f"{ref}: source {static.path}", len(static.content),
                                 self.limits.text, "bytes")
                raise LimitError(error.message, location=at(decl.file, source.line))
            try:
                content = static.content.decode("utf-8")
            except UnicodeDecodeError:
                raise ResourceError(
                    f"{ref}: source {static.path} is not UTF-8 text; catalogs carry text only",
                    location=at(decl.file, source.line),
                ) from None
        tainted = ctx.taint != before or (ctx.scanned and ctx.contains_secret(content))
        params["content"] = (
            self._protect(decl, ref, "content", content, source.line) if tainted else content
        )

    def _title(self, decl: ResourceDecl, scope: Scope, item: int | None) -> str:
        ctx = self.ctx
        before = ctx.taint
        value = decl.title
        if (type(value) is Text or type(value) is Expr) and value.fast is not None:
            # The common case (``{{ item.name }}``, ``/srv/{{ item }}``) without the general
            # evaluation; anything unusual (an error, a secret, not a string) goes the long way.
            try:
                found = value.fast(scope, self.ev.getattr)
            except Exception:  # noqa: S110 - evaluated again below, to report the failure
                pass
            else:
                if type(found) is str and ctx.taint == before and not ctx.scanned:
                    stripped = found.strip()
                    if stripped:
                        return stripped
        try:
            title = self.ev.evaluate(decl.title, scope)
        except StewardError as err:
            _reraise(err, f"{_label(decl, item)}: title")
        problem = None
        if ctx.taint != before or (ctx.scanned and ctx.contains_secret(title)):
            problem = "the title must not use secrets (it appears in the catalog)"
        elif type(title) is not str:
            if isinstance(title, bool) or not isinstance(title, str | int | float):
                problem = f"the title must be a string, got {describe(title)}"
            title = str(title)
        if problem is None:
            text: str = title.strip()
            if text:
                return text
            problem = "the title is empty"
        raise ResourceError(f"{_label(decl, item)}: {problem}", location=at(decl.file, decl.line))

    def _tags(self, decl: ResourceDecl, scope: Scope, ref: str) -> list[str]:
        assert decl.tags is not None
        before = self.ctx.taint
        tags = self._eval(decl.tags.value, scope, ref, ": tags")
        if isinstance(tags, str):
            tags = [tags]
        valid = isinstance(tags, list) and all(isinstance(t, str) and t.strip() for t in tags)
        if not valid or self.ctx.taint != before:
            raise ResourceError(
                f"{ref}: tags must be a string or a list of non-empty strings (and no secrets)",
                location=at(decl.file, decl.tags.line),
            )
        return [t.strip() for t in tags]

    def _refs(
        self, decl: ResourceDecl, relation: ResourceParam, scope: Scope, ref: str
    ) -> list[str]:
        before = self.ctx.taint
        value = self._eval(relation.value, scope, ref, ": ", relation.name)
        if value is None:
            return []
        refs: list[str] = []
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if not isinstance(item, str) or self.ctx.taint != before:
                raise ResourceError(
                    f"{ref}: {relation.name} must be a reference like type[title] or a list of "
                    f"them, got {describe(item)}",
                    location=at(decl.file, relation.line),
                )
            try:
                refs.append(normalise_ref(item))
            except ValueError as err:
                raise ResourceError(
                    f"{ref}: {relation.name}: {err}", location=at(decl.file, relation.line)
                ) from None
        return refs

    def _register(
        self, decl: ResourceDecl, ref: str, key: tuple[str, Any], index: int, item: int | None
    ) -> None:
        """Refuse a second declaration of the same resource (by title or by namevar)."""
        other = self.by_ref.get(ref, index)
        if other != index:
            where = at(decl.file, decl.line)
            first = self.resources[other]
            if item is not None and (first.file, first.line) == (decl.file, decl.line):
                raise DuplicateResourceError(
                    f"{decl.key}: for_each items {self.items[other]} and {item} both give "
                    f"{ref}; the title must differ per item (use {{{{ item }}}} in it)",
                    location=where,
                )
            raise DuplicateResourceError(
                f"{ref} is declared twice: at {self._where(other)} and at {where}",
                location=where,
            )
        other = self.by_namevar.get(key, index)
        if other != index:
            where = at(decl.file, decl.line)
            raise DuplicateResourceError(
                f"{ref} and {self.refs[other]} manage the same {decl.type} "
                f"({decl.namevar} {key[1]!r}): declared at {self._where(other)} and at {where}",
                location=where,
            )

    def _where(self, index: int) -> str:
        resource = self.resources[index]
        return at(resource.file or "?", resource.line)

    def _note_omitted(self, decl: ResourceDecl, scope: Scope) -> None:
        try:
            title = self._eval(decl.title, scope, "title")
        except StewardError:
            return
        if isinstance(title, str | int):
            self.omitted[f"{decl.type}[{str(title).strip()}]"] = at(decl.file, decl.line)

    # -- helpers -------------------------------------------------------------------------------

    def _eval(self, value: Value, scope: Scope, *what: str) -> Any:
        """Evaluate; on failure the message is prefixed with ``what`` (joined lazily)."""
        if type(value) is Const:
            return value.value
        try:
            return self.ev.evaluate(value, scope)
        except StewardError as err:
            _reraise(err, "".join(what))


def namevar_key(value: Any) -> Any:
    """A hashable form of a namevar value (a sensitive placeholder is a dict)."""
    if isinstance(value, dict):
        return ("sensitive", *sorted(value.items()))
    return value


def _label(decl: ResourceDecl, item: int | None) -> str:
    return decl.key if item is None else f"{decl.key} (for_each item {item})"


def _absolute(decl: ResourceDecl, ref: str, name: str, path: str) -> str:
    if not path.startswith("/"):
        line = next((p.line for p in decl.dynamic_params if p.name == name), decl.line)
        raise ResourceError(
            f"{ref}: parameter {name!r} must be an absolute path, got {path!r}",
            location=at(decl.file, line),
        )
    return posixpath.normpath(path).replace("//", "/")


def _reraise(err: StewardError, what: str) -> NoReturn:
    raise type(err)(f"{what}: {err.message}", location=err.location) from None
