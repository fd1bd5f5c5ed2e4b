"""The encrypted secrets store the compiler resolves ``secret(name)`` from."""

from steward.secrets.store import (
    KEY_ENV,
    KEY_FILE,
    STORE_FILE,
    SecretStore,
    generate_key,
    init_store,
)

__all__ = ["KEY_ENV", "KEY_FILE", "STORE_FILE", "SecretStore", "generate_key", "init_store"]
