"""Evaluating pre-compiled values and rendering templates for one node.

Templates run with a Jinja ``Context`` built directly from a prepared scope dict (``render``
would rebuild its globals on every call, which costs more than most of our expressions), and
dotted names like ``{{ item }}`` or ``{{ params.port }}`` skip Jinja altogether while keeping
its ``environment.getattr`` semantics (sandbox checks included). Every failure becomes an
:class:`ExpressionError` (inline YAML) or :class:`TemplateError` (templates/) located at the
line Jinja reports, including failures of ``lookup()``/``secret()`` called from inside.
Rendered text is measured as it is produced and every result is measured before it becomes
catalog data, against the environment's compile limits (:mod:`steward.language.limits`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, NoReturn

from jinja2 import Environment, Template, Undefined
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError, TemplateNotFound, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from steward.compiler.context import FactView, TrackedParams
from steward.errors import StewardError
from steward.language.checks import SecretText
from steward.language.errors import (
    ExpressionError,
    LanguageError,
    TemplateError,
    at,
    relocated,
)
from steward.language.jinja import TEMPLATES_DIR, DataView
from steward.language.limits import DEFAULT_LIMITS, Limits, measure, too_long
from steward.language.values import Const, Expr, ListOf, LookupCall, MapOf, SecretRef, Text, Value

Scope = dict[str, Any]
_SCALARS = (str, int, float, bool, type(None))
_MISSING = object()
#: Scope names whose values are plain data already (evaluated parameters, for_each items,
#: names): a dotted path into them needs no conversion. ``facts`` (views) and the functions do.
_PLAIN_ROOTS = frozenset({"params", "item", "node", "environment", "role", "roles"})

#: Signature of the data lookup the evaluator calls for ``{lookup: ...}`` forms.
LookupFn = Callable[..., Any]
SecretFn = Callable[[Any], SecretText]


class _ScopeContext(Context):
    """Jinja's template context for a render whose parent is a scope dict and which layers no
    template globals: the same attributes, set directly, and a name lookup that needs one
    ``dict.get`` where Jinja's general one tests and then reads."""

    def __init__(
        self,
        environment: Environment,
        parent: dict[str, Any],
        name: str | None,
        blocks: dict[str, Callable[[Context], Iterator[str]]],
    ) -> None:
        self.parent = parent
        self.vars = {}
        self.environment = environment
        self.eval_ctx = EvalContext(environment, name)
        self.exported_vars = set()
        self.name = name
        self.globals_keys = set()
        self.blocks = {k: [v] for k, v in blocks.items()} if blocks else {}

    def resolve_or_missing(self, key: str) -> Any:
        if key in self.vars:
            return self.vars[key]
        return self.parent.get(key, missing)


def _same_attributes() -> bool:
    env = Environment(autoescape=True)
    return vars(Context(env, {}, "t", {})).keys() == vars(_ScopeContext(env, {}, "t", {})).keys()


#: The context class renders use: ours, unless this Jinja's contexts carry other attributes.
RenderContext: type[Context] = _ScopeContext if _same_attributes() else Context


class Evaluator:
    """Evaluates :mod:`steward.language.values` trees in a scope."""

    def __init__(
        self, env: ImmutableSandboxedEnvironment, lookup: LookupFn, secret: SecretFn
    ) -> None:
        self.env = env
        self.lookup = lookup
        self.secret = secret
        #: The environment's ``getattr`` (what the fast paths call for anything but an item).
        self.getattr = self._getattr = env.getattr
        self.limits: Limits = getattr(env, "limits", DEFAULT_LIMITS)

    def evaluate(self, value: Value, scope: Scope) -> Any:
        if type(value) is Const:
            return value.value
        if type(value) is Expr:
            return self._expr(value, scope)
        if type(value) is Text:
            return self._text(value, scope)
        if type(value) is ListOf:
            return [self.evaluate(item, scope) for item in value.items]
        if type(value) is MapOf:
            return {k: self.evaluate(v, scope) for k, v in value.items}
        if type(value) is LookupCall:
            return self._lookup_call(value, scope)
        if type(value) is SecretRef:
            return self._secret_ref(value, scope)
        raise AssertionError(f"unknown value node {type(value).__name__}")  # pragma: no cover

    def render_file(self, template: Template, path: str, scope: Scope) -> str:
        """Render a template from templates/ (errors located in the template file)."""
        try:
            context = RenderContext(self.env, scope, template.name, template.blocks)
            try:
                return self._join(template.root_render_func(context), "the rendered template")
            except Exception:
                # Rewrites the traceback so frames carry template file names and lines.
                self.env.handle_exception()
        except Exception as err:
            self._fail(err, path, 1, TemplateError)

    # -- value kinds ---------------------------------------------------------------------------

    def _expr(self, value: Expr, scope: Scope) -> Any:
        fast, path = value.fast, value.path
        if fast is not None and path is not None:
            try:
                result = fast(scope, self._getattr)
            except Exception:  # noqa: S110 - resolved again below to report the failure
                pass
            else:
                if type(result) in _SCALARS or (
                    path[0] in _PLAIN_ROOTS and not isinstance(result, DataView | Undefined)
                ):
                    return result
                if not isinstance(result, Undefined):
                    return self._data(result, value)
        try:
            if value.path is not None:
                result = self._resolve(value.path, scope)
                if value.path[0] in _PLAIN_ROOTS and not isinstance(result, DataView | Undefined):
                    return result
            else:
                result = self._run(value.template, scope, native=True)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return self._bounded(to_data(result))
        except Exception as err:
            self._fail(err, value.file, value.line, ExpressionError)

    def _data(self, result: Any, value: Expr) -> Any:
        try:
            return self._bounded(to_data(result))
        except Exception as err:
            self._fail(err, value.file, value.line, ExpressionError)

    def _text(self, value: Text, scope: Scope) -> str:
        fast = value.fast
        if fast is not None:
            try:
                text: str = fast(scope, self._getattr)
                return text
            except Exception:  # noqa: S110 - Jinja renders it again to locate the failure
                pass
        try:
            return str(self._run(value.template, scope, native=False))
        except Exception as err:
            self._fail(err, value.file, value.line, ExpressionError)

    def _lookup_call(self, value: LookupCall, scope: Scope) -> Any:
        key = self.evaluate(value.key, scope)
        merge = self.evaluate(value.merge, scope) if value.merge is not None else None
        try:
            if value.default is not None:
                return self.lookup(key, default=self.evaluate(value.default, scope), merge=merge)
            return self.lookup(key, merge=merge)
        except StewardError as err:
            raise relocated(err, at(value.file, value.line)) from None

    def _secret_ref(self, value: SecretRef, scope: Scope) -> SecretText:
        name = self.evaluate(value.name, scope)
        try:
            return self.secret(name)
        except StewardError as err:
            raise relocated(err, at(value.file, value.line)) from None

    # -- Jinja ---------------------------------------------------------------------------------

    def _resolve(self, path: tuple[str, ...], scope: Scope) -> Any:
        """``a.b.c`` exactly as the environment's ``getattr`` resolves it in a template."""
        current = scope.get(path[0], _MISSING)
        if current is _MISSING:
            return self.env.undefined(name=path[0])
        getattr_ = self._getattr
        for attr in path[1:]:
            current = getattr_(current, attr)
        return current

    def _run(self, template: Template, scope: Scope, *, native: bool) -> Any:
        context = RenderContext(self.env, scope, template.name, template.blocks)
        try:
            if native:
                for _ in template.root_render_func(context):
                    pass
                return context.vars["result"]
            return self._join(template.root_render_func(context), "the rendered text")
        except Exception:
            # Rewrites the traceback so frames carry template file names and lines.
            self.env.handle_exception()

    def _join(self, chunks: Iterator[str], what: str) -> str:
        """The rendered chunks joined, refused as soon as they exceed the text limit."""
        limit = self.limits.text
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_long(what, size, limit)
            parts.append(chunk)
        return "".join(parts)

    def _bounded(self, data: Any) -> Any:
        """An expression's value as catalog data: its JSON must fit the text limit."""
        if type(data) in _SCALARS:
            if type(data) is str and len(data) > self.limits.text:
                raise too_long("the value", len(data), self.limits.text)
            return data
        size = measure(data, self.limits.text)
        if size > self.limits.text:
            raise too_long("the value", size, self.limits.text)
        return data

    def _fail(
        self,
        err: Exception,
        file: str | None,
        line: int,
        kind: type[LanguageError],
    ) -> NoReturn:
        template_at = _template_frame(err.__traceback__)
        if template_at is not None:
            location = at(*template_at)
            kind = TemplateError
        elif file is not None:
            offset = _inline_line(err.__traceback__)
            location = at(file, line + (offset - 1 if offset else 0))
        else:
            location = None
        if isinstance(err, StewardError):
            raise (relocated(err, location) if location else err) from None
        raise kind(_describe_jinja_error(err), location=location) from None


def to_data(value: Any) -> Any:
    """Turn an expression's result into catalog data (JSON types); views become plain dicts."""
    kind = type(value)
    if kind in _SCALARS or kind is SecretText:
        return value
    if isinstance(value, FactView):
        return value._plain()
    if isinstance(value, TrackedParams):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        converted = [to_data(item) for item in value]
        if kind is list and all(a is b for a, b in zip(converted, value, strict=True)):
            return value
        return converted
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        changed = kind is not dict
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExpressionError(f"the result has a mapping key {key!r} that is not a string")
            new = to_data(item)
            changed = changed or new is not item
            result[key] = new
        return result if changed else value
    if isinstance(value, range):
        return list(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise ExpressionError(
        f"the result is a {kind.__name__}, which is not data (string, number, boolean, "
        "list or mapping)"
    )


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The innermost frame Jinja attributed to a file under templates/, as (path, line)."""
    found: tuple[str, int] | None = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(f"{TEMPLATES_DIR}/"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _inline_line(tb: TracebackType | None) -> int | None:
    """Line inside an inline (YAML string) template where the failure happened."""
    found: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _describe_jinja_error(err: Exception) -> str:
    if isinstance(err, SecurityError):
        return f"refused unsafe access: {err.message or err}"
    if isinstance(err, TemplateNotFound):
        return f"template {err.name!r} not found under {TEMPLATES_DIR}/"
    if isinstance(err, UndefinedError):
        return f"undefined: {err.message or err}"
    if isinstance(err, JinjaTemplateError):
        return str(err.message or err)
    return f"{type(err).__name__}: {err}"
