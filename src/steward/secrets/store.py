"""An encrypted secrets store: one Fernet-encrypted JSON file next to its key.

``<data_dir>/secrets.enc`` holds ``{"format": 1, "secrets": {name: value}}`` encrypted with
Fernet (AES-128-CBC + HMAC-SHA256). The key comes from ``STEWARD_SECRETS_KEY`` or, failing
that, ``<data_dir>/secrets.key`` (created with mode 0600 by the first ``set``). Catalogs carry
:meth:`SecretStore.digest` of a value, a keyed HMAC: rotating a secret changes the catalog hash,
yet the digest reveals nothing to someone without the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from steward.errors import SecretError

KEY_ENV = "STEWARD_SECRETS_KEY"
STORE_FILE = "secrets.enc"
KEY_FILE = "secrets.key"
STORE_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$")
#: Domain separation: the digest key is derived from, never equal to, the encryption key.
_DIGEST_LABEL = b"steward secrets digest v1"


def generate_key() -> str:
    """A new random store key, in the form STEWARD_SECRETS_KEY expects."""
    return Fernet.generate_key().decode("ascii")


class SecretStore:
    """Named secrets in ``<data_dir>/secrets.enc``; every failure is a :class:`SecretError`."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``key`` overrides the environment; ``environ`` defaults to ``os.environ``."""
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / STORE_FILE
        self.key_path = self.data_dir / KEY_FILE
        env = os.environ if environ is None else environ
        self._given_key = key if key is not None else env.get(KEY_ENV) or None
        self._fernet: Fernet | None = None
        self._digest_key: bytes | None = None
        self._cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    # -- public API ----------------------------------------------------------------------------

    def get(self, name: str) -> str:
        secrets = self._load()
        if name not in secrets:
            raise SecretError(f"secret {name!r} is not in the secrets store {self.path}")
        return secrets[name]

    def set(self, name: str, value: str) -> None:
        _check_name(name)
        if not isinstance(value, str):
            raise SecretError(f"secret {name!r}: the value must be a string")
        secrets = dict(self._load(create_key=True))
        secrets[name] = value
        self._write(secrets)

    def delete(self, name: str) -> None:
        secrets = dict(self._load())
        if name not in secrets:
            raise SecretError(f"secret {name!r} is not in the secrets store {self.path}")
        del secrets[name]
        self._write(secrets)

    def names(self) -> list[str]:
        return sorted(self._load())

    def digest(self, value: str) -> str:
        """HMAC-SHA256 of ``value`` under a key derived from the store key, as hex."""
        if self._digest_key is None:
            raw_key = self._key_bytes(create=False)
            self._digest_key = hmac.new(raw_key, _DIGEST_LABEL, hashlib.sha256).digest()
        return hmac.new(self._digest_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    # -- internals -----------------------------------------------------------------------------

    def _key_bytes(self, *, create: bool) -> bytes:
        if self._given_key is not None:
            return _valid_key(self._given_key, f"{KEY_ENV} (or the key given)")
        try:
            text = self.key_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            if not create:
                raise SecretError(
                    f"no secrets key: set {KEY_ENV} or provide {self.key_path} "
                    "(it is created by the first 'set')"
                ) from None
            return self._create_key_file()
        except (OSError, UnicodeDecodeError) as err:
            raise SecretError(f"cannot read the secrets key {self.key_path}: {err}") from None
        return _valid_key(text, str(self.key_path))

    def _create_key_file(self) -> bytes:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_key()
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another process created it first: use theirs.
            return _valid_key(self.key_path.read_text(encoding="ascii").strip(), str(self.key_path))
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return _valid_key(key, str(self.key_path))

    def _cipher(self, *, create_key: bool) -> Fernet:
        if self._fernet is None:
            self._fernet = Fernet(self._key_bytes(create=create_key))
        return self._fernet

    def _load(self, *, create_key: bool = False) -> dict[str, str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if create_key:
                self._cipher(create_key=True)
            return {}
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._cache is not None and self._cache[0] == signature:
            return self._cache[1]
        token = self.path.read_bytes()
        try:
            plain = self._cipher(create_key=False).decrypt(token)
        except InvalidToken:
            raise SecretError(
                f"cannot decrypt {self.path}: wrong key ({KEY_ENV} or {self.key_path}) "
                "or the file is corrupt"
            ) from None
        try:
            document = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SecretError(f"{self.path} decrypts but is not a secrets document") from None
        secrets = document.get("secrets") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or document.get("format") != STORE_FORMAT
            or not isinstance(secrets, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in secrets.items())
        ):
            raise SecretError(f"{self.path}: unsupported or malformed secrets document")
        self._cache = (signature, secrets)
        return secrets

    def _write(self, secrets: Mapping[str, str]) -> None:
        document = {"format": STORE_FORMAT, "secrets": dict(sorted(secrets.items()))}
        token = self._cipher(create_key=True).encrypt(
            json.dumps(document, sort_keys=True).encode("utf-8")
        )
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temp = tempfile.mkstemp(prefix=".secrets.", suffix=".tmp", dir=self.data_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(token)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).replace(self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(temp).unlink()
            raise
        _fsync_dir(self.data_dir)
        self._cache = None


def init_store(
    data_dir: str | Path, values: Mapping[str, str], *, key: str | None = None
) -> tuple[SecretStore, str]:
    """Create a store holding ``values`` under ``key`` (new when None); for tests and demos.

    Returns the store and its key: export the key as ``STEWARD_SECRETS_KEY`` to reopen it.
    """
    key = key if key is not None else generate_key()
    store = SecretStore(data_dir, key=key)
    for name, value in sorted(values.items()):
        store.set(name, value)
    return store, key


def _valid_key(text: str, where: str) -> bytes:
    try:
        Fernet(text)
    except (ValueError, TypeError):
        raise SecretError(
            f"{where} is not a valid secrets key (expected 32 url-safe base64-encoded bytes, "
            "as generate_key() makes)"
        ) from None
    return text.encode("ascii")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SecretError(
            f"{name!r} is not a valid secret name (letters, digits, '_', '.', '-', '/')"
        )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
