"""The entity registry: owners register, lookups name what is known, relations in order."""

from __future__ import annotations

import pytest

from steward.access import audit_entity
from steward.pipeline import entities as pipeline_entities
from steward.query import EntityRegistry, QueryError
from steward.query.entities import Entity, col, string
from steward.store.entities import store_entities
from steward.tasks import entities as task_entities


def _entity(name: str, *fields: str) -> Entity:
    return Entity(name=name, base=name, fields={f: string(f, name) for f in fields},
                  default_fields=fields, natural_order=(col(name, fields[0]),))


def test_lookup_accepts_puppetdb_spellings_and_names_the_known_entities() -> None:
    registry = store_entities()
    assert registry.entity("fact-contents") is registry.entity("fact_contents")
    with pytest.raises(QueryError, match="unknown entity 'audit'; valid entities: catalogs, "
                                         "edges, environments, events, fact_contents"):
        registry.entity("audit")
    with pytest.raises(QueryError, match="unknown entity 1"):
        registry.entity(1)


def test_owners_add_their_entities_and_listing_is_sorted() -> None:
    registry = store_entities()
    for register in (audit_entity.register, pipeline_entities.register,
                     task_entities.register):
        register(registry)
        register(registry)  # the same objects again: a no-op (an application restarted)
    names = registry.names()
    assert names == sorted(names) == list(registry)
    assert {"audit", "changes", "deployments", "jobs", "job_results", "nodes"} <= set(names)
    assert [name for name, _ in registry.items()] == names
    assert len(registry) == len(names) == 18


def test_another_entity_under_a_taken_name_is_refused() -> None:
    registry = EntityRegistry()
    registry.register(_entity("things", "name"))
    with pytest.raises(ValueError, match="'things' is already registered"):
        registry.register(_entity("things", "name"))


def test_relations_explicit_then_links_then_shared_fields() -> None:
    registry = EntityRegistry()
    hosts, runs = _entity("hosts", "host", "site"), _entity("runs", "host", "site", "run")
    sites = _entity("sites", "name")
    for entity in (hosts, runs, sites):
        registry.register(entity)
    registry.share("host")
    registry.link("sites", "name", "site")
    registry.relate("runs", "hosts", (("host", "host"), ("site", "site")))
    assert registry.relation(runs, hosts) == (("host", "host"), ("site", "site"))
    assert registry.relation(hosts, sites) == (("site", "name"),)
    assert registry.relation(sites, runs) == (("name", "site"),)
    assert registry.relation(hosts, runs) == (("host", "host"),)
    with pytest.raises(QueryError, match="'sites' has no implicit relationship with 'sites'"):
        registry.relation(sites, sites)
