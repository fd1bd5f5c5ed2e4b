"""Compile limits (docs/language.md#limits): no template, expression or file makes a compile
unbounded; each violation is a LimitError naming the file and line, raised before the memory
is taken. Every bomb runs under an address-space limit well below what it would need."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator

import pytest

from steward.compiler import compile_catalog
from steward.language import load_repository
from steward.language.errors import LimitError, RepositoryError
from steward.language.jinja import make_environment
from steward.language.limits import Limits, budget

from .conftest import DEBIAN, Compile, WriteRepo, one_profile

#: 2 GiB of address space above what the test process holds: every bomb below would need more
#: (1 GB strings, 10**9-bit integers); a LimitError must come first.
HEADROOM = 2 << 30


@pytest.fixture(autouse=True)
def bounded_memory() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status", encoding="ascii") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


BOMBS = [
    ("{{ 'A' * 1000000000 }}", "the result of '*' would be 1000000000 characters"),
    ("{{ 1000000000 * 'A' }}", "the result of '*' would be 1000000000 characters"),
    ("{{ ([1] * 1000000000)|length }}", "the result of '*' would be 1000000000 entries"),
    ("{{ (2 ** 1000000000) > 1 }}", "the result of '**' would be 1000000000 bits"),
    ("{{ (10 ** (10 ** 10)) > 1 }}", "the result of '**'"),
    ("{{ range(10 ** 9)|length }}", "range() would be 1000000000 entries"),
    ("{{ 'a'.ljust(1000000000) }}", "the result of ljust() would be 1000000000 characters"),
    ("{{ 'a'.zfill(1000000000) }}", "the result of zfill()"),
    ("{{ 'a'|center(1000000000) }}", "the result of |center would be 1000000000"),
    ("{{ 'a\nb'|indent(1000000000) }}", "the result of |indent"),
    ("{{ '%01000000000d' % 1 }}", "the result of '%' would be 1000000000"),
    ("{{ '%01000000000d'|format(1) }}", "the result of |format"),
    ("{{ '{:>1000000000}'.format(1) }}", "the result of format()"),
    ("{{ '{:>{w}}'.format(1, w=10 ** 9) }}", "the result of format()"),
    ("{{ range(100000)|join('x' * 1000000) }}", "the result of |join would be"),
    ("{{ ('x' * 1000000).join(range(100000)|map('string')) }}", "the result of join()"),
    ("{{ 'ab'.replace('', 'x' * 4000000) }}", "the result of replace()"),
    ("{{ 'ab'|replace('', 'x' * 4000000) }}", "the result of |replace"),
    ("{{ [1]|batch(1000000000, 0)|list }}", "the result of |batch would be 1000000000"),
    ("{{ [1]|slice(1000000000)|list }}", "the result of |slice"),
    ("{{ [1, 2]|tojson(indent=1000000000) }}", "the indent may be at most 64"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}"
     "{% endfor %}{{ ns.x|length }}", "the result of '~' would be"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}"
     "{% endfor %}{{ ns.x|length }}", "the result of '+' would be"),
    ("{{ ['x' * 4000000] * 100000 }}", "would be"),
    ("{% set l = ['x' * 4000000] * 1000 %}{{ l|string|length }}", "the result of |string"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "exceeded 10000000 steps"),
    ("{% macro m() %}{% for i in range(100000) %}{{ 'x' * 4000000 }}{% endfor %}{% endmacro %}"
     "{{ m()|length }}", "produced more than"),
]


@pytest.mark.parametrize(("source", "message"), BOMBS, ids=[b[0][:40] for b in BOMBS])
def test_template_bombs_fail_fast_naming_file_and_line(
    build: Compile, source: str, message: str
) -> None:
    files = {
        **one_profile("file[/etc/bomb]:\n  template: bomb.j2\n"),
        "templates/bomb.j2": f"first line\n{source}\n",
    }
    started = time.monotonic()
    with pytest.raises(LimitError) as caught:
        build(files)
    assert time.monotonic() - started < 8
    error = str(caught.value)
    assert message in error, error
    assert error.startswith("templates/bomb.j2:2:") or (
        # Over the text limit while joining the rendered output: the file is named.
        error.startswith("templates/bomb.j2:")), error


def test_inline_expression_bomb_names_the_yaml_line(build: Compile) -> None:
    files = one_profile(
        "file[/etc/a]:\n  content: ok\nfile[/etc/b]:\n  content: \"{{ 'B' * 10 ** 9 }}\"\n")
    with pytest.raises(LimitError) as caught:
        build(files)
    assert str(caught.value).startswith(
        "profiles/p.yaml:7: file[/etc/b]: parameter 'content': the result of '*' would be "
        "1000000000 characters; the limit is 4194304"), str(caught.value)


def test_bombs_do_not_explode_at_load_time(write_repo: WriteRepo) -> None:
    """Jinja folds constant expressions when it compiles a template: the intercepted
    operators and checked filters are not folded, so loading stays cheap."""
    started = time.monotonic()
    load_repository(write_repo({
        **one_profile("file[/etc/x]:\n  content: \"{{ 'a'|center(10 ** 9) }}\"\n"),
        "templates/t.j2": "{{ 'A' * 10 ** 9 }}{{ 2 ** 10 ** 9 }}{{ 'a'.ljust(10 ** 9) }}\n",
    }))
    assert time.monotonic() - started < 5


def test_rendered_template_size(build: Compile) -> None:
    files = {
        **one_profile("file[/etc/big]:\n  template: big.j2\n"),
        # Each piece is within the limit; the whole rendering is not.
        "templates/big.j2": "{% for i in range(5) %}{{ 'x' * 1000000 }}\n{% endfor %}",
    }
    with pytest.raises(LimitError, match="the rendered template would be"):
        build(files)


def test_expression_value_size(build: Compile) -> None:
    """A list of references to one large string is small in memory, huge as catalog JSON."""
    files = one_profile(
        "exec[x]:\n  command: /bin/true\n  environment: \"{{ ['x' * 4000000] * 2 }}\"\n")
    with pytest.raises(LimitError, match="would be"):
        build(files)


def test_for_each_over_too_many_items(build: Compile) -> None:
    files = one_profile(
        "file[/etc/{{ item }}]:\n  for_each: \"{{ range(100000)|list + range(10)|list }}\"\n")
    with pytest.raises(LimitError, match="the result of '\\+' would be 100010 entries"):
        build(files)


def test_file_source_size(build: Compile) -> None:
    files = {
        **one_profile("file[/etc/big]:\n  source: big.txt\n"),
        "files/big.txt": "x" * (4 * 1024 * 1024 + 1),
    }
    with pytest.raises(LimitError) as caught:
        build(files)
    assert str(caught.value).startswith(
        "profiles/p.yaml:5: file[/etc/big]: source files/big.txt would be 4194305 bytes")


def test_resources_per_catalog(write_repo: WriteRepo) -> None:
    repo = load_repository(write_repo(one_profile(
        "file[/etc/{{ item }}]:\n  for_each: \"{{ range(30)|list }}\"\n")))
    repo.env.limits = Limits(resources=20)  # type: ignore[attr-defined]
    with pytest.raises(LimitError, match="more than 20 resources") as caught:
        compile_catalog(repo, "web1", DEBIAN)
    assert str(caught.value).startswith("profiles/p.yaml:4: file[/etc/20]:")


def test_render_time(write_repo: WriteRepo) -> None:
    """Exponential macro recursion: few steps per call, but endless; the clock stops it."""
    repo = load_repository(write_repo({
        **one_profile("file[/etc/slow]:\n  template: slow.j2\n"),
        "templates/slow.j2": "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}"
                             "{% endmacro %}\n{{ m(60) }}\n",
    }))
    repo.env.limits = Limits(seconds=0.5)  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(LimitError, match=r"took longer than 0\.5 s") as caught:
        compile_catalog(repo, "web1", DEBIAN)
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith("templates/slow.j2:1:")


def test_budget_is_per_compilation(write_repo: WriteRepo) -> None:
    """Steps are counted per compile: many compiles of one repository each start afresh."""
    repo = load_repository(write_repo({
        **one_profile("file[/etc/loop]:\n  template: loop.j2\n"),
        "templates/loop.j2": "{% for i in range(100000) %}{% endfor %}ok\n",
    }))
    repo.env.limits = Limits(steps=150_000)  # type: ignore[attr-defined]
    for _ in range(3):
        catalog = compile_catalog(repo, "web1", DEBIAN).catalog
        assert catalog.resources[0].parameters["content"] == "ok\n"


def test_ordinary_templates_are_unaffected() -> None:
    env = make_environment({})
    source = ("{{ 'ab' * 3 }} {{ [1] + [2] }} {{ 2 ** 64 }} {{ '%5s|' % 'a' }} "
              "{{ '{:>4}'.format(1) }} {{ 'a' ~ 1 }} {{ range(3)|join(',') }} "
              "{{ [[1], [2]]|sum(start=[]) }} {{ 'x'|center(5) }}|"
              "{% for x in [1, 2]|map('string') %}{{ x }}{% endfor %}")
    with budget(Limits()):
        assert env.from_string(source).render() == (
            "ababab [1, 2] 18446744073709551616     a|    1 a1 0,1,2 [1, 2]   x  |12")


def test_limits_are_configurable() -> None:
    env = make_environment({}, Limits(text=10))
    with budget(env.limits), pytest.raises(LimitError, match="the limit is 10"):
        env.from_string("{{ 'x' * 11 }}").render()


def test_a_macro_named_join_is_called_as_it_is() -> None:
    env = make_environment({})
    source = "{% macro join(x) %}{{ x is string }}{% endmacro %}{{ join('ab') }}"
    with budget(Limits()):
        assert env.from_string(source).render() == "True"


def test_yaml_alias_bomb_is_refused_naming_the_file(write_repo: WriteRepo) -> None:
    """The "billion laughs": nine levels of ten aliases each would build 10^9 values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    files = {**one_profile("file[/etc/x]:\n  content: hello\n"),
             "data/common.yaml": "\n".join(lines) + "\n"}
    started = time.monotonic()
    with pytest.raises(RepositoryError) as caught:
        load_repository(write_repo(files))
    assert time.monotonic() - started < 10
    assert str(caught.value).startswith("data/common.yaml:"), str(caught.value)
    assert "expands to more than 1000000 values" in str(caught.value)


def test_oversized_repository_file_is_refused_before_it_is_read(
    write_repo: WriteRepo,
) -> None:
    root = write_repo(one_profile("file[/etc/x]:\n  source: big.txt\n"))
    (root / "files").mkdir()
    with (root / "files" / "big.txt").open("wb") as big:
        big.truncate(16 * 1024 * 1024 + 1)  # sparse: nothing this size is written or read
    with pytest.raises(RepositoryError) as caught:
        load_repository(root)
    assert str(caught.value) == (
        "files/big.txt: is 16777217 bytes, more than the limit of 16777216 for one repository "
        "file; see docs/language.md#limits"), str(caught.value)
