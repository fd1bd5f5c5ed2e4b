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


class RestSink:
    """Files each step in the change's audit trail through the REST API, as its own agent.

    ``POST /api/v1/changes/{id}/transcript`` with the token of the agent that took the step:
    the server records the entry under the authenticated identity, so the transcript is as
    trustworthy as the rest of the audit log, and the workflow can run on any host. Steps are
    queued as they happen (the transcript is synchronous) and sent in order by
    :meth:`flush`, which the workflow awaits at the end of each agent's session.
    """

    def __init__(self, endpoint: Endpoint, tokens: Tokens) -> None:
        self.endpoint = endpoint
        self._tokens = {tokens.of(role).name: tokens.of(role).token for role in ROLES}
        self.pending: list[tuple[str, Step]] = []

    def __call__(self, change_id: str, step: Step) -> None:
        self.pending.append((change_id, step))

    async def flush(self) -> None:
        if not self.pending:
            return
        verify = ssl.create_default_context(cafile=self.endpoint.ca_cert)
        async with httpx.AsyncClient(base_url=self.endpoint.server, verify=verify,
                                     timeout=60) as client:
            while self.pending:
                change_id, step = self.pending[0]
                token = self._tokens.get(step.identity)
                if token is None:
                    raise AgentFlowError(f"no token for agent identity {step.identity!r}: "
                                         "its transcript step cannot be filed")
                body = {"agent": step.agent, "kind": step.kind, "content": step.content}
                try:
                    response = await client.post(
                        f"/api/v1/changes/{change_id}/transcript", json=body,
                        headers={"Authorization": f"Bearer {token}"})
                except httpx.HTTPError as exc:
                    raise AgentFlowError(f"cannot reach {self.endpoint.server} to file the "
                                         f"transcript: {exc}") from None
                if not response.is_success:
                    raise AgentFlowError(
                        f"filing a transcript step of {step.identity} on {change_id} failed "
                        f"({response.status_code}: {_message(response)})")
                self.pending.pop(0)
