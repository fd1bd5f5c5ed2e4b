"""The change pipeline's records as PQL entities: ``changes`` and ``deployments``.

The application registers the entities always and their tables once the pipeline runs
(a git repository of desired state): without it, naming them is a query error saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Table

from steward.pipeline.changes.model import changes
from steward.pipeline.deploy.rollout import deployments
from steward.query.entities import (
    Entity,
    EntityRegistry,
    Scope,
    col,
    requires_table,
    string,
    timestamp,
)

if TYPE_CHECKING:
    from steward.store import Store

CHANGES_TABLE = changes.name
DEPLOYMENTS_TABLE = deployments.name
#: The tables the entities read, by the names they read them under.
QUERY_TABLES: dict[str, Table] = {CHANGES_TABLE: changes, DEPLOYMENTS_TABLE: deployments}


def needs_pipeline(table: str, entity: str) -> Callable[[Scope], ColumnElement[bool]]:
    """The ``where`` of an entity whose table exists only with the change pipeline."""
    return requires_table(table, f"the '{entity}' entity is available only on a Steward "
                                 "server with the change pipeline (a git repository of "
                                 "desired state)")


CHANGES = Entity(
    name="changes",
    base=CHANGES_TABLE,
    fields={f.name: f for f in (
        string("id", CHANGES_TABLE, nullable=False),
        string("title", CHANGES_TABLE, nullable=False),
        string("proposer", CHANGES_TABLE, "proposer_name", nullable=False),
        string("proposer_kind", CHANGES_TABLE, nullable=False),
        string("environment", CHANGES_TABLE, nullable=False),
        string("state", CHANGES_TABLE, nullable=False),
        string("kind", CHANGES_TABLE, nullable=False),
        string("parent", CHANGES_TABLE, "parent_id"),
        string("base", CHANGES_TABLE, nullable=False),
        string("head", CHANGES_TABLE, nullable=False),
        string("impact_digest", CHANGES_TABLE),
        timestamp("created_at", CHANGES_TABLE, nullable=False),
        timestamp("updated_at", CHANGES_TABLE, nullable=False),
    )},
    default_fields=("id", "title", "proposer", "proposer_kind", "environment", "state",
                    "kind", "parent", "base", "head", "impact_digest", "created_at",
                    "updated_at"),
    natural_order=(col(CHANGES_TABLE, "seq"),),
    where=needs_pipeline(CHANGES_TABLE, "changes"),
)
DEPLOYMENTS = Entity(
    name="deployments",
    base=DEPLOYMENTS_TABLE,
    fields={f.name: f for f in (
        string("id", DEPLOYMENTS_TABLE, nullable=False),
        string("change", DEPLOYMENTS_TABLE, "change_id", nullable=False),
        string("environment", DEPLOYMENTS_TABLE, nullable=False),
        string("commit", DEPLOYMENTS_TABLE, nullable=False),
        string("state", DEPLOYMENTS_TABLE, nullable=False),
        string("started_by", DEPLOYMENTS_TABLE, nullable=False),
        timestamp("started_at", DEPLOYMENTS_TABLE, nullable=False),
        timestamp("finished_at", DEPLOYMENTS_TABLE),
        string("detail", DEPLOYMENTS_TABLE),
    )},
    default_fields=("id", "change", "environment", "commit", "state", "started_by",
                    "started_at", "finished_at", "detail"),
    natural_order=(col(DEPLOYMENTS_TABLE, "started_at"), col(DEPLOYMENTS_TABLE, "id")),
    where=needs_pipeline(DEPLOYMENTS_TABLE, "deployments"),
)


def register(registry: EntityRegistry) -> None:
    """Add ``changes`` and ``deployments``; their tables are :data:`QUERY_TABLES`."""
    registry.register(CHANGES)
    registry.register(DEPLOYMENTS)


def install(store: Store, *, tables: bool = True) -> None:
    """Register changes and deployments in ``store``'s PQL and, with ``tables``, let it read
    their tables; without (no pipeline), naming them is an error saying the server lacks them."""
    register(store.entities)
    if tables:
        store.add_query_tables(QUERY_TABLES)
