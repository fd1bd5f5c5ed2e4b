"""Garbage collection: expire silent nodes, purge old inactive ones, drop old reports.

PuppetDB's three knobs, with its meanings: ``node_ttl`` marks a node *expired* when
nothing (facts, catalog, report) was produced for it within the TTL (it stays queryable
with ``node_state = "any"`` and comes back with its next command); ``node_purge_ttl``
deletes nodes deactivated or expired longer ago than the TTL, with everything they own;
``report_ttl`` deletes reports (and their events) produced longer ago than the TTL.
Each step is its own transaction, so a large purge does not hold up ingestion for long.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from steward.store.db import write_transaction
from steward.store.rows import fact_rows, utc

#: Tables holding a node's latest state, all keyed by ``certname_id``.
NODE_TABLES = ("fact_contents", "facts", "factsets", "edges", "resources", "catalogs")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _never(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A nullable timestamp, with "never" sorting before any cutoff."""
    return func.coalesce(column, _EPOCH)


def gc(engine: Engine, tables: Mapping[str, Table], now: datetime, report_ttl: timedelta,
       node_ttl: timedelta | None, node_purge_ttl: timedelta | None) -> dict[str, int]:
    now = utc(now, "gc: now")
    counts = {"expired_nodes": 0, "purged_nodes": 0, "reports": 0, "events": 0,
              "fact_paths": 0}
    nodes = tables["nodes"]
    if node_ttl is not None:
        cutoff = now - node_ttl
        with write_transaction(engine) as conn:
            result = conn.execute(
                update(nodes)
                .where(
                    nodes.c.deactivated.is_(None),
                    nodes.c.expired.is_(None),
                    or_(nodes.c.facts_timestamp.is_not(None),
                        nodes.c.catalog_timestamp.is_not(None),
                        nodes.c.report_timestamp.is_not(None)),
                    _never(nodes.c.facts_timestamp) < cutoff,
                    _never(nodes.c.catalog_timestamp) < cutoff,
                    _never(nodes.c.report_timestamp) < cutoff,
                )
                .values(expired=now)
            )
            counts["expired_nodes"] = result.rowcount
    if node_purge_ttl is not None:
        cutoff = now - node_purge_ttl
        with write_transaction(engine) as conn:
            doomed = select(nodes.c.id, nodes.c.certname).where(or_(
                nodes.c.deactivated < cutoff, nodes.c.expired < cutoff))
            victims = conn.execute(doomed).all()
            if victims:
                ids = [row.id for row in victims]
                names = [row.certname for row in victims]
                counts["purged_nodes"] = len(victims)
                for chunk_ids, chunk_names in _chunked(ids, names):
                    _purge_nodes(conn, tables, chunk_ids, chunk_names, counts)
    with write_transaction(engine) as conn:
        reports = tables["reports"]
        old = select(reports.c.hash).where(reports.c.producer_timestamp < now - report_ttl)
        _delete_reports(conn, tables, old, counts)
    with write_transaction(engine) as conn:
        counts["fact_paths"] = _prune_fact_paths(conn, tables)
    return counts


def _chunked(ids: list[int], names: list[str], size: int = 500
             ) -> list[tuple[list[int], list[str]]]:
    return [(ids[i:i + size], names[i:i + size]) for i in range(0, len(ids), size)]


def _purge_nodes(conn: Connection, tables: Mapping[str, Table], ids: list[int],
                 names: list[str], counts: dict[str, int]) -> None:
    for name in NODE_TABLES:
        table = tables[name]
        conn.execute(delete(table).where(table.c.certname_id.in_(ids)))
    reports = tables["reports"]
    _delete_reports(conn, tables, select(reports.c.hash).where(reports.c.certname.in_(names)),
                    counts)
    nodes = tables["nodes"]
    conn.execute(delete(nodes).where(nodes.c.id.in_(ids)))


def _delete_reports(conn: Connection, tables: Mapping[str, Table], hashes: Any,
                    counts: dict[str, int]) -> None:
    """Delete the reports whose hashes ``hashes`` (a subquery) selects, children first."""
    reports, events, blobs = tables["reports"], tables["events"], tables["report_resources"]
    doomed = [row[0] for row in conn.execute(hashes)]
    for start in range(0, len(doomed), 500):
        chunk = doomed[start:start + 500]
        counts["events"] += conn.execute(delete(events).where(events.c.report.in_(chunk))
                                         ).rowcount
        conn.execute(delete(blobs).where(blobs.c.report.in_(chunk)))
        counts["reports"] += conn.execute(delete(reports).where(reports.c.hash.in_(chunk))
                                          ).rowcount


def _prune_fact_paths(conn: Connection, tables: Mapping[str, Table]) -> int:
    """Drop (path, type) pairs that no current factset has any more (recomputed from the
    factset documents, so containers and empty maps are judged exactly as ingestion
    records them)."""
    paths, factsets = tables["fact_paths"], tables["factsets"]
    live: set[tuple[str, str]] = set()
    for (document,) in conn.execute(select(factsets.c.facts)).yield_per(500):
        live.update((p["path_key"], p["type"]) for p in fact_rows(0, document).paths)
    stale = [(key, kind) for key, kind in conn.execute(select(paths.c.path_key, paths.c.type))
             if (key, kind) not in live]
    for key, kind in stale:
        conn.execute(delete(paths).where(and_(paths.c.path_key == key, paths.c.type == kind)))
    return len(stale)
