"""The operator commands' HTTPS client: where the server is, which token, which CA.

Resolution, first found wins: ``--server``/``$STEWARD_SERVER``, else the local data
directory's ``config.json``; ``--token``/``$STEWARD_TOKEN``, else the data directory's
``admin.token`` (written by ``steward init``); ``--ca-cert``/``$STEWARD_CA_CERT``, else the
data directory's ``tls/ca.crt``, else the system's roots. Every failure is one clear line.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from steward.server.config import CONFIG_FILE, read_admin_token, read_server_url
from steward.server.errors import ApiError


@dataclass(frozen=True, slots=True)
class Connection:
    server: str
    token: str
    #: The CA to verify the server with; None means the system's trusted roots.
    ca_cert: Path | None


def resolve(data_dir: Path, server: str | None, token: str | None,
            ca_cert: Path | None) -> Connection:
    if server is None:
        if not (data_dir / CONFIG_FILE).exists():
            raise ApiError(
                f"no server given: pass --server URL (or set STEWARD_SERVER), or run this in "
                f"the server's data directory (--data-dir; {data_dir} has no {CONFIG_FILE})"
            )
        server = read_server_url(data_dir)
    if token is None:
        token = read_admin_token(data_dir)
        if token is None:
            raise ApiError(
                f"no token given: pass --token or set STEWARD_TOKEN (no admin token saved in "
                f"{data_dir})"
            )
    ca: Path | None = None
    if ca_cert is not None:
        if not ca_cert.is_file():
            raise ApiError(f"--ca-cert {ca_cert} does not exist")
        ca = ca_cert
    elif (data_dir / "tls" / "ca.crt").is_file():
        ca = data_dir / "tls" / "ca.crt"
    return Connection(server.rstrip("/"), token, ca)


class ApiClient:
    """Thin httpx wrapper: JSON in, JSON out, :class:`ApiError` for anything else."""

    def __init__(self, connection: Connection, timeout: float = 60.0) -> None:
        self.connection = connection
        try:
            verify = ssl.create_default_context(cafile=connection.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(f"cannot load the CA certificate {connection.ca_cert}: {exc}") \
                from None
        self._client = httpx.Client(
            base_url=connection.server,
            verify=verify,
            timeout=timeout,
            headers={"Authorization": f"Bearer {connection.token}",
                     "User-Agent": "steward-cli"},
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        response = self._send(method, path, json_body=json_body, params=params)
        return response.json() if response.content else None

    def request_text(self, method: str, path: str, *,
                     params: dict[str, Any] | None = None) -> str:
        return self._send(method, path, params=params).text

    def _send(self, method: str, path: str, *, json_body: Any = None,
              params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._client.request(method, path, json=json_body, params=params)
        except httpx.ConnectError as exc:
            raise ApiError(f"cannot reach the Steward server at {self.connection.server}: "
                           f"{_reason(exc)} (is 'steward server' running?)") from None
        except httpx.TimeoutException:
            raise ApiError(f"the Steward server at {self.connection.server} timed out") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to {self.connection.server} failed: {exc}") from None
        if response.is_success:
            return response
        raise ApiError(f"{response.status_code}: {_message(response)}",
                       status=response.status_code)


def _message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:2000] or response.reason_phrase
    if isinstance(document, dict):
        for key in ("error", "detail"):
            value = document.get(key)
            if isinstance(value, str):
                return value
            if value is not None:
                return json.dumps(value)[:2000]
    return json.dumps(document)[:2000]


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return ("the server's certificate does not verify (pass --ca-cert with the Steward CA, "
                "<data-dir>/tls/ca.crt)")
    return text or type(exc).__name__
