"""The compiler emits bound parameters only, and both backends answer alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from steward.query import Compiler
from steward.query.examples import REFERENCE_EXAMPLES
from steward.store.entities import store_entities
from steward.store.models import TABLES
from tests.query.fleet import Fleet, seed
from tests.query.test_examples import names
from tests.store.backends import Clock, open_store, postgresql_unavailable

HOSTILE = "x'; DROP TABLE nodes; --"

QUERIES = [
    *REFERENCE_EXAMPLES,
    "nodes {}", "facts {}", "fact_contents {}", "fact_paths {}", "fact_names {}",
    "inventory {}", "factsets {}", "resources {}", "edges {}", "catalogs {}", "reports {}",
    "events {}", "environments {}",
    'facts[name, avg(value), sum(value), min(value), max(value), count()] '
    '{ value > 0 group by name }',
    'inventory[facts.os.family, count()] { group by facts.os.family }',
    'inventory[facts.processors.models[0], facts.networking] { facts.memory.system.total_bytes'
    ' > 5000000000 order by certname desc }',
    'resources[certname, parameters.ensure, parameters.uid] { parameters.uid > 0 or '
    'parameters.enable = true order by parameters.ensure, certname }',
    'events[old_value, new_value, count()] { new_value ~ "^0" group by old_value, new_value }',
    'fact_contents[value, count()] { path ~> ["os", ".*"] group by value order by count desc }',
    'reports[to_string(start_time, "IYYY-IW FMDay HH12 am"), count()] '
    '{ group by to_string(start_time, "IYYY-IW FMDay HH12 am") }',
    'nodes[certname] { node_state = "any" order by certname desc offset 3 limit 4 }',
    'events[certname, resource_title, containment_path] { latest_report? = true and '
    'property is null }',
    'facts[certname, value] { name = "load_average" order by value desc, certname }',
    'inventory[facts.os.family, count()] { group by facts.os.family order by facts.os.family '
    'desc }',
    'facts[value, count()] { name = "puppetversion" or name = "uptime_seconds" group by value '
    'order by value }',
    'facts[name, value] { name = "processors" order by value, name }',
]


def test_literals_are_bound_never_interpolated() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiler = Compiler(TABLES, dialect.name, store_entities())
        compiled = compiler.compile(
            f'nodes {{ certname = "{HOSTILE}" or certname ~ "{HOSTILE}" or '
            f'facts {{ value = "{HOSTILE}" }} or certname in ["{HOSTILE}"] }}')
        sql = compiled.statement.compile(dialect=dialect)
        assert "DROP TABLE" not in str(sql)
        assert HOSTILE in sql.construct_params().values()
        formatted = compiler.compile(f'reports[to_string(receive_time, "\\"{HOSTILE[:2]}\\"")]'
                                     "{}").statement.compile(dialect=dialect)
        assert f'"{HOSTILE[:2]}"' in formatted.construct_params().values()


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = postgresql_unavailable()
    if reason:
        pytest.skip(reason)
    stores: dict[str, Any] = {}
    lite_clock, pg_clock = Clock(), Clock()
    with open_store("sqlite", tmp_path_factory.mktemp("agree"), lite_clock) as lite, \
            open_store("postgresql", tmp_path_factory.mktemp("agree-pg"), pg_clock) as pg:
        fleets: list[Fleet] = [seed(lite, lite_clock), seed(pg, pg_clock)]
        stores.update(sqlite=lite, postgresql=pg, fleets=fleets)
        yield stores


@pytest.mark.parametrize("query", QUERIES)
def test_backends_agree(both: dict[str, Any], query: str) -> None:
    lite = both["sqlite"].query(query)
    pg = both["postgresql"].query(query)
    assert lite == pg
    assert len(lite) > 0 or query.startswith("nodes[certname] { node_state")


def test_hostile_values_are_just_values(both: dict[str, Any]) -> None:
    for store in (both["sqlite"], both["postgresql"]):
        assert store.query(["from", "nodes", ["=", "certname", HOSTILE]]) == []
        assert len(names(store.query("nodes[certname] {}"))) == 36


def test_postgresql_regex_errors_are_query_errors(both: dict[str, Any]) -> None:
    from steward.query import QueryError

    # Python's named groups are not PostgreSQL syntax: the server's complaint comes back as
    # a QueryError (docs/query.md: keep to the common subset of the two regex dialects).
    with pytest.raises(QueryError, match="PostgreSQL rejected a regular expression"):
        both["postgresql"].query('nodes { certname ~ "(?P<n>web)" }')
    assert both["sqlite"].query('nodes[certname] { certname ~ "(?P<n>web)" }') != []

