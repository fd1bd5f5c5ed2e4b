"""The server's components, wired once from a :class:`ServerConfig` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from steward.access.audit import AuditLog
from steward.access.checkpoints import KEY_FILE as AUDIT_KEY_FILE
from steward.access.principal import Principal
from steward.access.rbac import Rbac, authorize
from steward.access.tokens import Tokens
from steward.access.witness import Witness
from steward.clock import SYSTEM_CLOCK, Clock
from steward.secrets.store import SecretStore
from steward.server.catalogs import CatalogService
from steward.server.config import ServerConfig
from steward.server.db import SERVER_ENGINE
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
    #: What "now" is for the server and the pipeline (tokens, audit, changes, jobs).
    clock: Clock = SYSTEM_CLOCK

    def authorize(self, principal: Principal, permission: str,
                  environment: str | None = None) -> None:
        """Return if ``principal`` holds ``permission`` there, else raise ``Forbidden``."""
        authorize(self.rbac, principal, permission, environment)

    def close(self) -> None:
        self.audit.close()  # its last checkpoint, before the engine goes
        self.engine.dispose()
        self.store.close()


def open_store(url: str) -> Store:
    """The store, querying the server's audit log beside its own entities."""
    from steward.access import audit_entity
    from steward.store import Store
    from steward.store.entities import store_entities

    entities = store_entities()
    audit_entity.register(entities)
    return Store(url, query_tables=audit_entity.QUERY_TABLES, entities=entities)


def build_services(config: ServerConfig, *, migrate_schema: bool = True,
                   clock: Clock = SYSTEM_CLOCK) -> Services:
    """Connect to the database (migrating both schemas first, unless told not to);
    ``clock`` is what the server and its pipeline take "now" from (tests pass a manual one).
    """
    engine = make_engine(config.database_url, **SERVER_ENGINE)
    store = open_store(config.database_url)
    if migrate_schema:
        store.migrate()
        migrate(engine)
    tokens = Tokens(engine, clock=clock)
    audit = AuditLog(engine, key_path=config.data_dir / AUDIT_KEY_FILE,
                     checkpoint_interval=config.audit_checkpoint_interval,
                     witness=audit_witness(config), clock=clock)
    catalogs = CatalogService(
        config.repo_path, SecretStore(config.secrets_dir), config.catalog_cache_size
    )
    rbac = None if catalogs.desired is None else \
        Rbac(engine, config.data_dir, environments=tuple(config.environments), clock=clock)
    return Services(config=config, engine=engine, store=store, tokens=tokens, audit=audit,
                    enrollment=Enrollment(engine, clock=clock), catalogs=catalogs, rbac=rbac,
                    clock=clock)


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
