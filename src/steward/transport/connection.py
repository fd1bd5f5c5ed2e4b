"""Opening the SSH connection: trusted keys matched, the client key loaded, and each way
connecting fails turned into a :class:`TransportError` that names the host and the cause."""

from __future__ import annotations

import os
import socket
from typing import Any

import asyncssh

from steward.transport import TransportError
from steward.transport.hostkeys import (
    HostKeyCheck,
    match_known_hosts,
    read_known_hosts,
    record_first_seen,
)
from steward.transport.target import SSHTarget


async def connect(target: SSHTarget) -> asyncssh.SSHClientConnection:
    """A connection to ``target`` whose host key is trusted (or was first seen and recorded)."""
    texts = [(target.steward_known_hosts,
              read_known_hosts(target.steward_known_hosts, required=False))]
    if target.known_hosts is not None:
        texts.insert(0, (target.known_hosts, read_known_hosts(target.known_hosts,
                                                               required=True)))
    trusted = match_known_hosts(target, texts)
    check = HostKeyCheck(target, list(trusted[0]), has_ca=bool(trusted[1]),
                          has_revoked=bool(trusted[2]))
    keys: dict[str, Any] = {}
    if target.key_file is not None:
        try:
            keys = {"client_keys": [asyncssh.read_private_key(target.key_file)],
                    "agent_path": None}
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise TransportError(
                f"{target.label}: cannot load SSH key {target.key_file}: {detail}"
            ) from exc
    try:
        connection = await asyncssh.connect(
            target.host, target.port,
            username=target.login,
            known_hosts=trusted,
            client_factory=lambda: check,
            config=None,
            connect_timeout=target.connect_timeout,
            password_auth=False,
            kbdint_auth=False,
            gss_auth=False,
            **keys,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise check.refusal(exc.reason) from exc
    except asyncssh.PermissionDenied as exc:
        how = (f"key {target.key_file}" if target.key_file is not None
               else "the ssh-agent and ~/.ssh keys")
        raise TransportError(
            f"{target.label}: authentication failed: the server accepted no key from {how} "
            f"for user {target.login} ({exc.reason})"
        ) from exc
    except asyncssh.KeyExchangeFailed as exc:
        hint = (" (the recorded host key type is not offered any more: a changed host key?)"
                if check.known else "")
        raise TransportError(f"{target.label}: SSH key exchange failed: {exc.reason}{hint}")\
            from exc
    except asyncssh.Error as exc:
        raise TransportError(f"{target.label}: SSH connection failed: {exc}") from exc
    except TimeoutError as exc:
        raise TransportError(
            f"{target.label}: no SSH connection within {target.connect_timeout:g}s"
        ) from exc
    except socket.gaierror as exc:
        raise TransportError(f"{target.label}: cannot resolve {target.host}: {exc.strerror}")\
            from exc
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)
        raise TransportError(f"{target.label}: cannot connect: {reason}") from exc
    if check.first_seen is not None:
        try:
            record_first_seen(target, check.first_seen)
        except TransportError:
            connection.close()
            raise
    return connection
