"""The REST documents of human and agent identities and their role bindings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from steward.server.models import MAX_TOKEN_SECONDS, JsonObject, Token


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


# -- answers ---------------------------------------------------------------------------------


class IdentityName(BaseModel):
    kind: str
    name: str


class BindingDocument(BaseModel):
    """One role granted to an identity in one environment (``*``: every one)."""

    environment: str
    granted_at: str | None
    granted_by: str | None
    identity: IdentityName
    role: str


class IdentityCreated(Token):
    token: str = Field(description="The identity's token: shown only in this answer")
    roles: list[BindingDocument]


class RevokedRole(BaseModel):
    identity: str
    role: str
    environment: str


class RoleRevoked(BaseModel):
    revoked: RevokedRole


class AuditVerification(BaseModel):
    """The audit log's hash chain and signed checkpoints, checked."""

    ok: bool
    entries_checked: int
    checkpoints_checked: int
    last_entry: int | None
    first_bad_entry: int | None
    problems: list[JsonObject]
    witness: str | None
    witnessed_checkpoint: JsonObject | None
    unwitnessed_entries: int
