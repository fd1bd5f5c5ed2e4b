"""Host keys: which keys are trusted for a target, why one is refused, and recording a
first-seen key.

The target's ``known_hosts`` and Steward's own file are both trusted. An unknown host is
refused unless ``trust_on_first_use`` is set, in which case its key is recorded in
Steward's file (and logged) once the connection is up. A host whose key differs from a
recorded one is always refused, naming both fingerprints.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncssh

from steward.transport import TransportError
from steward.transport.target import SSHTarget

log = logging.getLogger("steward.transport")


def fingerprints(keys: Iterable[asyncssh.SSHKey]) -> str:
    """Keys as OpenSSH prints them: algorithm and SHA256 fingerprint."""
    return ", ".join(f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in keys)


def read_known_hosts(path: Path, *, required: bool) -> str:
    """A known_hosts file's text; a missing optional file is empty."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise TransportError(f"known_hosts file {path} does not exist") from None
        return ""
    except OSError as exc:
        raise TransportError(f"cannot read known_hosts file {path}: {exc.strerror}") from exc


#: asyncssh's pre-matched known_hosts form: host keys, CA keys, revoked keys, then four
#: X.509 lists (trusted/revoked certificates and subject names).
Matched = tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]


def match_known_hosts(target: SSHTarget, texts: Iterable[tuple[Path, str]]) -> Matched:
    """Trusted keys for the target from every file (matched by the host name as given)."""
    keys: list[list[Any]] = [[] for _ in range(7)]
    for path, text in texts:
        try:
            entries = asyncssh.import_known_hosts(text)
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise TransportError(f"{path}: not a valid known_hosts file: {exc}") from exc
        # Matched as OpenSSH does without CheckHostIP: by the name as given, as ``[host]:port``
        # off port 22, with no fallback to port-less entries. (asyncssh's own port matching
        # falls back, and then loses a port-specific @revoked line.)
        found = entries.match(target.known_hosts_pattern, "", None)
        for into, more in zip(keys, found, strict=True):
            into.extend(more)
    return (keys[0], keys[1], keys[2], keys[3], keys[4], keys[5], keys[6])


class HostKeyCheck(asyncssh.SSHClient):
    """Decides about a host key asyncssh found in no trusted list: first seen, or changed."""

    def __init__(self, target: SSHTarget, known: list[asyncssh.SSHKey], has_ca: bool,
                 has_revoked: bool = False) -> None:
        self.target = target
        self.known = known
        self.has_ca = has_ca
        self.has_revoked = has_revoked
        self.offered: asyncssh.SSHKey | None = None
        self.first_seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        if self.known or self.has_ca:
            return False  # a key is on record and this is not it: never accepted
        if self.target.trust_on_first_use:
            # Recorded only after the handshake proved the host holds the private key.
            self.first_seen = key
            return True
        return False

    def refusal(self, reason: str = "") -> TransportError:
        target = self.target
        if self.offered is None:
            # asyncssh refused before asking: a @revoked key, or a certificate it rejected.
            revoked = " (a key marked @revoked)" if self.has_revoked else ""
            return TransportError(
                f"host key of {target.known_hosts_pattern} ({target.label}) was refused"
                f"{revoked}: {reason or 'not verifiable'}; known_hosts files: "
                f"{known_hosts_files(target)}"
            )
        offered = fingerprints([self.offered])
        if self.known or self.has_ca:
            recorded = fingerprints(self.known) if self.known else "a host CA"
            return TransportError(
                f"HOST KEY CHANGED for {target.known_hosts_pattern} ({target.label}): it "
                f"offered {offered} but {recorded} is recorded in "
                f"{known_hosts_files(target)}. Refusing to connect: this is either a "
                "reinstalled host or someone intercepting the connection. If the change is "
                "expected, remove the old entry and connect again."
            )
        return TransportError(
            f"host key of {target.known_hosts_pattern} ({target.label}) is unknown: it offered "
            f"{offered}, which is in none of {known_hosts_files(target)}. Add it to a "
            "known_hosts file, or set trust_on_first_use to record it on first contact."
        )


def known_hosts_files(target: SSHTarget) -> str:
    """The trusted files, as a refusal names them."""
    files = [target.steward_known_hosts]
    if target.known_hosts is not None:
        files.insert(0, target.known_hosts)
    return ", ".join(str(f) for f in files)


def record_first_seen(target: SSHTarget, key: asyncssh.SSHKey) -> None:
    """Append the key to Steward's known_hosts under a lock, unless another run just did.

    Re-reading under the lock closes the race of two pushes meeting the same new host: the
    second one sees the first one's entry, and a different key there is a changed key.
    """
    path = target.steward_known_hosts
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            known = list(match_known_hosts(target, [(path, text)])[0])
            if key in known:
                return
            if known:
                check = HostKeyCheck(target, known, has_ca=False)
                check.offered = key
                raise check.refusal()
            separator = "" if not text or text.endswith("\n") else "\n"
            handle.write(f"{separator}{target.known_hosts_pattern} {algorithm} {blob}\n")
    except OSError as exc:
        raise TransportError(
            f"cannot record the host key of {target.label} in {path}: {exc.strerror or exc}"
        ) from exc
    log.warning(
        "%s: trusting host key seen for the first time: %s; recorded in %s",
        target.label, fingerprints([key]), path,
    )
