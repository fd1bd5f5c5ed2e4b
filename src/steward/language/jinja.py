"""The Jinja2 environment a repository's expressions and templates run in.

One sandboxed environment per repository: immutable sandbox (templates cannot mutate the data
they are given, which the compiler shares between nodes without copying), StrictUndefined (a
typo is an error, not an empty string), and a loader that serves only the template sources read
from ``templates/`` at load time, so ``include``/``import`` cannot reach anything else.
Nondeterministic helpers (``random``, ``lipsum``) are removed: equal inputs must give equal
catalogs. Every operator, call, loop, filter and output that could make a value unbounded is
checked against the compile limits (:mod:`steward.language.limits`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from steward.language import limits as _limits
from steward.language.errors import LimitError
from steward.language.limits import DEFAULT_LIMITS, Limits

#: Where templates live inside a repository.
TEMPLATES_DIR = "templates"
#: Globals and filters removed because they make output depend on chance.
_NONDETERMINISTIC_GLOBALS = ("lipsum",)
_NONDETERMINISTIC_FILTERS = ("random",)


class RepositoryLoader(BaseLoader):
    """Serves template sources captured at load time; nothing outside templates/ exists."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = MappingProxyType(dict(sources))

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        name = normalise_template_name(template)
        if name is None or name not in self._sources:
            raise TemplateNotFound(template)
        return self._sources[name], f"{TEMPLATES_DIR}/{name}", _always_current

    def list_templates(self) -> list[str]:
        return sorted(self._sources)


def _always_current() -> bool:
    return True


def normalise_template_name(name: str) -> str | None:
    """``a/./b.j2`` → ``a/b.j2``; None for names escaping templates/ (``..``, absolute)."""
    if not name or name.startswith("/"):
        return None
    try:
        return "/".join(split_template_path(name))
    except TemplateNotFound:
        return None


class DataView(dict[str, Any]):
    """Base of the compiler's views (facts, parameters): dicts with no public attributes of
    their own, so ``view.key`` may go straight to ``view["key"]`` like a plain dict's."""

    __slots__ = ()


#: Public attributes of dict; ``obj.name`` for any other name is an item lookup on a dict.
_DICT_ATTRIBUTES = frozenset(name for name in dir(dict) if not name.startswith("_"))


def is_item_name(attribute: str) -> bool:
    """Whether ``obj.attribute`` on a dict (or view) is exactly ``obj["attribute"]`` in Jinja:
    neither a dict method nor a private name (which the sandbox handles itself)."""
    return attribute not in _DICT_ATTRIBUTES and not attribute.startswith("_")


class _ItemNames(dict[str, bool]):
    """``is_item_name`` memoised: templates use a handful of attribute names, many times."""

    def __missing__(self, attribute: str) -> bool:
        answer = self[attribute] = is_item_name(attribute)
        return answer


class RepositoryCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``obj.name`` inlined for dicts and views.

    Jinja compiles ``obj.name`` to ``environment.getattr(obj, 'name')``: a Python call per
    attribute, the most frequent operation in a template. When ``name`` is an item name (see
    :func:`is_item_name`) the generated code reads a dict's item or a view's directly, exactly
    what :meth:`RepositoryEnvironment.getattr` would do for them, and calls it for anything
    else (including a dict without that key, which it answers with an Undefined).
    """

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        self.writeline(f"from {__name__} import DataView as {_VIEW_CLASS}")
        super().visit_Template(node, frame)

    # Compile limits: every loop, output and ``~`` goes through the environment's checks.

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Jinja has no custom node types: the loop's iterable is recognised by identity.
        self._loop_iterables = {*getattr(self, "_loop_iterables", ()), id(node.iter)}
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in getattr(self, "_loop_iterables", ()):
            return super().visit(node, *args, **kwargs)
        self.write("environment.steward_loop(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.steward_output(")
        super()._output_child_pre(node, frame, finalize)
        self.write("environment.steward_text_of(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write(")")
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def _output_const_repr(self, group: Any) -> str:
        return f"environment.steward_output({super()._output_const_repr(group)})"

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.steward_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    @optimizeconst
    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        if self.environment.is_async or not is_item_name(node.attr):
            super().visit_Getattr(node, frame)
            return
        value = self.temporary_identifier()
        attr = repr(node.attr)
        self.write(f"({value}[{attr}] if (type({value} := ")
        self.visit(node.node, frame)
        self.write(
            f") is dict and {attr} in {value}) or isinstance({value}, {_VIEW_CLASS}) "
            f"else environment.getattr({value}, {attr}))"
        )


#: The name :class:`DataView` has inside compiled templates.
_VIEW_CLASS = "_steward_DataView"


#: Operators whose result can be much larger than their operands: checked before they run.
_INTERCEPTED_BINOPS = frozenset({"*", "**", "+", "%"})


class RepositoryEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with shortcuts that keep its semantics exactly.

    Jinja layers each template's globals over the environment's with a ChainMap, which every
    include/import iterates to build a context: measurably slow when a catalog renders hundreds
    of templates. Our globals never change after loading, so a flat copy means the same thing.

    ``item.name`` on a dict first tries Python's ``getattr`` (raising and catching an
    AttributeError) before falling back to ``item["name"]``; for a dict and a name that is
    neither private nor a dict method the outcome is known, so we go straight to the item.
    Compiled templates do the same inline (:class:`RepositoryCodeGenerator`).
    """

    code_generator_class = RepositoryCodeGenerator
    intercepted_binops = _INTERCEPTED_BINOPS

    def __init__(self, *args: Any, limits: Limits = DEFAULT_LIMITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._item_names = _ItemNames()
        #: The compile limits templates and expressions of this repository run under.
        self.limits = limits

    # -- compile limits (steward.language.limits) -------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _limits.step()
        _limits.check_binop(self.limits, operator, left, right)
        return _limits.check_value(
            self.limits, super().call_binop(context, operator, left, right),
            f"the result of {operator!r}")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _limits.step()
        if (
            args
            and getattr(__obj, "__name__", None) == "join"
            and isinstance(getattr(__obj, "__self__", None), str | bytes)
            and not isinstance(args[0], list | tuple)
        ):  # str.join(generator): consumed here, at most limits.items, to measure it
            args = (list(__self.steward_loop(args[0])), *args[1:])
        _limits.check_method(__self.limits, __obj, args, kwargs)
        return _limits.check_value(
            __self.limits, super().call(__context, __obj, *args, **kwargs),
            f"the result of calling {getattr(__obj, '__name__', 'a function')}")

    def steward_loop(self, iterable: Any) -> Any:
        """A loop's iterable: at most ``limits.items`` iterations, each one a step."""
        try:
            size = len(iterable)
        except TypeError:
            return self._counted(iterable)
        if size > self.limits.items:
            raise _limits.too_long("a loop", size, self.limits.items, "iterations")
        _limits.step(size)
        return iterable

    def _counted(self, iterable: Any) -> Any:
        limit = self.limits.items
        for index, item in enumerate(iterable):
            if index >= limit:
                raise _limits.too_long("a loop", index + 1, limit, "iterations")
            _limits.step()
            yield item

    def steward_text_of(self, value: Any) -> Any:
        """A value about to be output: its text must fit before it is built."""
        return _limits.check_text_of(self.limits, value, "an output")

    def steward_output(self, text: str) -> str:
        _limits.produce(len(text))
        return text

    def steward_concat(self, parts: tuple[Any, ...]) -> str:
        texts = [str(_limits.check_text_of(self.limits, part, "'~'")) for part in parts]
        size = sum(len(text) for text in texts)
        if size > self.limits.text:
            raise _limits.too_long("the result of '~'", size, self.limits.text)
        _limits.produce(size)
        return "".join(texts)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            if self._item_names[attribute]:
                if attribute in obj:
                    return obj[attribute]
                return self.undefined(obj=obj, name=attribute)
        elif isinstance(obj, DataView) and self._item_names[attribute]:
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def make_environment(
    template_sources: Mapping[str, str], limits: Limits = DEFAULT_LIMITS
) -> RepositoryEnvironment:
    env = RepositoryEnvironment(
        limits=limits,
        loader=RepositoryLoader(template_sources),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        auto_reload=False,
        # Unbounded: every template is compiled once at load and must stay compiled.
        cache_size=-1,
    )
    for name in _NONDETERMINISTIC_GLOBALS:
        env.globals.pop(name, None)
    for name in _NONDETERMINISTIC_FILTERS:
        env.filters.pop(name, None)
    for name, function in list(env.filters.items()):
        env.filters[name] = _bounded_filter(name, function, limits)
    env.globals["range"] = functools.partial(_bounded_range, limits)
    return env


def _bounded_range(limits: Limits, *args: int) -> range:
    """``range``, at most ``limits.items`` long (the sandbox's own cap, as a LimitError)."""
    numbers = range(*args)
    if len(numbers) > limits.items:
        raise _limits.too_long("range()", len(numbers), limits.items, "entries")
    return numbers


def _bounded_filter(name: str, function: Callable[..., Any], limits: Limits) -> Any:
    """``function`` with its result checked, and the arguments of the filters that can make
    it much larger than their input (padding, joining, repeating, formatting) checked first."""
    check = _FILTER_CHECKS.get(name)
    what = f"the result of |{name}"

    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _limits.step()
        if check is not None:
            # Arguments after the context Jinja passes to some filters; a check may replace
            # them (a generator it had to consume to measure).
            replaced = check(limits, args[skip:], kwargs, what)
            if replaced is not None:
                args = (*args[:skip], *replaced)
        return _limits.check_value(limits, function(*args, **kwargs), what)

    return bounded


def _entries(limits: Limits, value: Any, what: str) -> list[Any]:
    """An iterable's entries, at most ``limits.items`` of them."""
    if isinstance(value, dict | str):
        value = list(value)
    items = value if isinstance(value, list) else []
    if items is not value:
        for index, item in enumerate(value):
            if index >= limits.items:
                raise _limits.too_long(what, index + 1, limits.items, "entries")
            items.append(item)
    if len(items) > limits.items:
        raise _limits.too_long(what, len(items), limits.items, "entries")
    _limits.step(len(items))
    return items


def _check_join(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> Any:
    if not args:
        return None
    items = _entries(limits, args[0], what)
    separator = args[1] if len(args) > 1 else kw.get("d", "")
    if (args[2] if len(args) > 2 else kw.get("attribute")) is None:
        _limits.check_join(limits, separator, items, what)
    return (items, *args[1:])


def _check_sum(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> Any:
    """Summing lists copies the total once per entry: refuse what exceeds the limits."""
    if not args:
        return None
    items = _entries(limits, args[0], what)
    start = args[2] if len(args) > 2 else kw.get("start", 0)
    if isinstance(start, list | tuple):
        total = len(start) + sum(len(item) for item in items if isinstance(item, list | tuple))
        if total > limits.items or total * len(items) > limits.steps:
            raise _limits.too_long(what, total, limits.items, "entries")
    return (items, *args[1:])


def _check_center(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    width = args[1] if len(args) > 1 else kw.get("width", 80)
    if isinstance(width, int) and width > limits.text:
        raise _limits.too_long(what, width, limits.text)


def _check_indent(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    text = str(args[0]) if args else ""
    width = args[1] if len(args) > 1 else kw.get("width", 4)
    _limits.check_width(limits, width, len(text), text.count("\n") + 1, what)


def _check_format(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    if args and isinstance(args[0], str):
        _limits.check_percent(limits, args[0], (*args[1:], *kw.values()), what)


def _check_text(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    if args:
        _limits.check_text_of(limits, args[0], what)
    indent = kw.get("indent", args[1] if len(args) > 1 else None)
    if isinstance(indent, int | str) and (len(indent) if isinstance(indent, str) else indent) > 64:
        raise LimitError(f"{what}: the indent may be at most 64 ({_limits.DOC})")


def _check_replace(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    if len(args) >= 3:
        count = args[3] if len(args) > 3 else kw.get("count")
        _limits.check_replace(limits, str(args[0]), args[1], args[2], count, what)


def _check_count(position: int, keyword: str) -> Any:
    def check(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
        count = args[position] if len(args) > position else kw.get(keyword)
        if isinstance(count, int) and count > limits.items:
            raise _limits.too_long(what, count, limits.items, "entries")

    return check


def _check_wordwrap(limits: Limits, args: tuple[Any, ...], kw: dict[str, Any], what: str) -> None:
    text = str(args[0]) if args else ""
    wrap = args[4] if len(args) > 4 else kw.get("wrapstring")
    if isinstance(wrap, str):
        _limits.check_width(limits, wrap, len(text), len(text) + 1, what)


#: Pre-checks of the filters that can amplify (center, indent, ...), keyed by filter name.
_FILTER_CHECKS: dict[str, Callable[..., Any]] = {
    "center": _check_center,
    "join": _check_join,
    "sum": _check_sum,
    "indent": _check_indent,
    "format": _check_format,
    "replace": _check_replace,
    "string": _check_text,
    "tojson": _check_text,
    "pprint": _check_text,
    "batch": _check_count(1, "linecount"),
    "slice": _check_count(1, "slices"),
    "wordwrap": _check_wordwrap,
}


def has_jinja(text: str) -> bool:
    """Whether a string from a YAML file is an expression/template rather than a constant."""
    return "{{" in text or "{%" in text


def native_expression_node(tree: nodes.Template) -> nodes.Expr | None:
    """The expression when a parsed string is exactly one ``{{ expr }}`` and nothing else."""
    if len(tree.body) != 1:
        return None
    output = tree.body[0]
    if not isinstance(output, nodes.Output) or len(output.nodes) != 1:
        return None
    expr = output.nodes[0]
    if isinstance(expr, nodes.TemplateData):
        return None
    return expr


#: Names a template resolves itself rather than from its context.
_SPECIAL_NAMES = frozenset({"self", "loop", "super", "caller", "varargs", "kwargs"})


def dotted_path(expr: nodes.Expr) -> tuple[str, ...] | None:
    """``a.b.c`` as ``("a", "b", "c")`` when the expression is just that, else None.

    Such expressions are evaluated without building a Jinja context (the common case by far:
    ``{{ item }}``, ``{{ params.port }}``), with the same ``environment.getattr`` semantics.
    """
    parts: list[str] = []
    while isinstance(expr, nodes.Getattr):
        if expr.attr.startswith("_"):
            return None
        parts.append(expr.attr)
        expr = expr.node
    if not isinstance(expr, nodes.Name) or expr.ctx != "load" or expr.name in _SPECIAL_NAMES:
        return None
    parts.append(expr.name)
    return tuple(reversed(parts))


def simple_parts(tree: nodes.Template) -> tuple[str | tuple[str, ...], ...] | None:
    """Literal text and dotted paths when a template is only those (``/var/www/{{ item }}``)."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts: list[str | tuple[str, ...]] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
            continue
        path = dotted_path(node)
        if path is None:
            return None
        parts.append(path)
    return tuple(parts)


#: ``environment.getattr``, which a fast path calls for anything but a dict item.
GetAttr = Callable[[Any, str], Any]
#: A compiled fast path: (scope, getattr) → value; raises when Jinja must take over.
FastPath = Callable[[Mapping[str, Any], GetAttr], Any]


@functools.lru_cache(maxsize=4096)
def compile_path(path: tuple[str, ...]) -> FastPath:
    """``a.b.c`` as straight-line Python with ``environment.getattr``'s semantics.

    The root name is read from the scope (a KeyError when it is missing) and each attribute
    goes through ``getattr`` (the environment's, sandbox and all), except an item of a dict or
    view whose name is neither private nor a dict method, read directly as the environment's
    ``getattr`` would. A missing item raises (KeyError) or gives a StrictUndefined (views):
    either way the caller lets Jinja evaluate it again, to report the failure as it does.
    """
    return _compile([path], "return v0")


@functools.lru_cache(maxsize=4096)
def compile_parts(parts: tuple[str | tuple[str, ...], ...]) -> FastPath:
    """Literal text and dotted paths (see :func:`simple_parts`) concatenated as Jinja would.

    Each path is converted with ``str`` right after it is read, in order, exactly like the
    ``yield str(...)`` of a compiled template; a StrictUndefined raises there.
    """
    literals = [part for part in parts if isinstance(part, str)]
    paths = [part for part in parts if not isinstance(part, str)]
    pieces: list[str] = []
    literal = path = 0
    for part in parts:
        if isinstance(part, str):
            pieces.append(f"{{c{literal}}}")
            literal += 1
        else:
            pieces.append(f"{{v{path}}}")
            path += 1
    return _compile(paths, f"return f{''.join(pieces)!r}", literals, text=True)


def _compile(
    paths: list[tuple[str, ...]],
    result: str,
    literals: list[str] | None = None,
    *,
    text: bool = False,
) -> FastPath:
    lines = ["def fast(scope, getattr_):"]
    for index, path in enumerate(paths):
        name = f"v{index}"
        lines.append(f"    {name} = scope[{path[0]!r}]")
        for attribute in path[1:]:
            if is_item_name(attribute):
                lines.append(
                    f"    {name} = {name}[{attribute!r}] if type({name}) is dict "
                    f"or isinstance({name}, DataView) else getattr_({name}, {attribute!r})"
                )
            else:
                lines.append(f"    {name} = getattr_({name}, {attribute!r})")
        if text:
            lines.append(f"    {name} = str({name})")
    if text and paths:
        # Over the default text limit the fast path gives up, and Jinja renders it with every
        # limit checked (and the error located).
        total = " + ".join(f"len(v{index})" for index in range(len(paths)))
        lines.append(f"    if {total} > {DEFAULT_LIMITS.text}: raise OverflowError")
    lines.append(f"    {result}")
    namespace: dict[str, Any] = {
        "DataView": DataView,
        "__builtins__": {"dict": dict, "isinstance": isinstance, "len": len, "str": str,
                         "type": type, "OverflowError": OverflowError},
    }
    for index, literal in enumerate(literals or ()):
        namespace[f"c{index}"] = literal
    exec("\n".join(lines), namespace)  # noqa: S102 - names and text come from repr()
    fast: FastPath = namespace["fast"]
    return fast


def native_template(env: Environment, expr: nodes.Expr) -> Any:
    """Compile ``expr`` so that rendering stores its value in the context var ``result``.

    This is what ``Environment.compile_expression`` does internally, but keeping the Template
    lets the compiler run it with a cheaply built context instead of ``render``'s.
    """
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=expr.lineno)]
    return env.from_string(nodes.Template(body, lineno=1))
