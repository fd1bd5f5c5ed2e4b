"""The change pipeline's REST documents: what a caller sends to propose, review, deploy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from steward.server.models import COMMON_ERRORS, JsonObject, errors


class ProposeBody(BaseModel):
    environment: str = Field(description="The target environment (a branch)")
    title: str = Field(min_length=1, max_length=255)
    message: str = ""
    base: str | None = Field(default=None, description="Base commit (default: the tip)")
    edits: dict[str, str | None] | None = Field(
        default=None, description="Path -> new content; null deletes the file")
    patch: str | None = Field(default=None, description="A unified diff (git format)")
    branch: str | None = Field(default=None, description="Propose a pushed branch instead")


class AnalyseBody(BaseModel):
    live: bool = Field(default=False, description="Also ask the affected nodes for a noop run "
                       "of the proposed catalog (live prediction)")
    timeout: float = Field(default=120.0, gt=0, le=900,
                           description="Seconds to wait for the nodes' reports (live only)")


def _head() -> Any:
    return Field(min_length=40, max_length=64, pattern=r"^[0-9a-f]+$",
                 description="The head commit the caller reviewed (the change's 'head')")


def _digest() -> Any:
    return Field(min_length=1, max_length=80, description="The impact digest the caller "
                 "reviewed (the change's 'impact_digest')")


class Reviewed(BaseModel):
    """What the caller read: a verdict, an override or a deploy binds to exactly this.

    Both fields are required; a mismatch with the change is refused (409) naming the
    change's current head and digest.
    """

    head: str = _head()
    digest: str = _digest()


class ReviewBody(Reviewed):
    comment: str | None = Field(default=None, max_length=2000)


class RejectBody(BaseModel):
    reason: str = Field(min_length=1)
    head: str = _head()
    digest: str | None = Field(max_length=80, description="The impact digest the caller "
                               "reviewed; null for a change that has none yet")


class OverrideBody(Reviewed):
    policy: str
    reason: str = Field(min_length=1)


class ValidateBody(BaseModel):
    verdict: Literal["pass", "fail"]
    evidence: str = ""


class TranscriptBody(BaseModel):
    agent: str = Field(min_length=1, max_length=64, description="The agent's role, e.g. planner")
    kind: str = Field(description="prompt, tool_call, tool_result, message or diagnosis")
    content: dict[str, Any] = Field(default_factory=dict)


class DeployBody(Reviewed):
    """``head``/``digest``: the ones the change was approved at (what the deployer read)."""

    strategy: dict[str, Any] | None = None


class PromoteBody(BaseModel):
    environment: str


# -- answers ---------------------------------------------------------------------------------


class Who(BaseModel):
    kind: str
    name: str


class ImpactSummary(BaseModel):
    digest: str
    summary: JsonObject
    selection: JsonValue


class ChangeRecord(BaseModel):
    """A change as stored (format 1): what listings and traces show."""

    base: str
    branch: str
    created_at: str | None
    environment: str
    format: int
    head: str
    id: str
    impact_digest: str | None
    kind: str
    message: str
    next_states: list[str]
    parent: str | None
    proposer: Who
    state: str
    title: str
    updated_at: str | None


class ChangeDocument(ChangeRecord):
    """A change with its gates, and its impact and policy once analysed."""

    gates: JsonObject
    impact: ImpactSummary | None = Field(default=None, description="Once analysed")
    policy: JsonObject | None = Field(default=None, description="Once analysed")


class HistoryEntry(BaseModel):
    action: str
    actor: str
    at: str | None
    change: str
    detail: JsonObject | None
    from_state: str | None
    to_state: str


class DeploymentDocument(BaseModel):
    """A deployment (format 1): its strategy, progress counts and per-node outcomes."""

    format: int
    id: str
    change: str
    environment: str
    commit: str
    state: str
    strategy: JsonObject
    started_by: str
    started_at: str | None
    finished_at: str | None
    detail: str | None
    counts: dict[str, int]
    nodes: list[JsonObject]


class DeploymentDetail(DeploymentDocument):
    change_state: str


class ChangeDetail(ChangeDocument):
    history: list[HistoryEntry]
    deployments: list[DeploymentDocument]


class ImpactReport(BaseModel):
    """The impact report (``schemas/impact-report.schema.json`` is its full schema)."""

    model_config = ConfigDict(extra="allow")

    format: int
    change: JsonObject
    selection: JsonValue
    summary: JsonObject
    nodes: list[JsonObject]
    digest: str


class Validation(BaseModel):
    change: str
    digest: str
    actor: str
    verdict: str
    evidence: str
    at: str | None


class TranscriptStep(BaseModel):
    """The step as the audit trail holds it (sensitive values redacted)."""

    agent: str
    identity: str | None
    kind: str
    content: JsonObject


class Trace(BaseModel):
    """From proposal to the per-node reports that enforced it (format 1)."""

    format: int
    change: ChangeRecord
    history: list[HistoryEntry]
    audit: list[JsonObject]
    deployments: list[DeploymentDocument]
    reports: list[JsonObject]
    related_changes: list[str]


class StaleReview(BaseModel):
    """409 when what the caller reviewed is not the change's current head and digest."""

    error: str
    head: str | None = None
    digest: str | None = None


#: A change's routes can also answer 409 with what it is now, and 503 without the pipeline.
CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS, **errors(503),
    409: {"model": StaleReview, "description": "The change is not in a state for this, or "
          "it moved on from what the caller reviewed (its current head and digest)"},
}
