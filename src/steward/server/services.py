"""The server's components, wired once from a :class:`ServerConfig` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from steward.access.audit import KEY_FILE as AUDIT_KEY_FILE
from steward.access.audit import AuditLog, Witness
from steward.access.principal import Principal
from steward.access.rbac import Rbac, authorize
from steward.access.tokens import Tokens
from steward.secrets.store import SecretStore
from steward.server.catalogs import CatalogService
from steward.server.config import ServerConfig
from steward.server.db import QUERY_TABLES, SERVER_ENGINE
from steward.server.enrollment import Enrollment
from steward.server.migrate import migrate
from steward.store.db import make_engine

if TYPE_CHECKING:
    from steward.store import Store


@dataclass
class Services:
    """What request handlers use; one instance per application."""

    config: ServerConfig
    engine: Engine
    store: Store
    tokens: Tokens
    audit: AuditLog
    enrollment: Enrollment
    catalogs: CatalogService
    #: Role bindings, when the desired state is a git repository (the change pipeline's);
    #: None for a plain directory, where user and agent tokens hold nothing.
    rbac: Rbac | None = None

    def authorize(self, principal: Principal, permission: str,
                  environment: str | None = None) -> None:
        """Return if ``principal`` holds ``permission`` there, else raise ``Forbidden``."""
        authorize(self.rbac, principal, permission, environment)

    def close(self) -> None:
        self.audit.close()  # its last checkpoint, before the engine goes
        self.engine.dispose()
        self.store.close()


def open_store(url: str) -> Store:
    from steward.store import Store

    return Store(url, query_tables=QUERY_TABLES)


def build_services(config: ServerConfig, *, migrate_schema: bool = True) -> Services:
    """Connect to the database (migrating both schemas first, unless told not to)."""
    engine = make_engine(config.database_url, **SERVER_ENGINE)
    store = open_store(config.database_url)
    if migrate_schema:
        store.migrate()
        migrate(engine)
    tokens = Tokens(engine)
    audit = AuditLog(engine, key_path=config.data_dir / AUDIT_KEY_FILE,
                     checkpoint_interval=config.audit_checkpoint_interval,
                     witness=audit_witness(config))
    catalogs = CatalogService(
        config.repo_path, SecretStore(config.secrets_dir), config.catalog_cache_size
    )
    rbac = None if catalogs.desired is None else \
        Rbac(engine, config.data_dir, environments=tuple(config.environments))
    return Services(config=config, engine=engine, store=store, tokens=tokens, audit=audit,
                    enrollment=Enrollment(engine), catalogs=catalogs, rbac=rbac)


def audit_witness(config: ServerConfig) -> Witness:
    """Where the audit log's checkpoints are witnessed, from the configuration."""
    return Witness(path=config.audit_witness_path, command=config.audit_witness_command,
                   url=config.audit_witness_url)


def bootstrap_database(config: ServerConfig) -> str:
    """Create both schemas and the first admin token; returns that token (shown once)."""
    services = build_services(config)
    try:
        created = services.tokens.create("admin", "admin", created_by="steward init")
        return str(created["token"])
    finally:
        services.close()
