"""The REST documents of human and agent identities and their role bindings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from steward.server.models import MAX_TOKEN_SECONDS


class IdentityCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    kind: Literal["human", "agent"]
    roles: list[str] = Field(default_factory=list,
                             description="ROLE or ROLE@ENVIRONMENT (default every environment)")
    expires_in: float | None = Field(default=None, gt=0, le=MAX_TOKEN_SECONDS,
                                     description="Seconds (at most ten years)")


class GrantBody(BaseModel):
    role: str
    environment: str = "*"
