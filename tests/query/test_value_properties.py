"""Fact value comparisons against a Python model of PuppetDB's rules, for random values."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steward.store import Store
from tests.store.backends import Clock, open_store

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-50, 50), st.floats(-50, 50, allow_nan=False),
    st.sampled_from(["", "a", "ab", "b", "10", "9", "web01", "Web", "0.5", "true"]),
)
LITERALS = st.one_of(st.booleans(), st.integers(-50, 50), st.floats(-50, 50, allow_nan=False),
                     st.sampled_from(["", "a", "b", "10", "9", "web01", "0.5", "true"]))
OPS = {"=": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le,
       ">=": operator.ge}


def expected(value: Any, op: str, literal: Any) -> bool:
    """PuppetDB's rule: compare only values of the literal's kind (numbers as numbers)."""
    if isinstance(literal, bool):
        return op == "=" and isinstance(value, bool) and value == literal
    if isinstance(literal, int | float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and bool(OPS[op](value, literal))
    if op == "~":
        return isinstance(value, str) and re.search(literal, value) is not None
    return isinstance(value, str) and bool(OPS[op](value, literal))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    directory: Path = tmp_path_factory.mktemp("values")
    with open_store("sqlite", directory, Clock()) as store:
        yield store


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(SCALARS, min_size=1, max_size=8),
       op=st.sampled_from(["=", "<", ">", "<=", ">=", "~"]), literal=LITERALS)
def test_comparisons_follow_the_literal_type(sqlite_store: Store, values: list[Any], op: str,
                                             literal: Any) -> None:
    if op == "~" and not isinstance(literal, str):
        op = "="
    if op not in ("=", "~") and isinstance(literal, bool):
        op = "="
    stamp = datetime.now(UTC)
    for index, value in enumerate(values):
        sqlite_store.replace_facts(f"n{index}", "production", {"x": value, "nested": {"x": value}},
                                   stamp)
    for stale in range(len(values), 8):
        sqlite_store.replace_facts(f"n{stale}", "production", {}, stamp)
    want = [f"n{i}" for i, v in enumerate(values) if expected(v, op, literal)]
    facts = sqlite_store.query(["from", "facts", ["extract", ["certname"],
                                                  ["and", ["=", "name", "x"], [op, "value",
                                                                               literal]]]])
    assert [r["certname"] for r in facts] == want
    inventory = sqlite_store.query(["from", "inventory", ["extract", ["certname"],
                                                          [op, "facts.nested.x", literal]]])
    assert [r["certname"] for r in inventory] == want
