"""The agents' identities (one per role, made through the REST API) and the transcript sink."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from steward.agentflow.flow import (
    ROLES,
    AgentFlowError,
    AgentIdentity,
    Endpoint,
    Sink,
    Step,
    Tokens,
)

#: Where ``steward agents run`` keeps the agents' tokens (mode 0600), under the data directory.
TOKENS_FILE = Path("agentflow") / "tokens.json"


def load_tokens(path: Path) -> Tokens:
    """Tokens from a JSON file ``{"planner": {"name": …, "token": …}, …}``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return Tokens(**{role: AgentIdentity(str(document[role]["name"]),
                                             str(document[role]["token"])) for role in ROLES})
    except OSError as exc:
        raise AgentFlowError(f"cannot read the agents' tokens {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentFlowError(f"{path}: expected {{role: {{name, token}}}} for each of "
                             f"{', '.join(ROLES)} ({type(exc).__name__}: {exc})") from None


def create_identities(endpoint: Endpoint, admin_token: str, path: Path,
                      prefix: str = "agentflow") -> Tokens:
    """Create ``PREFIX-ROLE`` agent identities as an admin and save their tokens to ``path``.

    Reuses ``path`` when it exists: a token is shown once, so it is kept where the next run
    (``--resume``) finds it, readable by the owner only.
    """
    if path.exists():
        return load_tokens(path)
    verify = ssl.create_default_context(cafile=endpoint.ca_cert)
    document: dict[str, dict[str, str]] = {}
    with httpx.Client(base_url=endpoint.server, verify=verify, timeout=60,
                      headers={"Authorization": f"Bearer {admin_token}"}) as client:
        for role in ROLES:
            name = f"{prefix}-{role}"
            try:
                response = client.post("/api/v1/identities", json={
                    "name": name, "kind": "agent", "roles": [role]})
            except httpx.HTTPError as exc:
                raise AgentFlowError(f"cannot reach {endpoint.server}: {exc}") from None
            if not response.is_success:
                raise AgentFlowError(
                    f"creating agent identity {name!r} failed ({response.status_code}: "
                    f"{_message(response)}); pass its token in a tokens file instead")
            document[role] = {"name": name, "token": str(response.json()["token"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True)
    return load_tokens(path)


def _message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)
    return str(body)


def audit_sink(audit: Any) -> Sink:
    """A sink writing each step as an ``agent.transcript`` audit entry on ``change:ID``.

    ``audit`` is the server's audit log (``Services.audit``), opened from the data
    directory on the server host; each entry's actor is the agent that took the step.
    """
    def record(change_id: str, step: Step) -> None:
        audit.record(actor=f"agent:{step.identity}", actor_kind="agent",
                     action="agent.transcript", target=f"change:{change_id}",
                     outcome="succeeded", parameters=step.to_json())
    return record
