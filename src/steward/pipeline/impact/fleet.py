"""The fleet as impact analysis sees it, read through the state store's read API.

Two reads, so the cost follows the change: every node's recorded catalog ``inputs`` (the
index selection runs on, one row per node), then the facts of the selected nodes only, in
batches, while the first batches are already compiling.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from steward.pipeline.impact.model import FleetNode, ImpactError
from steward.store.reading import active_nodes, facts_of

#: Facts are fetched this many nodes at a time (well under every backend's parameter limit).
FACTS_BATCH = 500


class StoreFleet:
    """Active nodes of the state store (deactivated and expired ones are not the fleet)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def nodes(self, environment: str | None = None) -> list[FleetNode]:
        """Nodes with facts, in ``environment`` (all when None), sorted by certname.

        A node's environment is its current catalog's, else its facts'. A node without
        facts cannot be compiled and is left out.
        """
        try:
            rows = active_nodes(self.engine, environment)
        except SQLAlchemyError as exc:
            raise ImpactError(f"cannot read the fleet from the state store: {_reason(exc)}") \
                from None
        return [FleetNode(row.certname, row.environment, _inputs(row.inputs), row.catalog_hash,
                          row.code_id) for row in rows]

    def facts(self, certnames: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(certname, facts)`` for each of ``certnames`` that has facts, batch by batch."""
        for start in range(0, len(certnames), FACTS_BATCH):
            batch = list(certnames[start : start + FACTS_BATCH])
            try:
                rows = facts_of(self.engine, batch)
            except SQLAlchemyError as exc:
                raise ImpactError(f"cannot read facts from the state store: {_reason(exc)}") \
                    from None
            for certname in batch:
                facts = rows.get(certname)
                if isinstance(facts, dict):
                    yield certname, facts


def _inputs(value: Any) -> Mapping[str, Any] | None:
    """The recorded inputs if they have the shape selection needs, else None (recompile)."""
    if not isinstance(value, dict):
        return None
    files, paths, keys = value.get("files"), value.get("data_paths"), value.get("data_keys")
    if not isinstance(files, dict) or not isinstance(paths, list) or not isinstance(keys, list):
        return None
    return value


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
