"""The compiler's shortcuts give exactly what Jinja (and ``json.dumps``) would.

Compiled dotted paths and interpolations, the inlined ``obj.name`` in compiled templates and
the catalog's single serialisation are each checked against the general path on generated
data: same result, or a failure in both.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from steward.catalog.canonical import canonical_json, content_hash
from steward.catalog.model import Catalog, Edge, Resource
from steward.compiler.context import FactView, NodeContext, TrackedParams
from steward.compiler.evaluate import Evaluator
from steward.errors import StewardError
from steward.language.jinja import (
    compile_parts,
    compile_path,
    dotted_path,
    make_environment,
    native_expression_node,
    simple_parts,
)
from steward.language.values import Expr, Text, compile_string
from steward.language.yamlsource import SourceMap

from .conftest import Compile

ENV = make_environment({})
#: The same sandbox without our shortcuts: the reference.
PLAIN = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, trim_blocks=True
)

#: Item names, dict methods (``x.items`` is the method), a mutating method the sandbox refuses.
NAMES = ["a", "b", "name", "port", "items", "keys", "get", "copy", "pop", "count"]
ROOTS = ["item", "params", "facts", "node"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
)
data = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner),
    max_leaves=12,
)
paths = st.tuples(st.sampled_from(ROOTS), st.lists(st.sampled_from(NAMES), max_size=3)).map(
    lambda p: (p[0], *p[1])
)
literals = st.text(alphabet="ab /:.-_\n", max_size=5)
parts = st.lists(st.one_of(literals, paths), min_size=1, max_size=4)


def scope_of(values: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A scope like the compiler's: facts as a view recording reads, params tracked."""
    scope: dict[str, Any] = dict(values)
    if isinstance(values.get("facts"), dict):
        scope["facts"] = FactView(values["facts"], "", ctx)
    if isinstance(values.get("params"), dict):
        params = TrackedParams("p", tuple(values["params"]), ctx)
        for name, value in values["params"].items():
            params._set(name, value, tainted=name == "b")
        scope["params"] = params
    return scope


def outcome(run: Any) -> tuple[str, Any]:
    try:
        result = run()
    except Exception as err:  # the reference may fail in many ways; the fast path must too
        return "error", type(err).__name__
    if isinstance(result, str):  # ``{{ x.items }}`` shows the method and its (scope's) address
        result = re.sub(r" at 0x[0-9a-f]+", "", result)
    return "ok", result


def text_of(pieces: list[str | tuple[str, ...]]) -> str:
    return "".join(p if isinstance(p, str) else "{{ " + ".".join(p) + " }}" for p in pieces)


def same(left: Any, right: Any) -> bool:
    """Equal, including the type (``1 == True``) and NaN."""
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return type(left) is type(right) and left == right


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=dict.fromkeys(ROOTS, data)), pieces=parts)
def test_interpolation_fast_path_is_jinja(values: dict[str, Any], pieces: list[Any]) -> None:
    source = text_of(pieces)
    tree = ENV.parse(source)
    compiled = simple_parts(tree)
    if compiled is None:  # e.g. only literal text after all: nothing to compare
        return
    ctx_fast, ctx_jinja = NodeContext("n", None), NodeContext("n", None)
    fast = outcome(lambda: compile_parts(compiled)(scope_of(values, ctx_fast), ENV.getattr))
    jinja = outcome(lambda: PLAIN.from_string(source).render(scope_of(values, ctx_jinja)))
    if jinja[0] == "ok":
        assert fast == jinja, source
        # Reading facts records the same inputs; reading a tainted parameter taints.
        assert ctx_fast.fact_reads == ctx_jinja.fact_reads
        assert (ctx_fast.taint > 0) == (ctx_jinja.taint > 0)
    else:
        assert fast[0] == "error", source


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=dict.fromkeys(ROOTS, data)), path=paths)
def test_path_fast_path_is_jinja(values: dict[str, Any], path: tuple[str, ...]) -> None:
    source = "{{ " + ".".join(path) + " }}"
    expr = native_expression_node(ENV.parse(source))
    assert expr is not None
    assert dotted_path(expr) == path
    fast = outcome(
        lambda: compile_path(path)(scope_of(values, NodeContext("n", None)), ENV.getattr)
    )
    jinja = outcome(
        lambda: PLAIN.compile_expression(".".join(path), undefined_to_none=False)(
            **scope_of(values, NodeContext("n", None))
        )
    )
    if jinja[0] == "ok" and not hasattr(jinja[1], "_fail_with_undefined_error"):
        assert fast[0] == "ok", path
        left, right = fast[1], jinja[1]
        if isinstance(right, dict):  # views compare by content
            assert dict(left) == dict(right)
        elif callable(right):  # a bound method (``x.items``) of an equal object
            assert left.__name__ == right.__name__
            assert type(left.__self__) is type(right.__self__)
        else:
            assert same(left, right), path


def evaluate_both(source: str, values: dict[str, Any]) -> tuple[Any, Any]:
    """The evaluator's result (or error text) with the fast path, and with Jinja only."""
    compiled = compile_string(source, ("v",), SourceMap("t.yaml"), ENV)
    assert isinstance(compiled, Expr | Text)
    slow = (
        Expr(compiled.source, compiled.template, compiled.file, compiled.line, None, ())
        if isinstance(compiled, Expr)
        else Text(compiled.source, compiled.template, compiled.file, compiled.line, None, ())
    )
    results = []
    for node in (compiled, slow):
        evaluator = Evaluator(ENV, lambda *a, **k: None, lambda name: name)
        try:
            scope = scope_of(values, NodeContext("n", None))
            result = evaluator.evaluate(node, scope)
            if isinstance(result, str):
                result = re.sub(r" at 0x[0-9a-f]+", "", result)
            results.append(("ok", result))
        except StewardError as err:
            results.append(("error", str(err)))
    return results[0], results[1]


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=dict.fromkeys(ROOTS, data)), pieces=parts)
def test_evaluator_answers_alike_with_and_without_the_fast_path(
    values: dict[str, Any], pieces: list[Any]
) -> None:
    source = text_of(pieces)
    if "{{" not in source:
        return
    fast, jinja = evaluate_both(source, values)
    if fast[0] == "ok" and callable(fast[1]):
        return  # ``{{ x.items }}`` alone: a bound method, refused as data either way
    assert fast == jinja, source


@pytest.mark.parametrize(
    ("source", "values", "fragment"),
    [
        ("/srv/{{ item.name }}", {"item": {"port": 1}}, "name"),
        ("{{ item.name }}", {"item": {"port": 1}}, "name"),
        ("{{ facts.os.family }}", {"facts": {"os": {}}}, "os.family"),
        ("x{{ params.nope }}", {"params": {"a": 1}}, "nope"),
        ("{{ missing }}", {}, "missing"),
    ],
)
def test_failures_are_reported_by_jinja_and_name_the_attribute(
    source: str, values: dict[str, Any], fragment: str
) -> None:
    fast, jinja = evaluate_both(source, values)
    assert fast == jinja
    assert fast[0] == "error"
    assert fragment in fast[1]


def test_private_and_template_names_are_left_to_jinja() -> None:
    for source in ("{{ x._y }}", "{{ self }}", "{{ loop }}", "a{{ x.__class__ }}"):
        tree = ENV.parse(source)
        expr = native_expression_node(tree)
        assert expr is None or dotted_path(expr) is None
        assert simple_parts(tree) is None


@settings(max_examples=150, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=dict.fromkeys(ROOTS, data)), path=paths)
def test_compiled_templates_read_attributes_like_the_sandbox(
    values: dict[str, Any], path: tuple[str, ...]
) -> None:
    dotted = ".".join(path)
    source = (
        f"[{{{{ {dotted} }}}}] {{{{ {dotted} | default('d') }}}} "
        f"{{% if {dotted} is defined %}}yes{{% endif %}}"
    )
    ours = outcome(lambda: ENV.from_string(source).render(scope_of(values, NodeContext("n", None))))
    reference = outcome(
        lambda: PLAIN.from_string(source).render(scope_of(values, NodeContext("n", None)))
    )
    assert ours == reference, source


def test_compiled_templates_keep_the_sandbox() -> None:
    for source in (
        "{{ ''.__class__.__mro__ }}",
        "{{ item.__class__ }}",
        "{{ item.pop('a') }}",
        "{{ item.update({'b': 1}) }}",
        "{{ lookup.__globals__ }}",
    ):
        template = ENV.from_string(source)
        with pytest.raises(Exception, match=r"unsafe|undefined|not safely callable|has no"):
            template.render(item={"a": 1}, lookup=len)


# -- the catalog's single serialisation --------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)
texts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8)
resources = st.builds(
    Resource,
    st.sampled_from(["file", "package", "x\u00e9"]),
    texts,
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    st.tuples() | st.tuples(texts) | st.tuples(texts, texts),
    st.none() | st.sampled_from(["a.yaml", "b\"\\.yaml"]),
    st.none() | st.sampled_from([1, True, 2**70, 0]),
)
edges = st.builds(Edge, texts, texts, st.sampled_from(["before", "notifies", "autorequire"]))
catalogs = st.builds(
    Catalog,
    texts,
    texts,
    st.lists(resources, max_size=5).map(lambda rs: [*rs, *rs[:2]]),  # repeats, in runs
    st.lists(edges, max_size=5),
    st.none() | texts,
    st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    st.dictionaries(texts, texts, max_size=2),
)


@settings(max_examples=100, deadline=None)
@given(catalog=catalogs)
def test_sealed_text_is_the_canonical_serialisation(catalog: Catalog) -> None:
    catalog.seal()
    assert catalog.hash == content_hash(catalog.body())
    assert catalog.dumps(indent=None) == canonical_json(catalog.to_json())
    assert catalog.dumps() == canonical_json(catalog.to_json(), indent=2)


def test_equal_but_differently_encoded_neighbours() -> None:
    """``1 == True == 1.0`` and ``"a" == SecretText("a")``: what is reused must be the same."""
    params: dict[str, Any] = {"x": 1}
    resources = [
        Resource("file", "a", params, ("t",), "f.yaml", line)
        for line in (1, True, 1.0, 1)  # type: ignore[arg-type]
    ]
    edges = [Edge("a", "b", "before"), Edge("a", 1, "x")]  # type: ignore[arg-type]
    catalog = Catalog("n", "e", resources, edges).seal()
    assert catalog.dumps(indent=None) == canonical_json(catalog.to_json())
    lines = [r["line"] for r in json.loads(catalog.dumps(indent=None))["resources"]]
    assert [type(line) for line in lines] == [int, bool, float, int]


def test_a_changed_catalog_is_serialised_afresh() -> None:
    catalog = Catalog("n", "production", [Resource("package", "a", {"name": "a"})], []).seal()
    sealed = catalog.dumps(indent=None)
    assert json.loads(sealed)["hash"] == catalog.hash
    catalog.resources.append(Resource("package", "b", {"name": "b"}))
    assert catalog.dumps(indent=None) == canonical_json(catalog.to_json())
    catalog.seal()
    catalog.edges = [Edge("package[a]", "package[b]", "before")]
    assert "package[b]" in json.loads(catalog.dumps(indent=None))["edges"][0]["target"]
    catalog.seal()
    catalog.node = "other"
    assert json.loads(catalog.dumps(indent=None))["node"] == "other"
    catalog.seal()
    assert catalog.dumps(indent=None) == canonical_json(catalog.to_json())


def test_resources_and_edges_stay_frozen() -> None:
    from dataclasses import FrozenInstanceError, replace

    resource = Resource("file", "/x", {"path": "/x"}, ("t",), "f.yaml", 3)
    with pytest.raises(FrozenInstanceError):
        resource.title = "/y"  # type: ignore[misc]
    assert replace(resource, title="/y").title == "/y"
    assert resource == Resource("file", "/x", {"path": "/x"}, ("t",), "f.yaml", 3)
    edge = Edge("a[b]", "c[d]", "before")
    with pytest.raises(FrozenInstanceError):
        edge.source = "x"  # type: ignore[misc]
    assert {edge, Edge("a[b]", "c[d]", "before")} == {edge}


def test_renders_use_the_lean_context_and_agree_with_jinja() -> None:
    from steward.compiler.evaluate import RenderContext

    assert RenderContext.__name__ == "_ScopeContext"  # this Jinja's contexts have its shape
    sources = {
        "main.j2": (
            "{% import 'macros.j2' as m %}{% set total = items | length %}"
            "{% for it in items %}{{ loop.index }}:{{ m.show(it) }}{% if not loop.last %},"
            "{% endif %}{% endfor %} of {{ total }} on {{ node }}"
            "{% include 'part.j2' %}{{ cfg.a.b }}{{ cfg.get('a').b }}"
        ),
        "macros.j2": "{% macro show(x) %}[{{ x.name | upper }}]{% endmacro %}",
        "part.j2": "({{ node }}{{ items[0].name }})",
    }
    env = make_environment(sources)
    scope = {
        **env.globals,
        "items": [{"name": "a"}, {"name": "b"}],
        "node": "web1",
        "cfg": {"a": {"b": 2}},
    }
    template = env.get_template("main.j2")
    evaluator = Evaluator(env, lambda *a, **k: None, lambda name: name)
    rendered = evaluator.render_file(template, "templates/main.j2", scope)
    assert rendered == template.render(scope) == "1:[A],2:[B] of 2 on web1(web1a)22"


def test_simple_template_files_skip_the_render(build: Compile) -> None:
    files = {
        "classification.yaml": "rules:\n  - name: all\n    role: r\n",
        "roles/r.yaml": "profiles:\n  p: {}\n",
        "profiles/p.yaml": """
            resources:
              "file[/srv/{{ item }}]":
                for_each: [a, b]
                template: simple.j2
              file[/srv/c]:
                template: loop.j2
            """,
        "templates/simple.j2": "name={{ item }}\nos={{ facts.os.family }} {{ node }}\n\n",
        "templates/loop.j2": "{% for x in [1, 2] %}{{ x }}{% endfor %}\n",
    }
    result = build(files)
    contents = {r.title: r.parameters["content"] for r in result.catalog.resources}
    assert contents == {
        "/srv/a": "name=a\nos=Debian web1\n\n",
        "/srv/b": "name=b\nos=Debian web1\n\n",
        "/srv/c": "12",  # trim_blocks
    }
    assert "os.family" in result.catalog.inputs["facts"]
