"""A small HTTPS JSON client for the Steward API: ``http.client`` + ``ssl``, nothing else.

Only ``https://`` URLs are accepted: the catalog carries the node's secrets. The server is
verified against the Steward CA given (``--ca-cert``), with host name checking on, or the
system's roots when none is given. Errors are sorted by what the agent should do next:
:class:`ServerUnavailable` (use the cache, keep the reports), :class:`Refused` (the
credential is bad: stop), :class:`RequestFailed` (this request is wrong).
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from steward.agent.errors import (
    AgentError,
    Refused,
    RequestFailed,
    ServerUnavailable,
    ServerUntrusted,
)

USER_AGENT = "steward-agent"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    document: Any


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(f"cannot load the CA certificate {ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ServerClient:
    """One server, one credential; a fresh connection per request keeps failure simple."""

    def __init__(self, server: str, *, ca_file: str | None, token: str | None = None,
                 timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise AgentError(f"--server {server!r}: the server URL must be https://HOST[:PORT]")
        self.server = server.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.base = parts.path.rstrip("/")
        self.context = ssl_context(ca_file)
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                timeout: float | None = None) -> Response:
        """Send one request; 2xx answers return, everything else raises (see module doc)."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        credential = token if token is not None else self.token
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        url = f"{self.server}{path}"
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context,
            timeout=self.timeout if timeout is None else timeout,
        )
        try:
            connection.request(method, self.base + path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            status = response.status
        except ssl.SSLCertVerificationError as exc:
            raise ServerUntrusted(
                f"{self.server}: the server's certificate does not verify against the Steward "
                f"CA ({exc.verify_message}); refusing to talk to it"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailable(f"cannot reach {self.server}: {_describe(exc)}") from None
        finally:
            connection.close()
        document = _decode(raw)
        if 200 <= status < 300:
            return Response(status, document)
        message = _message(document, raw)
        if status in (401, 403):
            raise Refused(f"{method} {url}: {status} {message}", status=status)
        if status >= 500:
            raise ServerUnavailable(f"{method} {url}: server error {status}: {message}")
        raise RequestFailed(f"{method} {url}: {status} {message}", status=status)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _message(document: Any, raw: bytes) -> str:
    if isinstance(document, dict):
        for key in ("error", "detail", "message"):
            if isinstance(document.get(key), str):
                return str(document[key])
        if document.get("detail") is not None:
            return json.dumps(document["detail"])[:500]
    return raw[:500].decode("utf-8", "replace").strip() or "(no message)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)
