"""The REST documents of the Infra Assistant: a question, and its answer or failure."""

from __future__ import annotations

from pydantic import BaseModel, Field

from steward.assistant.core import DEFAULT_LIMIT, MAX_LIMIT
from steward.server.models import JsonObject


class AskBody(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT,
                       description="At most this many rows")


class Attempt(BaseModel):
    query: str | None
    error: str | None
    stage: str | None


class AskAnswer(BaseModel):
    question: str
    query: str
    rows: list[JsonObject]
    row_count: int
    truncated: bool
    limit: int
    summary: str
    attempts: list[Attempt]


class AskFailure(BaseModel):
    """422 (no valid query came of the question) or 502 (the model failed)."""

    error: str
    attempts: list[Attempt] = Field(default_factory=list,
                                    description="Absent when the request itself is invalid")
