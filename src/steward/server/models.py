"""The server's REST documents: request bodies, and the answers its routes describe in the
OpenAPI schema (what tests/security/test_schemathesis.py checks every answer against)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue

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


# -- errors ----------------------------------------------------------------------------------


class Error(BaseModel):
    """Every error Steward answers: what went wrong, redacted (``public_message``)."""

    error: str


class Refusal(Error):
    """A 403: a refusal by permission names the permission and environment as fields too
    (a refusal by who the caller is, e.g. another node's credential, has ``error`` only)."""

    permission: str | None = None
    environment: str | None = None


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route or router: each status with the error it answers."""
    return {status: {"model": Refusal if status == 403 else Error,
                     "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


ERROR_DESCRIPTIONS = {
    400: "The request cannot be carried out as sent",
    401: "No token, or an unknown, expired or revoked one",
    403: "The caller lacks the permission (or is not the node) the route needs",
    404: "What the request names does not exist",
    409: "The request conflicts with the current state",
    413: "The request body is too large",
    422: "The request does not match its schema, or what it names cannot be compiled",
    502: "The language model failed",
    503: "The change pipeline is not available (a plain-directory repository)",
}

#: The errors any authenticated route can answer.
COMMON_ERRORS = errors(400, 401, 403, 404, 409, 413, 422)

JsonObject = dict[str, JsonValue]


# -- answers ---------------------------------------------------------------------------------


class Whoami(BaseModel):
    kind: str
    name: str | None
    certname: str | None
    token_id: str | None


class CatalogCache(BaseModel):
    hits: int
    misses: int


class Status(BaseModel):
    version: str
    repo: str
    catalog_cache: CatalogCache
    nodes: int


class EnrollApproved(BaseModel):
    """200: the node's credential (shown once); ``request_id`` when collected by polling."""

    status: Literal["approved"]
    certname: str
    token: str
    request_id: str | None = None


class EnrollPending(BaseModel):
    """202: a pending request, and the poll token to collect the credential with."""

    status: Literal["pending"]
    certname: str
    request_id: str
    poll_token: str
    message: str | None


class EnrollmentState(BaseModel):
    """A polled request that is not approved (yet): pending, rejected or revoked."""

    status: str
    certname: str
    request_id: str


class EnrollmentRecord(BaseModel):
    id: str
    status: str
    requested_at: str | None
    decided_at: str | None
    decided_by: str | None
    remote: str | None


class Node(BaseModel):
    certname: str
    status: str
    transport: str
    environment: str | None
    requested_at: str | None
    approved_at: str | None
    approved_by: str | None
    revoked_at: str | None
    revoked_by: str | None
    last_seen_at: str | None
    last_run_at: str | None
    last_catalog_hash: str | None
    last_environment: str | None
    ssh: JsonValue


class NodeDetail(Node):
    enrollment: EnrollmentRecord | None


class NodeListed(Node):
    pending_request: str | None


class NodeApproved(BaseModel):
    certname: str
    status: Literal["approved"]
    changed: bool
    request_id: str | None = None


class NodeRevoked(BaseModel):
    certname: str
    status: Literal["revoked"]
    tokens_revoked: int


class RunRequested(BaseModel):
    certname: str
    request_id: int
    noop: bool


class FactsStored(BaseModel):
    certname: str
    environment: str


class LiveGrant(BaseModel):
    commit: str
    change: str | None
    environment: str | None
    withheld_sensitive: list[str]


class CatalogAnswer(BaseModel):
    """The compiled catalog (``schemas/catalog.schema.json``) and its sensitive values."""

    catalog: JsonObject
    sensitive_values: JsonObject
    input_hash: str
    cached: bool
    live: LiveGrant | None = Field(default=None, description="Live prediction only")


class ReportStored(BaseModel):
    certname: str
    stored: str = Field(description="The report's hash")
    transaction_uuid: JsonValue


class RunWait(BaseModel):
    """``run``: start a run now (``noop``...); or ``task``: a task job's part to run."""

    run: bool
    task: JsonObject | None = None
    noop: bool | None = None
    requested_by: str | None = None
    request_ids: list[int] | None = None
    commit: str | None = None
    change: str | None = None


class JobResultRecorded(BaseModel):
    job: str
    certname: str
    state: str


class Token(BaseModel):
    """A token's metadata (never the token or its hash)."""

    id: str
    kind: str
    name: str
    certname: str | None
    created_at: str | None
    created_by: str | None
    expires_at: str | None
    revoked_at: str | None
    max_uses: int | None
    uses: int
    last_used_at: str | None


class TokenCreated(Token):
    token: str = Field(description="The token itself: shown only in this answer")


class AuditEntry(BaseModel):
    id: int
    at: str
    actor: str | None
    actor_kind: str | None
    action: str
    target: str | None
    parameters: JsonValue
    outcome: str
    reason: str | None
    remote: str | None
    request_id: str | None
    prev_hash: str
    entry_hash: str
