"""What was found out about a change: impact reports, policy verdicts, overrides, validations.

Every analysis is kept (not only the latest), keyed by the change and the impact digest, so
an approval, an override or a validator's verdict can always be shown next to exactly the
report it was given for. Overrides and validations bind to the digest like approvals do: a
new head gives a new report, a new digest, and voids them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, Column, Engine, Index, Integer, String, Table, Text, insert, select

from steward.clock import SYSTEM_CLOCK, Clock, iso
from steward.errors import StewardError
from steward.pipeline.impact.report import ImpactReport
from steward.pipeline.tables import metadata
from steward.store.db import UTCDateTime

Verdict = Literal["pass", "fail"]

analyses = Table(
    "steward_analyses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", String(32), nullable=False),
    Column("head", String(64), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("summary", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("policy", JSON, nullable=False),
    Index("ix_steward_analyses_change", "change_id", "id"),
)

overrides = Table(
    "steward_policy_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", String(32), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("policy", String(255), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_steward_policy_overrides_change", "change_id"),
)

validations = Table(
    "steward_validations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("change_id", String(32), nullable=False),
    Column("digest", String(80), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_steward_validations_change", "change_id"),
)


class AnalysisMissing(StewardError):
    """The change has not been analysed (yet) at its current head."""


@dataclass(frozen=True, slots=True)
class Analysis:
    change_id: str
    head: str
    digest: str
    at: datetime
    actor: str
    report: ImpactReport
    policy: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        """The report's summary, plus the policies' ``human_approval`` reasons: what the
        approval rules judge the change by (docs/policy.md, ``require_human``)."""
        summary: dict[str, Any] = self.report.summary.to_json()
        reasons = self.policy.get("human_approval") if isinstance(self.policy, dict) else None
        if reasons:
            summary["human_approval"] = [str(reason) for reason in reasons]
        return summary


class Analyses:
    """Stores and reads analyses, overrides and validations of changes."""

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.clock = clock

    def record(self, change_id: str, head: str, actor: str, report: ImpactReport,
               policy: dict[str, Any]) -> Analysis:
        now = self.clock.now()
        digest = report.digest
        with self.engine.begin() as conn:
            conn.execute(insert(analyses).values(
                change_id=change_id, head=head, digest=digest, at=now, actor=actor,
                summary=report.summary.to_json(), report=report.to_json(), policy=policy))
        return Analysis(change_id, head, digest, now, actor, report, policy)

    def latest(self, change_id: str, digest: str | None = None) -> Analysis:
        query = select(analyses).where(analyses.c.change_id == change_id)
        if digest is not None:
            query = query.where(analyses.c.digest == digest)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(analyses.c.id.desc()).limit(1)).one_or_none()
        if row is None:
            raise AnalysisMissing(
                f"{change_id} has no impact analysis"
                + (f" with digest {digest}" if digest else "")
                + f": run 'steward change impact {change_id}'")
        return Analysis(row.change_id, row.head, row.digest, row.at, row.actor,
                        ImpactReport.from_json(row.report), row.policy)

    def override(self, change_id: str, digest: str, policy: str, actor: str,
                 reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(overrides).values(
                change_id=change_id, digest=digest, policy=policy, actor=actor,
                reason=reason, at=self.clock.now()))

    def overrides(self, change_id: str, digest: str) -> dict[str, dict[str, Any]]:
        """Overrides valid for this digest, by policy name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(overrides).where(overrides.c.change_id == change_id,
                                        overrides.c.digest == digest).order_by(overrides.c.id)
            ).all()
        return {row.policy: {"policy": row.policy, "actor": row.actor, "reason": row.reason,
                             "at": iso(row.at)} for row in rows}

    def validate(self, change_id: str, digest: str, actor: str, verdict: Verdict,
                 evidence: str) -> dict[str, Any]:
        now = self.clock.now()
        with self.engine.begin() as conn:
            conn.execute(insert(validations).values(
                change_id=change_id, digest=digest, actor=actor, verdict=verdict,
                evidence=evidence, at=now))
        return {"change": change_id, "digest": digest, "actor": actor, "verdict": verdict,
                "evidence": evidence, "at": iso(now)}

    def validations(self, change_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(validations).where(validations.c.change_id == change_id)
                .order_by(validations.c.id)
            ).all()
        return [{"change": row.change_id, "digest": row.digest, "actor": row.actor,
                 "verdict": row.verdict, "evidence": row.evidence, "at": iso(row.at)}
                for row in rows]
