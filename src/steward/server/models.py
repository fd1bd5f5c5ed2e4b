"""The server's REST documents: request bodies, and the answers its routes describe in the
OpenAPI schema (what tests/security/test_schemathesis.py checks every answer against)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

#: The longest a token may be minted for: ten years (a date past year 9999 is no date).
MAX_TOKEN_SECONDS = 10 * 366 * 24 * 3600


# -- request bodies --------------------------------------------------------------------------


class EnrollRequest(BaseModel):
    certname: str = Field(description="The node's name; its credential is bound to it")
    facts: dict[str, Any] | None = Field(default=None, description="For the operator to check")


class FactsUpload(BaseModel):
    values: dict[str, Any] = Field(description="The node's facts (as 'steward facts' prints)")
    environment: str | None = None
    producer_timestamp: datetime | None = None


class TokenCreate(BaseModel):
    kind: Literal["join", "operator"]
    name: str = Field(min_length=1, max_length=255)
    expires_in: float | None = Field(
        default=None, gt=0, le=MAX_TOKEN_SECONDS,
        description="Seconds (at most ten years); join tokens default to 24 hours"
    )
    max_uses: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                 description="Join tokens only")


class SshNode(BaseModel):
    certname: str
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    key_file: str | None = Field(default=None, description="Private key on the server")
    sudo: bool = False
    python: str = "python3"
    known_hosts: str | None = Field(
        default=None, description="An OpenSSH known_hosts file (on the server) to trust"
    )
    trust_on_first_use: bool = Field(
        default=False, description="Record the host key on first contact instead of refusing"
    )
    environment: str | None = None


class RunRequestBody(BaseModel):
    noop: bool = False
