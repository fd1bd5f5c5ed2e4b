"""Typed reads of the state store for the layers above it (the pipeline's impact analysis,
live prediction and rollouts), so they depend on these answers and not on the tables.

Each function opens its own read transaction on the store's engine; the tables and their
columns stay the store's business (:mod:`steward.store.models`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, and_, func, select

from steward.store.db import read_transaction
from steward.store.models import TABLES

#: Certnames per ``IN (...)`` list: well under every backend's parameter limit.
CERTNAMES_PER_QUERY: Final = 500


@dataclass(frozen=True, slots=True)
class FleetRow:
    """An active node with facts: its environment (its catalog's, else its facts') and what
    its current catalog recorded (``inputs`` as stored, unchecked; None without a catalog)."""

    certname: str
    environment: str
    inputs: Any
    catalog_hash: str | None
    code_id: str | None


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """The fields of a stored run report that say how a run of a commit went."""

    certname: str
    hash: str
    status: str
    exit_code: int | None
    code_id: str | None
    receive_time: datetime


def active_nodes(engine: Engine, environment: str | None = None) -> list[FleetRow]:
    """Nodes neither deactivated nor expired that have facts, in ``environment`` (all when
    None), sorted by certname."""
    nodes, catalogs, factsets = TABLES["nodes"], TABLES["catalogs"], TABLES["factsets"]
    env = func.coalesce(catalogs.c.environment, factsets.c.environment)
    query = (
        select(nodes.c.certname, env, catalogs.c.inputs, catalogs.c.hash, catalogs.c.code_id)
        .join(factsets, factsets.c.certname_id == nodes.c.id)
        .outerjoin(catalogs, catalogs.c.certname_id == nodes.c.id)
        .where(nodes.c.deactivated.is_(None), nodes.c.expired.is_(None))
        .order_by(nodes.c.certname)
    )
    if environment is not None:
        query = query.where(env == environment)
    with read_transaction(engine) as conn:
        rows = conn.execute(query).all()
    return [FleetRow(certname, node_env, inputs, catalog_hash, code_id)
            for certname, node_env, inputs, catalog_hash, code_id in rows]


def facts_of(engine: Engine, certnames: Sequence[str]) -> dict[str, Any]:
    """Certname -> current facts as stored, for those of ``certnames`` that have facts; one
    query, so the caller sizes the batch."""
    nodes, factsets = TABLES["nodes"], TABLES["factsets"]
    query = (
        select(nodes.c.certname, factsets.c.facts)
        .join(factsets, factsets.c.certname_id == nodes.c.id)
        .where(nodes.c.certname.in_(list(certnames)))
    )
    with read_transaction(engine) as conn:
        rows: dict[str, Any] = dict(conn.execute(query).all())
    return rows


def _reports_where(certnames: Sequence[str], commit: str, noop: bool,
                   since: datetime) -> Any:
    reports = TABLES["reports"]
    return and_(reports.c.certname.in_(list(certnames)), reports.c.code_id == commit,
                reports.c.noop.is_(noop), reports.c.receive_time >= since)


def _summary_columns() -> tuple[Any, ...]:
    reports = TABLES["reports"]
    return (reports.c.certname, reports.c.hash, reports.c.status, reports.c.exit_code,
            reports.c.code_id, reports.c.receive_time)


def reports_of_commit(engine: Engine, certnames: Sequence[str], commit: str, *, noop: bool,
                      since: datetime) -> list[ReportSummary]:
    """Reports of runs of ``commit`` (noop or not) received at or after ``since`` from
    ``certnames``, oldest first (ties in arrival order), :data:`CERTNAMES_PER_QUERY` nodes
    per query."""
    reports = TABLES["reports"]
    found: list[ReportSummary] = []
    with read_transaction(engine) as conn:
        for start in range(0, len(certnames), CERTNAMES_PER_QUERY):
            chunk = certnames[start:start + CERTNAMES_PER_QUERY]
            rows = conn.execute(
                select(*_summary_columns())
                .where(_reports_where(chunk, commit, noop, since))
                .order_by(reports.c.receive_time, reports.c.id)
            ).all()
            found.extend(ReportSummary(*row) for row in rows)
    return found


def first_report_of_commit(engine: Engine, certname: str, commit: str, *, noop: bool,
                           since: datetime) -> ReportSummary | None:
    """The earliest report of a run of ``commit`` by ``certname`` received since ``since``."""
    reports = TABLES["reports"]
    with read_transaction(engine) as conn:
        row = conn.execute(
            select(*_summary_columns())
            .where(_reports_where([certname], commit, noop, since))
            .order_by(reports.c.receive_time).limit(1)
        ).one_or_none()
    return ReportSummary(*row) if row is not None else None


def other_noop_commit(engine: Engine, certname: str, commit: str,
                      since: datetime) -> str | None:
    """The commit of some noop run ``certname`` reported since ``since`` that is not
    ``commit`` (an agent answering a live prediction with the wrong code), or None."""
    reports = TABLES["reports"]
    with read_transaction(engine) as conn:
        row = conn.execute(
            select(reports.c.code_id).where(and_(
                reports.c.certname == certname, reports.c.noop.is_(True),
                reports.c.receive_time >= since, reports.c.code_id != commit))
            .limit(1)).first()
    return str(row.code_id) if row is not None else None


def report_resources(engine: Engine, report_hash: str) -> list[dict[str, Any]]:
    """A report's per-resource statuses as the node sent them (empty if none are stored)."""
    table = TABLES["report_resources"]
    with read_transaction(engine) as conn:
        blob = conn.execute(select(table.c.resources)
                            .where(table.c.report == report_hash)).scalar_one_or_none()
    if blob is None:
        return []
    resources: list[dict[str, Any]] = json.loads(zlib.decompress(bytes(blob)).decode("utf-8"))
    return resources
