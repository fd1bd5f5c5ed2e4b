"""The change pipeline's REST documents: what a caller sends to propose, review, deploy."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


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
